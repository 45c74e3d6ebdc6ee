"""Multi-process training, proven against one process: gloo process groups on loopback (2 and 3 ranks) must give the
single-process loss and gradients of the same global batch, and a 2-process run must resume bit-exactly."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import Dataset

from fixtures_state import assert_same_state, tiny_config, tiny_train_argv
from mi_toolkit.distributed import all_gather_with_grad
from superinfo.trainer.distributed import CrossRankBatchNorm, DistContext, convert_batchnorm
from superinfo.trainer.loop import (NonFiniteLossError, TrainConfig, build_training,
                                    check_distributed_settings, forward_backward, load_checkpoint, read_metrics, train,
                                    train_step)

GLOBAL_BATCH = 12           # divisible by 2 and 3
TOL = dict(rtol=1e-5, atol=1e-5)
pytestmark = pytest.mark.slow          # process groups of 2 and 3 ranks, and torchrun

NOW = dict(lambda_warmup_epochs=0, lambda_ramp_epochs=0)     # lambda at its target from the first step
# (name, TrainConfig overrides): lambda = 0 and > 0, both conditional bounds, the naive and chunked InfoNCE kernels,
# and a registry lower bound with a critic (computed on the gathered batch; its gradients averaged by hand)
CASES = [
    ("simclr-naive", dict(lambda_a=0.0, kernel_backend="naive")),
    ("simclr-chunked", dict(lambda_a=0.0, kernel_backend="chunked")),
    ("simclr-deterministic", dict(method="simclr", lambda_a=0.0, sigma=0.5)),   # NT-Xent on the means
    ("kl-chunked", dict(lambda_a=0.1, lambda_b=0.05, conditional="kl", kernel_backend="chunked", **NOW)),
    ("club-pairwise-naive", dict(lambda_a=0.1, conditional="club", lower_bound="pairwise", kernel_backend="naive",
                                 **NOW)),      # club is refused beside NT-Xent (not a true lower bound)
    ("nwj-critic-kl", dict(lambda_a=0.1, lower_bound="nwj", temperature=None, extra={"hidden": 16}, **NOW)),
    ("pairwise-naive", dict(lambda_a=0.1, lower_bound="pairwise", kernel_backend="naive", **NOW)),
]


class Pairs(Dataset):
    """Fixed random image pairs with labels (what ``superinfo.data`` would give), seeded by the constructor."""

    def __init__(self, n: int = GLOBAL_BATCH, size: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x1 = torch.randn(n, 3, size, size, generator=g)
        self.x2 = self.x1 + 0.3 * torch.randn(n, 3, size, size, generator=g)
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.y[::4] = -1                         # some unlabelled rows: the probe must skip them on every rank

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x1[i], self.x2[i], self.y[i]


# the shared tiny run (fixtures_state), on the global batch and at lambda = 0 unless a case sets it
DIST_RUN = dict(dataset="imagefolder", image_size=8, z_dim=8, batch_size=GLOBAL_BATCH, lr=1e-2, warmup_epochs=0,
                device="cpu", log_every=1, lambda_a=0.0)


def _config(out=None, **overrides) -> TrainConfig:
    return tiny_config(out, **{**DIST_RUN, **overrides})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world: int, port: int) -> None:
    torch.set_num_threads(1)
    os.environ["LOCAL_RANK"] = str(rank)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)


def _worker(rank, world, port, out):
    """Everything the tests check, in one process group per world size (starting processes takes seconds)."""
    _join(rank, world, port)
    out = Path(out)
    _gather_part(rank, out)
    _batchnorm_part(rank, world, out)
    _step_part(rank, world, out)
    _full_step_part(rank, world, out)
    _non_finite_part(rank, world, out)
    if world == 2:
        _training_part(rank, out)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    """``spawned(world)``: the folder the world's processes wrote their results to (spawned once per module)."""
    folders = {}

    def get(world: int) -> Path:
        if world not in folders:
            folders[world] = tmp_path_factory.mktemp(f"world{world}")
            mp.spawn(_worker, args=(world, _free_port(), str(folders[world])), nprocs=world, join=True)
        return folders[world]
    return get


# --------------------------------------------------------------------------------------------- the gather itself
def _gather_part(rank, out):
    x = torch.arange(3 * 2, dtype=torch.float64).view(3, 2).add(10 * rank).requires_grad_()
    y = all_gather_with_grad(x)
    weights = torch.arange(y.numel(), dtype=torch.float64).view_as(y) * (rank + 1)   # each rank its own loss
    (weights * y).sum().backward()
    torch.save({"y": y.detach(), "grad": x.grad}, out / f"gather{rank}.pt")


