"""The training loop: build everything a run has, one step read top to bottom, ``train`` and ``resume``.

    from superinfo.trainer import TrainConfig, preset_config, train, resume
    cfg = preset_config("cifar10", data_root="data", out="runs/c10", lambda_a=0.1)
    train(cfg)                       # RUN_DIR/config.json, checkpoint.pt (each epoch), log.csv, eval.json
    resume("runs/c10")               # continues bit-exactly from the last completed epoch

One step: both views go through the encoder as one batch (BatchNorm sees both, as in SimCLR); the stochastic head
gives p(z1|v1), p(z2|v2); ``SuperInfoLoss`` returns every term, weighted by this step's lambda (its schedule, or
automatic lambda: ``superinfo.lambdas``); Adam/LARS step; the warm-up + cosine schedule steps per iteration.  The
online probe is a linear classifier on detached backbone features of view 1 with its own Adam; it never changes
the encoder.  Labels < 0 (unlabelled images, e.g. STL-10's unlabelled split) are skipped by it.

Nothing in a step reads a value back to the host: the metrics add up on the device and are read once per log row
(``read_metrics``).  That is also where a non-finite loss or encoder output is caught: ``NonFiniteLossError`` names
the last good checkpoint, which stays as it was (checkpoints are written only after an epoch's last row is read).

Two data pipelines (``cfg.data_pipeline``, ``--data-pipeline``): "loader", a DataLoader whose workers apply the
per-image torchvision transforms on the CPU; "device", the data set's uint8 images moved to the device once and
each batch augmented there in one pass (``superinfo.data.device_data``, ``superinfo.data.device_augment``: the same
distributions, its generator in the checkpoint).  "auto" (the default) is "device" on CUDA when the images fit
(at most 8 GiB and a quarter of the GPU's memory: every data set of ``superinfo.data.sources`` that holds its images
as one uint8 array, and an ImageFolder of at most 200,000 images), "loader" otherwise.  ``cfg.compile`` wraps the model's forward and the loss in ``torch.compile``.

Checkpoints are written at the end of each epoch, atomically (``superinfo.trainer.run``); a resumed run is
bit-identical to an uninterrupted one (tested, on one process and on two).

Several processes (``torchrun``, see ``superinfo.trainer.distributed``): ``batch_size`` stays the global batch,
split evenly over the ranks (an error when it does not divide); a DistributedSampler gives each rank its share of
each epoch; the model is wrapped in DistributedDataParallel, its BatchNorms synchronised across ranks with
``sync_bn``; the loss scores each rank's rows against the negatives of all ranks, gathered with gradients; the
posterior noise is drawn for the global batch.  One step's loss and gradients are then those of one process on the
global batch (tested with 2 and 3 gloo processes).  Rank 0 alone writes the log and the checkpoint.
"""
from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from mi_toolkit.errors import ArgumentError
from mi_toolkit.validation import value_checks

from .. import data
from ..lambdas import AUTO, AutoLambda, lambda_weights
from ..objective import GaussianPosterior, SuperInfoLoss
from ..methods import METHODS
from .config import RESUME_OVERRIDABLE, RunPlan, TrainConfig, resolve_device
from .distributed import DistContext, all_agree, average_gradients, convert_batchnorm, current_context
from .evaluate import evaluate_model, write_eval
from .monitor import KnnMonitor, plot_knn
from .optim import WarmupCosine, build_optimizer
from .run import (CHECKPOINT, LOSS_TERMS, RunLog, checkpoint_epoch, load_checkpoint, read_config,
                  restore_checkpoint, save_checkpoint, write_config)

