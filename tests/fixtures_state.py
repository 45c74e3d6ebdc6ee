"""What the trainer tests share: the tiny run (a config factory, its command line, a stand-in data set, its log) and
the checkpoint comparison of the single-process and the multi-process resume tests.

``tiny_config`` is the Python-API run (the 'tiny' arch at width 4, two epochs of 16-pair batches); ``tiny_train_argv``
the ``superinfo train`` command of a one-step digits run (``tiny_digits_run`` in conftest.py holds a finished one).
Both take overrides, so a test states only what it changes."""
from __future__ import annotations

import csv

import torch
from torch.utils.data import Dataset

TINY_MODEL = dict(arch="tiny", width=4)

# the Python-API tiny run: two epochs, lambda 0.1 with a learned sigma, on an in-memory stand-in data set
TINY_CONFIG = dict(dataset="standin", **TINY_MODEL, epochs=2, batch_size=16, num_workers=0, warmup_epochs=0.5,
                   lambda_a=0.1, sigma="learned", progress=False, final_eval="none", log_every=2)

# the command-line tiny run: one step of one epoch on the embedded digits
TINY_DIGITS = dict(preset="digits", epochs=1, max_steps_per_epoch=1, **TINY_MODEL, batch_size=16)


def tiny_config(out=None, **overrides):
    """The tiny TrainConfig, ``overrides`` (TrainConfig fields) on top."""
    from superinfo.trainer import TrainConfig

    fields = dict(TINY_CONFIG, out=None if out is None else str(out))
    fields.update(overrides)
    return TrainConfig(**fields)


def cli_flags(**fields) -> list[str]:
    """Fields as command-line flags: ``image_size=8`` -> ``--image-size 8``, ``sync_bn=True`` -> ``--sync-bn``,
    ``progress=False`` -> ``--no-progress``; None leaves the flag out."""
    argv = []
    for name, value in fields.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + name.replace("_", "-"))
        else:
            argv += [flag, str(value)]
    return argv


TINY_RUN_FLAGS = cli_flags(**{k: v for k, v in TINY_DIGITS.items() if k != "preset"})


def tiny_train_argv(out, **overrides) -> list[str]:
    """``superinfo train`` argv (without the program name) of the tiny digits run into ``out``: one thread, no
    progress bars, ``overrides`` (flag names as fields, None drops one: ``preset=None, dataset="synthetic"``)."""
    fields = dict(TINY_DIGITS, threads=1, progress=False)
    fields.update(overrides)
    return ["train", *cli_flags(**fields), "--out", str(out)]


class TwoViews(Dataset):
    """Stand-in for ``superinfo.data.pretrain_dataset``: (view1, view2, label) with random-noise 'augmentation'
    drawn from the global torch RNG (as torchvision transforms do).  ``poison_from``: from that many __getitem__
    calls on, images are NaN; ``crash_at``: raise KeyboardInterrupt at that call (a kill)."""

    def __init__(self, n=48, size=8, classes=3, seed=0, poison_from=None, crash_at=None):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.y = torch.arange(n) % classes
        self.num_classes = classes
        self.calls, self.poison_from, self.crash_at = 0, poison_from, crash_at

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.calls += 1
        if self.crash_at is not None and self.calls == self.crash_at:
            raise KeyboardInterrupt("simulated kill")
        x = self.x[i]
        if self.poison_from is not None and self.calls >= self.poison_from:
            x = torch.full_like(x, float("nan"))
        return x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x), int(self.y[i])


def log_rows(run_dir):
    """A run's log.csv rows, without the timing columns (which differ between otherwise identical runs)."""
    with open(run_dir / "log.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("images_per_s", "elapsed_s")} for r in csv.DictReader(f)]


def tensors_by_path(obj, prefix=""):
    """Every tensor in a nested state (dicts/lists), by path."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from tensors_by_path(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from tensors_by_path(v, f"{prefix}/{i}")


def assert_same_state(a, b):
    """Two checkpoints hold bit-identical weights, optimiser states, schedule, counters and per-rank RNG states."""
    for key in ("model", "loss_fn", "probe", "optimizer", "probe_optimizer"):
        ta, tb = dict(tensors_by_path(a[key])), dict(tensors_by_path(b[key]))
        assert ta.keys() == tb.keys(), key
        assert ta or key == "loss_fn", key     # NT-Xent has no parameters; a registry critic does
        for name in ta:
            assert torch.equal(ta[name], tb[name]), f"{key}{name} differs"
    assert a["scheduler"] == b["scheduler"]
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"])
    assert len(a["rng"]) == len(b["rng"]) == a["world_size"]     # one RNG state per rank
    for ra, rb in zip(a["rng"], b["rng"]):
        for key in ("torch", "loader", "noise"):
            assert torch.equal(ra[key], rb[key]), key