def test_all_gather_backward_sums_every_ranks_gradient(spawned):
    world = 3
    tmp_path = spawned(world)
    base = torch.arange(6 * world, dtype=torch.float64).view(3 * world, 2)
    for r in range(world):
        got = torch.load(tmp_path / f"gather{r}.pt")
        expected_y = torch.cat([torch.arange(6, dtype=torch.float64).view(3, 2) + 10 * s for s in range(world)])
        assert torch.equal(got["y"], expected_y)
        # d(sum_s loss_s)/dx_r = sum_s (s + 1) * base[rows of r]: neither only this rank's share nor counted twice
        expected = sum(s + 1 for s in range(world)) * base[3 * r:3 * r + 3]
        assert torch.equal(got["grad"], expected)


def test_all_gather_is_the_identity_without_a_process_group():
    x = torch.randn(4, 3, requires_grad=True)
    assert all_gather_with_grad(x) is x
    with pytest.raises(ValueError, match="batch dimension"):
        all_gather_with_grad(torch.tensor(1.0))


# --------------------------------------------------------------------------------------- BatchNorm across ranks
BN_ROWS = 4     # per rank


def _bn_inputs(world: int):
    """A badly centred global batch (mean 300 x its std: E[x^2] - E[x]^2 in float32 would lose ~all digits), the
    layer's affine parameters, and per-element loss weights."""
    g = torch.Generator().manual_seed(3)
    x = 300.0 + torch.randn(world * BN_ROWS, 3, 5, 5, generator=g)
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(3, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(3, generator=g))
    weights = torch.randn(x.shape, generator=g)
    return x, bn, weights


def _batchnorm_part(rank, world, out):
    x, bn, weights = _bn_inputs(world)
    rows = slice(rank * BN_ROWS, (rank + 1) * BN_ROWS)
    layer = convert_batchnorm(torch.nn.Sequential(bn))[0].train()
    xr = x[rows].clone().requires_grad_()
    y = layer(xr)
    (y * weights[rows]).sum().backward()
    torch.save({"y": y.detach(), "x_grad": xr.grad, "weight_grad": layer.weight.grad, "bias_grad": layer.bias.grad,
                "running_mean": layer.running_mean, "running_var": layer.running_var}, out / f"bn{rank}.pt")