__all__ = ["MetricInterval", "NonFiniteLossError", "Training", "build_training", "forward_backward", "read_metrics",
           "resume", "train", "train_step"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before the optimiser step."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Training:
    """Everything that has state in a run, and the plan it was built from."""

    cfg: TrainConfig
    plan: RunPlan
    model: nn.Module
    loss_fn: SuperInfoLoss
    probe: nn.Module | None
    optimizer: torch.optim.Optimizer
    probe_optimizer: torch.optim.Optimizer | None
    scheduler: WarmupCosine
    scaler: torch.amp.GradScaler
    loader: DataLoader
    generator: torch.Generator
    steps_per_epoch: int
    net: nn.Module          # what the step calls: the model, or its DistributedDataParallel wrapper
    noise: torch.Generator  # the posterior samples' noise, drawn for the global batch (identical on every rank)
    ctx: DistContext
    loss_call: object       # the loss as the step calls it: loss_fn, or torch.compile(loss_fn)
    schedules: tuple | None = None      # (lambda_a(step), lambda_b(step)) when lambda > 0: warm-up, then ramp
    auto_lambda: AutoLambda | None = None
    pipeline: str = "loader"            # "device": t.loader is a data.device_data.DeviceBatches
    augment_generator: torch.Generator | None = None    # the device pipeline's augmentations (in the checkpoint)
    epoch: int = 0          # completed epochs
    step: int = 0           # completed optimiser steps

    @property
    def device(self) -> torch.device:
        return self.plan.device


def check_distributed_settings(cfg: TrainConfig, ctx: DistContext) -> int:
    """The per-rank batch; refuses settings that cannot work with this process group."""
    if cfg.sync_bn and not ctx.active:
        raise ArgumentError("sync_bn=True (the imagenet preset's default) needs a torch.distributed process group with "
                         "more than one process: launch with torchrun --nproc_per_node=N (see the README), or pass "
                         "--no-sync-bn to train in a single process")
    if ctx.active and METHODS[cfg.method].deterministic and isinstance(cfg.sigma, str):
        # the means are scored, so a learned sigma gets no gradient while lambda is 0; DDP cannot reduce such a
        # step (and find_unused_parameters reorders its all-reduces against the negatives' gather: wrong gradients)
        raise ArgumentError(f"method {cfg.method!r} under torch.distributed needs a fixed sigma (a number), got "
                            f"sigma={cfg.sigma!r}: its contrastive term scores the head's means, so a learned sigma "
                            "gets no gradient while lambda is 0")
    return cfg.resolve(torch.device("cpu"), ctx.rank, ctx.world_size).local_batch   # refuses a batch W cannot split


def build_training(cfg: TrainConfig, dataset, num_classes: int | None = None) -> Training:
    """Seed, then build model, loss, probe, optimisers, schedule, scaler and loader (in that fixed order, so a
    resumed run builds the same objects before loading their states).

    Inside a torch.distributed group (torchrun) ``cfg.batch_size`` is the global batch: each rank loads
    batch_size / world_size rows through a DistributedSampler, the model is wrapped in DistributedDataParallel (its
    BatchNorms made ``CrossRankBatchNorm`` first when ``sync_bn``), and the loss gathers its negatives from every rank.
    """
    cfg.validate()
    ctx = current_context()
    check_distributed_settings(cfg, ctx)
    plan = cfg.resolve(rank=ctx.rank, world_size=ctx.world_size)
    device = plan.device
    seed_everything(cfg.seed)       # the same weights on every rank
    model = cfg.build_model()
    if cfg.sync_bn:
        model = convert_batchnorm(model)
    model = model.to(device, memory_format=plan.memory_format)
    temperature = cfg.temperature if cfg.lower_bound in ("ntxent", "pairwise") else None
    auto = cfg.lambda_a == AUTO
    lambda_a, lambda_b = (0.0, None) if auto else (cfg.lambda_a, cfg.lambda_b)
    if METHODS[cfg.method].symmetric_beta:      # MIB: beta times the KL's mean over its two directions
        lambda_a = lambda_b = cfg.lambda_a / 2
    loss_fn = SuperInfoLoss(cfg.z_dim, lambda_a=lambda_a, lambda_b=lambda_b,
                            lower_bound=cfg.lower_bound,
                            conditional=cfg.conditional, temperature=temperature,
                            allow_negative_lambda=cfg.allow_negative_lambda, backend=cfg.kernel_backend,
                            distributed=ctx.active, **cfg.extra).to(device)
    probe = nn.Linear(model.feature_dim, num_classes).to(device) if cfg.probe and num_classes else None
    optimizer = build_optimizer(cfg.optimizer, [model, loss_fn], cfg.lr, cfg.weight_decay, cfg.momentum)
    probe_optimizer = torch.optim.Adam(probe.parameters(), lr=cfg.probe_lr) if probe is not None else None
    net = model
    if ctx.active:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        seed_everything(plan.rank_seed)   # from here on (augmentations) each rank draws its own

    generator = torch.Generator().manual_seed(plan.rank_seed)
    if len(dataset) < cfg.batch_size:
        raise ArgumentError(f"the dataset has {len(dataset)} images, fewer than one batch of {cfg.batch_size} "
                         "(batches are full: drop_last=True)")
    pipeline = data_pipeline(cfg, dataset, plan)
    sampler = None
    if pipeline == "device":
        loader, augment_generator = _device_batches(cfg, plan, dataset, generator)
    elif ctx.active:     # each rank its 1/W of every epoch, shuffled by (seed, epoch): set_epoch before each epoch
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                                      shuffle=True, seed=cfg.seed, drop_last=True)
    if pipeline == "loader":
        augment_generator = None
        loader = DataLoader(dataset, batch_size=plan.local_batch, shuffle=sampler is None, sampler=sampler,
                            drop_last=True, num_workers=cfg.num_workers, generator=generator,
                            pin_memory=device.type == "cuda", persistent_workers=False)
    if len(loader) == 0:
        raise ArgumentError(f"the dataset has {len(dataset)} images: split over {ctx.world_size} processes that is "
                         f"less than one batch of {plan.local_batch} per process")
    steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    scheduler = WarmupCosine(optimizer, total_steps=cfg.epochs * steps,
                             warmup_steps=int(round(cfg.warmup_epochs * steps)), final_factor=cfg.final_lr_factor)
    scaler = torch.amp.GradScaler(device.type, enabled=plan.amp_dtype == torch.float16)
    noise = torch.Generator(device=device).manual_seed(plan.noise_seed)
    loss_call = loss_fn
    if cfg.compile:     # the model's forward (DDP's too) and the loss; the originals keep the states
        net, loss_call = torch.compile(net), torch.compile(loss_fn)
    warmup, ramp = plan.lambda_steps(steps)
    schedules, auto_lambda = lambda_weights(loss_fn.lambda_a, loss_fn.lambda_b, auto, warmup, ramp,
                                            cfg.epochs * steps, cfg.lambda_slack, device, plan.lambda_ramp_shape)
    return Training(cfg=cfg, plan=plan, model=model, loss_fn=loss_fn, probe=probe, optimizer=optimizer,
                    probe_optimizer=probe_optimizer, scheduler=scheduler, scaler=scaler, loader=loader,
                    generator=generator, steps_per_epoch=steps, net=net, noise=noise, ctx=ctx, loss_call=loss_call,
                    schedules=schedules, auto_lambda=auto_lambda, pipeline=pipeline,
                    augment_generator=augment_generator)


def data_pipeline(cfg: TrainConfig, dataset, plan: RunPlan) -> str:
    """"device" or "loader" for ``cfg.data_pipeline``: auto is "device" on CUDA when the data set's uint8 images fit
    (``superinfo.data.device_data.fits``: at most 8 GiB and a quarter of the GPU's memory), "loader" otherwise."""
    from ..data import device_data
    if cfg.data_pipeline == "loader":
        return "loader"
    if cfg.data_pipeline == "auto":
        return "device" if plan.device.type == "cuda" and device_data.fits(dataset, plan.image_size, plan.device) \
            else "loader"
    if device_data.stored_bytes(dataset, plan.image_size) is None:
        raise ArgumentError(f"--data-pipeline device: a {type(dataset).__name__} cannot be held on the device as uint8 "
                            "images (the data sets of superinfo.data.sources that hold one uint8 array, and "
                            "ImageFolder data sets of at most "
                            f"{device_data.FOLDER_MAX_IMAGES} images can); use --data-pipeline loader")
    return "device"


def _device_batches(cfg: TrainConfig, plan: RunPlan, dataset, generator):
    """The device pipeline: the data set's uint8 images on the device once, and the rank's augmentation generator."""
    from ..data import device_data
    from ..data.device_augment import DeviceAugment
    images, labels = device_data.uint8_images(dataset, plan.image_size)
    augment_generator = torch.Generator(device=plan.device).manual_seed(plan.augment_seed)
    batches = device_data.DeviceBatches(
        images.to(plan.device), labels, plan.local_batch,
        DeviceAugment(plan.data_preset, plan.device),
        order=generator, augment_generator=augment_generator, seed=cfg.seed, rank=plan.rank,
        world_size=plan.world_size)
    return batches, augment_generator