@pytest.mark.parametrize("world", [2, 3])
def test_cross_rank_batchnorm_equals_batchnorm_on_the_global_batch(spawned, world):
    folder = spawned(world)
    x, bn, weights = _bn_inputs(world)
    x.requires_grad_()
    bn.train()
    y = bn(x)
    (y * weights).sum().backward()
    ranks = [torch.load(folder / f"bn{r}.pt") for r in range(world)]
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]), x.grad, rtol=1e-4, atol=1e-4)
    # parameter gradients: each rank holds its own rows' share (DDP then averages): the shares add up
    torch.testing.assert_close(sum(r["weight_grad"] for r in ranks), bn.weight.grad, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(sum(r["bias_grad"] for r in ranks), bn.bias.grad, rtol=1e-4, atol=1e-4)
    for r in ranks:
        torch.testing.assert_close(r["running_mean"], bn.running_mean)
        torch.testing.assert_close(r["running_var"], bn.running_var, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------- one step: W ranks == 1 process
def _step_results(t, batch) -> dict:
    terms = forward_backward(t, batch)[0]
    values = {k: float(getattr(terms, k).detach()) for k in ("total", "contrastive", "mi_lower", "superfluous_a",
                                                              "superfluous_b")}
    # a deterministic method leaves a learned sigma without a gradient (its noise is never drawn): zero, as DDP has it
    grads = {f"model.{k}": torch.zeros_like(p) if p.grad is None else p.grad.clone()
             for k, p in t.model.named_parameters()}
    grads.update({f"loss_fn.{k}": p.grad.clone() for k, p in t.loss_fn.named_parameters()})
    return values, grads


def _local_batch(data: Pairs, rank: int, world: int):
    n = GLOBAL_BATCH // world
    rows = slice(rank * n, (rank + 1) * n)
    return data.x1[rows], data.x2[rows], data.y[rows]


def _step_part(rank, world, out):
    data = Pairs()
    results = {}
    for name, overrides in CASES:
        t = build_training(_config(sync_bn=True, **overrides), data, num_classes=3)
        values, grads = _step_results(t, _local_batch(data, rank, world))
        summed = torch.tensor([values[k] for k in sorted(values)], dtype=torch.float64)
        dist.all_reduce(summed)                  # the global loss is the mean of the ranks' shares
        values = dict(zip(sorted(values), (summed / world).tolist()))
        bn = {k: b.clone() for k, b in t.model.state_dict().items() if "running" in k}
        results[name] = {"values": values, "grads": grads, "bn_buffers": bn,
                         "uses_cross_rank_bn": any(isinstance(m, CrossRankBatchNorm) for m in t.model.modules())}
    if rank == 0:
        torch.save(results, out / "ranks.pt")


@pytest.mark.parametrize("world", [2, 3])
def test_one_step_equals_single_process_on_the_global_batch(spawned, world):
    distributed = torch.load(spawned(world) / "ranks.pt")
    data = Pairs()
    for name, overrides in CASES:
        torch.set_num_threads(1)
        t = build_training(_config(**overrides), data, num_classes=3)
        values, grads = _step_results(t, (data.x1, data.x2, data.y))
        got = distributed[name]
        assert got["uses_cross_rank_bn"], name
        for key, value in values.items():
            assert got["values"][key] == pytest.approx(value, rel=1e-5, abs=1e-5), (name, key)
        assert got["grads"].keys() == grads.keys(), name
        assert any(k.startswith("loss_fn.") for k in grads) == (overrides.get("lower_bound") == "nwj")
        for key, grad in grads.items():
            assert grad.abs().sum() > 0, (name, key)          # a zero gradient would compare equal trivially
            torch.testing.assert_close(got["grads"][key], grad, **TOL, msg=lambda m: f"{name} {key}: {m}")
        single_bn = {k: b for k, b in t.model.state_dict().items() if "running" in k}
        for key, buf in single_bn.items():   # running statistics of the global batch (unbiased variance)
            torch.testing.assert_close(got["bn_buffers"][key], buf, **TOL)


# ------------------------------------------- a whole step: optimiser, online probe (with unlabelled rows), metrics
FULL_STEP = dict(lambda_a=0.1, kernel_backend="chunked", optimizer="sgd", momentum=0.0, **NOW)   # SGD: the step is lr * grad


def _full_step(t, batch) -> dict:
    lr = t.optimizer.param_groups[0]["lr"]
    metrics = dict(read_metrics(t, train_step(t, batch), steps=1), lr=lr)
    return {"metrics": metrics, "model": {k: v.clone() for k, v in t.model.state_dict().items()},
            "probe": {k: v.clone() for k, v in t.probe.state_dict().items()}}


def _full_step_part(rank, world, out):
    data = Pairs()
    t = build_training(_config(sync_bn=True, **FULL_STEP), data, num_classes=3)
    result = _full_step(t, _local_batch(data, rank, world))
    if rank == 0:
        torch.save(result, out / "full_step.pt")


@pytest.mark.parametrize("world", [2, 3])
def test_a_whole_step_with_probe_and_metrics_equals_single_process(spawned, world):
    got = torch.load(spawned(world) / "full_step.pt")
    data = Pairs()
    torch.set_num_threads(1)
    expected = _full_step(build_training(_config(**FULL_STEP), data, num_classes=3), (data.x1, data.x2, data.y))
    metrics = expected["metrics"]
    assert metrics["probe_n"] == int((data.y >= 0).sum()) and got["metrics"]["probe_n"] == metrics["probe_n"]
    assert got["metrics"]["probe_correct"] == metrics["probe_correct"]
    for key in ("loss", "contrastive", "mi_lower", "superfluous_a", "superfluous_b", "probe_loss", "lr"):
        assert got["metrics"][key] == pytest.approx(metrics[key], rel=1e-5, abs=1e-5), key
    for part in ("model", "probe"):
        for key, value in expected[part].items():
            torch.testing.assert_close(got[part][key], value, **TOL, msg=lambda m: f"{part}.{key}: {m}")


# ------------------------------------------------------------- a NaN on one rank stops every rank, none hangs
def _non_finite_part(rank, world, out):
    data = Pairs()
    t = build_training(_config(), data, num_classes=3)     # no sync_bn: the other ranks' outputs stay finite
    x1, x2, y = _local_batch(data, rank, world)
    if rank == world - 1:
        x1 = x1.clone()
        x1[0] = float("nan")
    try:
        read_metrics(t, train_step(t, (x1, x2, y)), steps=1)
        message = None
    except NonFiniteLossError as err:
        message = str(err)
    torch.save(message, out / f"nan{rank}.pt")


@pytest.mark.parametrize("world", [2, 3])
def test_a_nan_on_one_rank_stops_every_rank(spawned, world):
    messages = [torch.load(spawned(world) / f"nan{r}.pt") for r in range(world)]
    assert "the encoder's output holds NaN/inf" in messages[-1]
    for message in messages[:-1]:
        assert message is not None and "another rank's encoder output holds NaN/inf" in message


# --------------------------------------------------------------------- a 2-process run, interrupted and resumed
def _training_part(rank, out):
    data = Pairs(n=3 * GLOBAL_BATCH, seed=1)
    train(_config(out / "straight", sync_bn=True, lambda_a=0.1), pretrain_data=data, num_classes=3)
    train(_config(out / "resumed", sync_bn=True, lambda_a=0.1, stop_after_epochs=1), pretrain_data=data,
          num_classes=3)
    first = load_checkpoint(out / "resumed" / "checkpoint.pt")
    if rank == 0:
        torch.save({"epoch": first["epoch"]}, out / "after_first_call.pt")
    dist.barrier()
    from superinfo.trainer import resume
    resume(out / "resumed", pretrain_data=data, num_classes=3)


def test_two_process_training_resumes_bit_exactly(spawned):
    tmp_path = spawned(2)
    assert torch.load(tmp_path / "after_first_call.pt")["epoch"] == 1
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert a["world_size"] == b["world_size"] == 2 and (a["epoch"], a["step"]) == (2, 6)
    assert_same_state(a, b)
    assert not torch.equal(a["rng"][0]["torch"], a["rng"][1]["torch"])    # each rank keeps its own stream
    # rank 0 alone logs: one row per step, global metrics, the same rows as the uninterrupted run
    logs = [(tmp_path / d / "log.csv").read_text().splitlines() for d in ("straight", "resumed")]
    assert len(logs[0]) == 1 + 6
    strip = lambda rows: [",".join(r.split(",")[:-2]) for r in rows]     # drop images_per_s, elapsed_s
    assert strip(logs[0]) == strip(logs[1])


def test_a_sync_bn_run_continues_in_one_process(spawned, tmp_path):
    import shutil

    from superinfo.trainer import resume
    run = tmp_path / "run"
    shutil.copytree(spawned(2) / "straight", run)
    torch.set_num_threads(1)
    with pytest.warns(UserWarning, match="written by 2 process"):
        summary = resume(run, pretrain_data=Pairs(n=3 * GLOBAL_BATCH, seed=1), num_classes=3, epochs=3,
                         sync_bn=False)
    assert summary["epoch"] == 3 and summary["world_size"] == 1
    assert load_checkpoint(run / "checkpoint.pt")["config"]["sync_bn"] is False


# ------------------------------------------------------------------------------------------ refusals and helpers
def test_inconsistent_settings_are_refused():
    with pytest.raises(ValueError, match="sync_bn=True .* needs a torch.distributed process group.*--no-sync-bn"):
        check_distributed_settings(_config(sync_bn=True), DistContext())
    with pytest.raises(ValueError, match="batch_size 12 is the global batch and must be divisible by the 5"):
        check_distributed_settings(_config(), DistContext(rank=0, world_size=5))
    assert check_distributed_settings(_config(), DistContext(rank=1, world_size=3)) == 4
    with pytest.raises(ValueError, match="needs a fixed sigma"):        # the means scored: sigma would get no grad
        check_distributed_settings(_config(method="simclr", lambda_a=0.0, sigma="learned"),
                                   DistContext(rank=0, world_size=3))
    with pytest.raises(ValueError, match="sync_bn"):
        train(_config(Path("unused"), sync_bn=True), pretrain_data=Pairs(), num_classes=3)


def test_cross_rank_batchnorm_is_batchnorm_in_one_process():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    net[1].running_mean.normal_()
    converted = convert_batchnorm(torch.nn.Sequential(*[m for m in net]))
    assert isinstance(converted[1], CrossRankBatchNorm)
    assert converted[1].state_dict().keys() == torch.nn.BatchNorm2d(4).state_dict().keys()
    x = torch.randn(5, 3, 8, 8)
    for mode in (True, False):
        torch.testing.assert_close(converted.train(mode)(x), net.train(mode)(x))


def test_torchrun_launches_the_cli(tmp_path):
    """The README's command, on CPU: 2 processes of `superinfo train` under torchrun (gloo)."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "superinfo",
           *tiny_train_argv(run, preset=None, dataset="digits", image_size=8, z_dim=8, max_steps_per_epoch=2,
                            num_workers=0, final_eval="none", device="cpu", sync_bn=True, lambda_a=0.1)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 2 and len(ckpt["rng"]) == 2
    assert json.loads((run / "config.json").read_text())["sync_bn"] is True
    assert proc.stdout.count("run folder:") == 1          # rank 0 alone reports