# ---------------------------------------------------------------------------------------------------------------
# One step, top to bottom.  Nothing in it reads a value back to the host: the step's metrics stay on the device,
# add up there, and are read once per logging interval (``read_metrics``), where a non-finite loss is caught.
# ---------------------------------------------------------------------------------------------------------------
def train_step(t: Training, batch) -> dict[str, torch.Tensor]:
    """One optimiser step on this rank's rows of the global batch ``(view1, view2, labels)``, top to bottom.

    Returns this rank's metrics as 0-d device tensors: the loss terms (``run.LOSS_TERMS``, the log's columns), the
    probe's share of its mean loss, its correct and labelled rows, whether it stepped, and how many entries of the
    head's output were NaN/inf.  ``MetricInterval`` adds them up; ``read_metrics`` reads them."""
    # 1. forward and loss: both views through the encoder as one batch, this step's lambdas
    terms, features, encoder_nonfinite = _forward(t, batch)
    # 2. automatic lambda: the global batch's terms move the multiplier, identically on every rank
    if t.auto_lambda is not None:
        _move_multiplier(t, terms)
    # 3. backward: every parameter's .grad becomes the global batch's gradient
    _backward(t, terms)
    # 4. the optimiser and the learning-rate schedule
    t.scaler.step(t.optimizer)
    t.scaler.update()
    t.scheduler.step()
    t.step += 1
    # 5. the online probe, on detached backbone features of view 1 (it never changes the encoder)
    probe = _probe_step(t, features.detach(), batch[2], getattr(batch, "labelled", None)) if t.probe is not None \
        else torch.zeros(4, device=t.device)
    metrics = {("loss" if k == "total" else k): _on_device(v, terms.total).detach().float()
               for k, v in vars(terms).items()}
    metrics.update(zip(("probe_loss", "probe_correct", "probe_n", "probe_steps"), probe.float().unbind()))
    metrics["encoder_nonfinite"] = encoder_nonfinite.float()
    return metrics


def _forward(t: Training, batch):
    """``(terms, view-1 backbone features, NaN/inf count of the head's output)`` of this rank's rows.  BatchNorm sees
    both views in one batch, as in SimCLR."""
    plan = t.plan
    x1, x2, _ = batch
    n = x1.shape[0]
    x = torch.cat([x1, x2]).to(plan.device, non_blocking=True).to(memory_format=plan.memory_format)
    t.model.train()
    with torch.autocast(plan.device.type, dtype=plan.amp_dtype or torch.float32, enabled=plan.amp_dtype is not None):
        h, post = t.net(x)
    p1 = GaussianPosterior(post.mean[:n], post.logvar[:n])
    p2 = GaussianPosterior(post.mean[n:], post.logvar[n:])
    encoder_nonfinite = (~torch.isfinite(post.mean)).sum() + (~torch.isfinite(post.logvar)).sum()
    # the contrastive term's inputs: the means (simclr, align: deterministic) or posterior samples
    z1, z2 = (p1.mean, p2.mean) if plan.deterministic else _posterior_samples(t, p1, p2)
    lambdas = {} if t.schedules is None else {"lambda_a": t.schedules[0](t.step), "lambda_b": t.schedules[1](t.step)}
    with value_checks(False):       # no NaN scans (host syncs) per step: read_metrics catches a non-finite loss
        terms = t.loss_call(p1, p2, z1, z2, **lambdas)   # no bool(t.loss_call): a compiled module answers bool()
        # through len(), which SuperInfoLoss does not have
    return terms, h[:n], encoder_nonfinite


def _posterior_samples(t: Training, p1: GaussianPosterior, p2: GaussianPosterior):
    """z = mean + std * eps, with eps drawn for the whole global batch on every rank and sliced to this rank's rows:
    row i of the global batch gets the same noise whatever the number of processes (the data order and the
    augmentations do depend on it)."""
    n, w = p1.mean.shape[0], t.ctx.world_size
    eps = torch.randn((2, w * n, p1.mean.shape[1]), generator=t.noise, device=t.device)
    eps = eps[:, t.ctx.rank * n:(t.ctx.rank + 1) * n]
    return p1.mean + p1.std * eps[0], p2.mean + p2.std * eps[1]


def _move_multiplier(t: Training, terms) -> None:
    both = torch.stack([terms.mi_lower.detach(), (terms.superfluous_a + terms.superfluous_b).detach()]).double()
    if t.ctx.active:
        dist.all_reduce(both)
        both /= t.ctx.world_size
    t.auto_lambda.update(t.step, both[0], both[1])


def _backward(t: Training, terms) -> None:
    t.optimizer.zero_grad(set_to_none=True)
    t.scaler.scale(terms.total).backward()
    average_gradients(t.loss_fn.parameters())       # the critic's (DDP averages the model's)


def forward_backward(t: Training, batch):
    """Loss and gradients of one batch (this rank's rows), with no optimiser step and no multiplier update (for
    checking gradients): ``(terms, view-1 features, encoder_nonfinite)``."""
    terms, features, encoder_nonfinite = _forward(t, batch)
    _backward(t, terms)
    return terms, features, encoder_nonfinite


def count_labelled(y: torch.Tensor) -> int:
    """Labelled rows (label >= 0) of a batch's labels as the loader gives them, on the host: no device sync."""
    return int((y >= 0).sum())


def _probe_step(t: Training, features: torch.Tensor, y: torch.Tensor, labelled: int | None = None) -> torch.Tensor:
    """One step of the online linear probe on detached features, over the labelled rows (y >= 0) of the global
    batch: ``[mean-loss share, correct, labelled, stepped]`` on the device.  It skips batches where no rank has a
    labelled row (e.g. STL-10's unlabelled split).  ``labelled``: this rank's labelled rows when the host knows them
    (the device pipeline's labels live on the device); else counted from the loader's host labels.  The unlabelled
    rows are masked, not indexed away (a boolean index would wait for the device)."""
    if labelled is None:
        labelled = count_labelled(y)
    if t.ctx.active:    # the global count decides, so that every rank steps or skips together
        total = torch.tensor(float(labelled), device=t.device)
        dist.all_reduce(total)
        if total.item() == 0:       # the one read-back a step makes, and only under torch.distributed
            return torch.zeros(4, device=t.device)
    elif labelled == 0:
        return torch.zeros(4, device=t.device)
    else:
        total = labelled
    y = y.to(t.device, non_blocking=True)
    keep = y >= 0
    logits = t.probe(features.float())
    loss_sum = F.cross_entropy(logits, torch.where(keep, y, -100), ignore_index=-100, reduction="sum")
    t.probe_optimizer.zero_grad(set_to_none=True)
    # the ranks' gradients are averaged next: W * sum_r / n_all makes that the global mean's gradient
    (loss_sum * t.ctx.world_size / total).backward()
    average_gradients(t.probe.parameters())
    t.probe_optimizer.step()
    correct = ((logits.argmax(1) == y) & keep).sum()
    one = torch.ones((), device=t.device)
    return torch.stack([loss_sum.detach() / total, correct.float(), one * labelled, one])


def _on_device(value, like: torch.Tensor) -> torch.Tensor:
    """A tensor stays; a Python number becomes a fill kernel on the device (``torch.as_tensor(x, device=cuda)``
    copies from the host and waits for the queue)."""
    if torch.is_tensor(value):
        return value.to(like.dtype)
    return torch.full((), float(value), device=like.device, dtype=like.dtype)


def read_metrics(t: Training, sums: dict, steps: int) -> dict:
    """The global batch's metrics over ``steps`` steps from this rank's summed ``train_step`` metrics: loss terms
    averaged over steps and ranks, the probe's mean loss over the steps it took, its correct and labelled rows
    summed.  One host read-back on one process (under torch.distributed: this rank's values, then, after one
    all-reduce, the group's); raises ``NonFiniteLossError`` on every rank alike when the
    loss or the encoder's output of any rank became NaN/inf."""
    keys = list(sums)
    stacked = torch.stack([sums[k].double() for k in keys])
    local = dict(zip(keys, stacked.tolist()))
    if t.ctx.active:
        dist.all_reduce(stacked)
    values = dict(zip(keys, stacked.tolist())) if t.ctx.active else local
    w = t.ctx.world_size
    out = {k: values[k] / (w * steps) for k in LOSS_TERMS}
    where = f"non-finite loss at epoch {t.epoch + 1}, step {t.step}"
    if values["encoder_nonfinite"]:
        why = "the encoder's output holds NaN/inf: check the inputs and the lr" if local["encoder_nonfinite"] else \
            "another rank's encoder output holds NaN/inf"
        raise NonFiniteLossError(f"{where} ({why})")
    if not all(math.isfinite(v) for v in out.values()):
        raise NonFiniteLossError(f"{where} (terms averaged over the last {steps} step(s): "
                                 f"{ {k: round(v, 6) for k, v in out.items()} })")
    if values["probe_steps"]:
        out.update(probe_loss=values["probe_loss"] * w / values["probe_steps"],
                   probe_correct=round(values["probe_correct"]), probe_n=round(values["probe_n"]))
    return out


class MetricInterval:
    """What adds up between two log rows: the step metrics (one float64 vector on the device, in the order of
    the step's keys), steps, images and time."""

    def __init__(self):
        self.keys: list[str] = []
        self.sums: torch.Tensor | None = None
        self.steps, self.images, self.t0 = 0, 0, time.perf_counter()

    def add(self, metrics: dict, images: int, lr: float) -> None:
        vector = torch.stack(list(metrics.values())).double()
        if self.sums is None:
            self.keys, self.sums = list(metrics), vector
        else:
            self.sums += vector
        self.steps += 1
        self.images += images
        self.lr = lr            # the last step's learning rate

    def row(self, t: Training, elapsed: float) -> dict:
        row = read_metrics(t, dict(zip(self.keys, self.sums.unbind())), self.steps)
        n = row.pop("probe_n", 0)
        row["probe_acc"] = row.pop("probe_correct") / n if n else ""
        dt = time.perf_counter() - self.t0
        row.update(epoch=t.epoch + 1, step=t.step, lr=self.lr,
                   images_per_s=self.images / dt if dt > 0 else "", elapsed_s=elapsed)
        return row


def _last_good(run_dir: Path) -> str:
    path = run_dir / CHECKPOINT
    if not path.exists():
        return "no checkpoint was written yet (the first epoch did not finish)"
    epoch = checkpoint_epoch(path)
    return f"the last good checkpoint is {path} (after epoch {epoch}); it was left untouched"


def _run_final_eval(t: Training, run_dir: Path, eval_data) -> dict | None:

    if eval_data is None:
        _, eval_data = data.load_datasets(t.cfg, eval_too=True, pretrain=False)
    train_ds, test_ds = eval_data
    result = evaluate_model(t.model, train_ds, test_ds, t.cfg.final_eval, device=t.device, k=t.cfg.knn_k,
                            temperature=t.cfg.knn_temperature, batch_size=t.cfg.batch_size,
                            num_workers=t.cfg.num_workers, seed=t.cfg.seed, channels_last=t.plan.channels_last)
    result.update(checkpoint_epoch=t.epoch, dataset=t.cfg.dataset)
    write_eval(run_dir, result)
    return result


def train(cfg: TrainConfig, *, pretrain_data=None, eval_data=None, num_classes: int | None = None,
          resume_from_checkpoint: bool = False) -> dict:
    """Train (or, with ``resume_from_checkpoint``, continue) the run in ``cfg.out``.

    ``pretrain_data``: a dataset of ``(view1, view2, label)`` (default: ``superinfo.data.pretrain_dataset``);
    ``eval_data``: ``(train_ds, test_ds)`` of ``(image, label)`` for the final evaluation (default:
    ``superinfo.data.eval_datasets``).  Returns a summary dict (also the last log row).
    """
    cfg.validate()
    if cfg.out is None:
        raise ArgumentError("out (the run folder) is required")
    ctx = current_context()
    check_distributed_settings(cfg, ctx)
    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    if pretrain_data is None:
        pretrain_data = _load_pretrain_data(cfg, ctx)
    if num_classes is None:
        num_classes = data.num_classes_of(pretrain_data)
    t = build_training(cfg, pretrain_data, num_classes)
    resume_step = None
    if resume_from_checkpoint:
        # on the CPU: load_state_dict copies weights and optimiser states to their device; RNG states must stay here
        state = load_checkpoint(run_dir / CHECKPOINT, map_location="cpu")
        restore_checkpoint(t, state)
        resume_step = t.step
        if t.scheduler.total_steps != cfg.epochs * t.steps_per_epoch:   # --epochs changed on resume
            t.scheduler.total_steps = cfg.epochs * t.steps_per_epoch
            t.scheduler.step(advance=False)
    else:
        if (run_dir / CHECKPOINT).exists():
            raise ArgumentError(f"{run_dir} already holds a run; resume it (--resume {run_dir}) or pick another --out")
        if ctx.is_main:
            write_config(run_dir, cfg)
    log = RunLog(run_dir, resume_step) if ctx.is_main else None     # rank 0 alone logs and checkpoints
    monitor = KnnMonitor(cfg, eval_data) if cfg.knn_every and ctx.is_main else None
    stop = cfg.epochs if cfg.stop_after_epochs is None else min(cfg.epochs, t.epoch + cfg.stop_after_epochs)
    start_time = time.perf_counter()
    last_row: dict = {}
    try:
        from tqdm.auto import tqdm
        while t.epoch < stop:
            if isinstance(t.loader.sampler, torch.utils.data.DistributedSampler):
                t.loader.sampler.set_epoch(t.epoch)
            elif t.pipeline == "device":
                t.loader.set_epoch(t.epoch)
            interval = MetricInterval()
            bar = tqdm(total=t.steps_per_epoch, desc=f"epoch {t.epoch + 1}/{cfg.epochs}",
                       disable=not (cfg.progress and ctx.is_main), leave=False, dynamic_ncols=True)
            for i, batch in enumerate(t.loader):
                if i >= t.steps_per_epoch:
                    break
                lr = t.optimizer.param_groups[0]["lr"]      # what this step uses (the schedule steps after it)
                interval.add(train_step(t, batch), batch[0].shape[0] * ctx.world_size, lr)
                bar.update(1)
                if t.step % cfg.log_every == 0 or i + 1 == t.steps_per_epoch:
                    try:
                        last_row = interval.row(t, time.perf_counter() - start_time)
                    except NonFiniteLossError as err:
                        raise NonFiniteLossError(f"{err}. Training stopped; {_last_good(run_dir)}.") from None
                    if monitor is not None and i + 1 == t.steps_per_epoch and monitor.due(t.epoch + 1):
                        last_row["knn_val_top1"] = monitor(t)
                    if log is not None:
                        log.write(last_row)
                    bar.set_postfix(loss=f"{last_row['loss']:.3f}", img_s=f"{last_row['images_per_s']:.0f}")
                    interval = MetricInterval()
            bar.close()
            t.epoch += 1
            save_checkpoint(t, run_dir / CHECKPOINT)
    finally:
        if log is not None:
            log.close()
    if monitor is not None:
        plot_knn(run_dir)
    summary = {"run_dir": str(run_dir), "epoch": t.epoch, "step": t.step, "last_log": last_row,
               "finished": t.epoch >= cfg.epochs, "world_size": ctx.world_size}
    if summary["finished"] and cfg.final_eval != "none" and ctx.is_main:   # on rank 0; the others are done
        summary["eval"] = _run_final_eval(t, run_dir, eval_data)
    return summary


def _load_pretrain_data(cfg: TrainConfig, ctx: DistContext):
    """The pre-training set.  In a process group with --download, rank 0 downloads first and the others then read
    the files; a rank that fails to load stops every rank."""
    if not ctx.active:
        return data.load_datasets(cfg)[0]
    dataset = None
    for turn in (("rank 0", "the others") if cfg.download else ("all",)):
        mine = turn == "all" or (turn == "rank 0") == ctx.is_main
        error = None
        if mine:
            try:
                dataset = data.load_datasets(cfg)[0]
            except Exception as err:    # re-raised below, after telling the other ranks
                error = err
        if not all_agree(error is None, resolve_device(cfg.device)):
            raise error or RuntimeError("another rank could not load the data (see its error); this rank stops too")
    return dataset


def resume(run_dir, *, pretrain_data=None, eval_data=None, num_classes=None, **overrides) -> dict:
    """Continue the run in ``run_dir`` from its last checkpoint.  Only ``RESUME_OVERRIDABLE`` settings may change
    (changing ``epochs`` changes the schedule, so that run is no longer the same as an uninterrupted one)."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).exists():
        raise ArgumentError(f"{run_dir} has no {CHECKPOINT} to resume from")
    cfg = read_config(run_dir)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    bad = sorted(set(overrides) - set(RESUME_OVERRIDABLE))
    if bad:
        raise ArgumentError(f"cannot change {', '.join(bad)} when resuming (allowed: {', '.join(RESUME_OVERRIDABLE)})")
    cfg = dataclasses.replace(cfg, out=str(run_dir), **overrides)
    if "epochs" in overrides and current_context().is_main:
        write_config(run_dir, cfg)
    return train(cfg, pretrain_data=pretrain_data, eval_data=eval_data, num_classes=num_classes,
                 resume_from_checkpoint=True)
