"""The SuperInfo trainer: config + presets, build, training loop, checkpoints with exact resume, CSV log, online
linear probe and a non-finite-loss guard.

    from superinfo.train import TrainConfig, preset_config, train, resume
    cfg = preset_config("cifar10", data_root="data", out="runs/c10", lambda_a=0.1)
    train(cfg)                       # RUN_DIR/config.json, checkpoint.pt (each epoch), log.csv, eval.json
    resume("runs/c10")               # continues bit-exactly from the last completed epoch

One step: both views go through the encoder as one batch (BatchNorm sees both, as in SimCLR); the stochastic head
gives p(z1|v1), p(z2|v2); ``SuperInfoLoss`` returns every term; Adam/LARS step; the warm-up + cosine schedule steps
per iteration.  The online probe is a linear classifier on detached backbone features of view 1 with its own Adam;
it never changes the encoder.  Labels < 0 (unlabelled images, e.g. STL-10's unlabelled split) are skipped by it.

Checkpoints are written at the end of each epoch (``torch.save`` to a temporary file, then ``os.replace``): model,
loss-module (critic) and probe weights, every optimiser, the schedule, the grad scaler, epoch/step counters and the
RNG states of torch (CPU and CUDA), numpy, ``random`` and the DataLoader's generator.  With ``num_workers=0`` on CPU,
training 2 epochs straight and training 1 epoch, stopping and resuming give bit-identical weights and optimiser
states (tested).  A non-finite loss raises ``NonFiniteLossError`` before the optimiser step: nothing is saved, and
the last checkpoint (the last completed epoch) stays as it was.

Several processes (``torchrun``, see ``superinfo.distributed``): ``batch_size`` stays the global batch, split evenly
over the ranks (an error when it does not divide); a DistributedSampler gives each rank its share of each epoch;
the model is wrapped in DistributedDataParallel, its BatchNorms synchronised across ranks with ``sync_bn``; the
loss scores each rank's rows against the negatives of all ranks, gathered with gradients; the posterior noise is
drawn for the global batch.  One step's loss and gradients are then those of one process on the global batch
(tested with 2 and 3 gloo processes).  Rank 0 alone writes the log and the checkpoint; the checkpoint holds every
rank's RNG state, and every rank restores its own on resume.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from mi_toolkit.kernels import CALLER_BACKENDS

from mi_toolkit.atomic import write_atomically, write_json_atomically
from .distributed import DistContext, all_agree, all_reduce_mean, average_gradients, convert_batchnorm, current_context
from .models import ARCHS, build_model
from .objective import CONDITIONAL_BOUNDS, GaussianPosterior, SuperInfoLoss
from .optim import WarmupCosine, build_optimizer

__all__ = ["LOG_COLUMNS", "NonFiniteLossError", "PRESETS", "TrainConfig", "build_training", "load_checkpoint",
           "preset_config", "resume", "save_checkpoint", "train"]

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
LOG = "log.csv"
LOG_COLUMNS = ["epoch", "step", "lr", "loss", "contrastive", "mi_lower", "superfluous_a", "superfluous_b",
               "probe_loss", "probe_acc", "images_per_s", "elapsed_s"]
FINAL_EVALS = ("knn", "linear", "none")


@dataclass
class TrainConfig:
    """Every setting of a run (saved as RUN_DIR/config.json).  ``None`` means "derive": ``image_size`` from the data
    preset, ``width`` from the arch, ``lambda_b`` = ``lambda_a``, ``head_hidden`` = feature dim, ``channels_last``
    on CUDA only; ``amp="auto"`` is bf16 autocast on CUDA and fp32 elsewhere."""

    dataset: str = "cifar10"
    data_root: str | None = None
    out: str | None = None
    # model
    arch: str = "resnet18"
    width: int | None = None
    cifar_stem: bool = True
    image_size: int | None = None
    z_dim: int = 128
    head_hidden: int | None = None
    head_layers: int = 1
    sigma: float | str = 1.0
    # objective
    lambda_a: float = 0.0
    lambda_b: float | None = None
    lower_bound: str = "ntxent"
    conditional: str = "kl"
    temperature: float | None = 0.5
    allow_negative_lambda: bool = False
    kernel_backend: str = "auto"
    # optimisation
    epochs: int = 200
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-6
    momentum: float = 0.9
    warmup_epochs: float = 10.0
    final_lr_factor: float = 0.0
    # probe, evaluation
    probe: bool = True
    probe_lr: float = 1e-3
    final_eval: str = "knn"
    knn_k: int = 200
    knn_temperature: float = 0.1
    # machinery
    seed: int = 0
    num_workers: int = 4
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool | None = None
    sync_bn: bool = False
    log_every: int = 10
    stop_after_epochs: int | None = None
    max_steps_per_epoch: int | None = None
    download: bool = False
    verify: bool = True
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; valid: {', '.join(ARCHS)}")
        if self.conditional not in CONDITIONAL_BOUNDS:
            raise ValueError(f"unknown conditional bound {self.conditional!r}; valid: {', '.join(CONDITIONAL_BOUNDS)}")
        if self.optimizer not in ("adam", "adamw", "sgd", "lars"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: adam, adamw, sgd, lars")
        if self.amp not in ("auto", "none", "bf16", "fp16"):
            raise ValueError(f"amp must be auto, none, bf16 or fp16, got {self.amp!r}")
        if self.final_eval not in FINAL_EVALS:
            raise ValueError(f"final_eval must be one of {', '.join(FINAL_EVALS)}, got {self.final_eval!r}")
        for name in ("epochs", "batch_size", "log_every", "z_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 (the other rows are the negatives)")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.kernel_backend not in CALLER_BACKENDS:
            raise ValueError(f"kernel_backend must be one of {', '.join(CALLER_BACKENDS)}, got {self.kernel_backend!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return cls(**d)


# The paper protocol.  CIFAR-10/STL-10: ResNet-18 with the CIFAR stem, Adam, 200 epochs, batch 256.  ImageNet:
# ResNet-50, LARS with SimCLR's lr = 0.3 * batch / 256 (4.8 at 4096), weight decay 1e-6, 10 warm-up epochs.
PRESETS: dict[str, dict] = {
    "cifar10": dict(dataset="cifar10", arch="resnet18", cifar_stem=True, epochs=200, batch_size=256,
                    optimizer="adam", lr=1e-3, weight_decay=1e-6, warmup_epochs=10, temperature=0.5,
                    final_eval="knn"),
    "stl10": dict(dataset="stl10", arch="resnet18", cifar_stem=True, epochs=200, batch_size=256,
                  optimizer="adam", lr=1e-3, weight_decay=1e-6, warmup_epochs=10, temperature=0.5,
                  final_eval="knn"),
    # The embedded default (superinfo demo): scikit-learn's digits at 16 px, a narrow ResNet-18, minutes on a CPU.
    "digits": dict(dataset="digits", arch="resnet18", width=8, cifar_stem=True, image_size=16, epochs=30,
                   batch_size=128, optimizer="adam", lr=3e-3, weight_decay=1e-6, warmup_epochs=2, temperature=0.5,
                   final_eval="none", num_workers=0),
    "imagenet": dict(dataset="imagenet", arch="resnet50", cifar_stem=False, epochs=100, batch_size=4096,
                     optimizer="lars", lr=4.8, weight_decay=1e-6, momentum=0.9, warmup_epochs=10,
                     temperature=0.1, final_eval="none", num_workers=8, sync_bn=True),
}


def preset_config(name: str, **overrides) -> TrainConfig:
    """The preset ``name`` with ``overrides`` applied (``None`` values are ignored)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    values = dict(PRESETS[name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values).validate()


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before the optimiser step."""


# ---------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:   # under torchrun: the GPU init_from_env selected
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _amp_dtype(cfg: TrainConfig, device: torch.device):
    amp = cfg.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "none"
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def _channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    return device.type == "cuda" if cfg.channels_last is None else bool(cfg.channels_last)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_datasets(cfg: TrainConfig, eval_too: bool = False, pretrain: bool = True):
    """``(pretrain_ds | None, eval_pair | None)`` from ``superinfo.data`` (imported here: it is optional for the rest)."""
    from . import data

    if cfg.dataset not in data.PRESETS:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; valid: {', '.join(data.PRESETS)}")
    if cfg.data_root is None and cfg.dataset != "digits":   # digits ships with scikit-learn
        raise ValueError("data_root is required (--data-root DIR)")
    if hasattr(data, "preset_for"):     # resizes blur / eval-resize consistently
        preset = data.preset_for(cfg.dataset, cfg.image_size)
    else:
        preset = data.PRESETS[cfg.dataset]
        if cfg.image_size is not None:
            preset = dataclasses.replace(preset, image_size=cfg.image_size)
    pre = data.pretrain_dataset(cfg.dataset, cfg.data_root, preset, download=cfg.download, verify=cfg.verify) \
        if pretrain else None
    ev = data.eval_datasets(cfg.dataset, cfg.data_root, preset, download=cfg.download, verify=cfg.verify) \
        if eval_too else None
    return pre, ev


def _num_classes(dataset) -> int | None:
    try:
        from . import data
        return int(data.num_classes(dataset))
    except Exception:  # data module absent, or an unlabelled / in-memory dataset
        n = getattr(dataset, "num_classes", None)
        if n is None and hasattr(dataset, "classes"):
            n = len(dataset.classes)
        return None if n is None else int(n)


@dataclass
class Training:
    """Everything that has state in a run."""

    cfg: TrainConfig
    device: torch.device
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
    epoch: int = 0          # completed epochs
    step: int = 0           # completed optimiser steps


def check_distributed_settings(cfg: TrainConfig, ctx: DistContext) -> int:
    """The per-rank batch; refuses settings that cannot work with this process group."""
    if cfg.sync_bn and not ctx.active:
        raise ValueError("sync_bn=True (the imagenet preset's default) needs a torch.distributed process group with "
                         "more than one process: launch with torchrun --nproc_per_node=N (see the README), or pass "
                         "--no-sync-bn to train in a single process")
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is the global batch and must be divisible by the "
                         f"{ctx.world_size} processes (each rank takes batch_size / world_size rows); pick e.g. "
                         f"{cfg.batch_size - cfg.batch_size % ctx.world_size or ctx.world_size * 2}")
    return cfg.batch_size // ctx.world_size


def build_training(cfg: TrainConfig, dataset, num_classes: int | None = None) -> Training:
    """Seed, then build model, loss, probe, optimisers, schedule, scaler and loader (in that fixed order, so a
    resumed run builds the same objects before loading their states).

    Inside a torch.distributed group (torchrun) ``cfg.batch_size`` is the global batch: each rank loads
    batch_size / world_size rows through a DistributedSampler, the model is wrapped in DistributedDataParallel (its
    BatchNorms made ``CrossRankBatchNorm`` first when ``sync_bn``), and the loss gathers its negatives from every rank.
    """
    cfg.validate()
    ctx = current_context()
    local_batch = check_distributed_settings(cfg, ctx)
    seed_everything(cfg.seed)       # the same weights on every rank
    device = resolve_device(cfg.device)
    model = build_model(cfg.arch, width=cfg.width, cifar_stem=cfg.cifar_stem, z_dim=cfg.z_dim,
                        head_hidden=cfg.head_hidden, head_layers=cfg.head_layers, sigma=cfg.sigma)
    if cfg.sync_bn:
        model = convert_batchnorm(model)
    model = model.to(device)
    if _channels_last(cfg, device):
        model = model.to(memory_format=torch.channels_last)
    temperature = cfg.temperature if cfg.lower_bound == "ntxent" else None
    loss_fn = SuperInfoLoss(cfg.z_dim, lambda_a=cfg.lambda_a, lambda_b=cfg.lambda_b, lower_bound=cfg.lower_bound,
                            conditional=cfg.conditional, temperature=temperature,
                            allow_negative_lambda=cfg.allow_negative_lambda, backend=cfg.kernel_backend,
                            distributed=ctx.active, **cfg.extra).to(device)
    probe = nn.Linear(model.feature_dim, num_classes).to(device) if cfg.probe and num_classes else None
    optimizer = build_optimizer(cfg.optimizer, [model, loss_fn], cfg.lr, cfg.weight_decay, cfg.momentum)
    probe_optimizer = torch.optim.Adam(probe.parameters(), lr=cfg.probe_lr) if probe is not None else None
    net = model
    if ctx.active:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        seed_everything(cfg.seed + 104_729 * ctx.rank)   # from here on (augmentations) each rank draws its own

    generator = torch.Generator().manual_seed(cfg.seed + 104_729 * ctx.rank)
    if len(dataset) < cfg.batch_size:
        raise ValueError(f"the dataset has {len(dataset)} images, fewer than one batch of {cfg.batch_size} "
                         "(batches are full: drop_last=True)")
    sampler = None
    if ctx.active:     # each rank its 1/W of every epoch, shuffled by (seed, epoch): set_epoch before each epoch
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                                      shuffle=True, seed=cfg.seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=local_batch, shuffle=sampler is None, sampler=sampler, drop_last=True,
                        num_workers=cfg.num_workers, generator=generator, pin_memory=device.type == "cuda",
                        persistent_workers=False)
    if len(loader) == 0:
        raise ValueError(f"the dataset has {len(dataset)} images: split over {ctx.world_size} processes that is "
                         f"less than one batch of {local_batch} per process")
    steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    scheduler = WarmupCosine(optimizer, total_steps=cfg.epochs * steps,
                             warmup_steps=int(round(cfg.warmup_epochs * steps)), final_factor=cfg.final_lr_factor)
    scaler = torch.amp.GradScaler(device.type, enabled=_amp_dtype(cfg, device) == torch.float16)
    noise = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    return Training(cfg, device, model, loss_fn, probe, optimizer, probe_optimizer, scheduler, scaler, loader,
                    generator, steps, net, noise, ctx)


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------
def _rng_state(t: Training) -> dict:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": np.random.get_state(), "python": random.getstate(), "loader": t.generator.get_state(),
            "noise": t.noise.get_state()}


def _set_rng_state(t: Training, s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    t.generator.set_state(s["loader"])
    if "noise" in s:
        t.noise.set_state(s["noise"])


def save_checkpoint(t: Training, path) -> Path:
    """Atomic: write ``path.tmp`` then ``os.replace`` (a kill mid-write leaves the previous checkpoint intact).

    In a process group every rank must call it: the RNG states of all ranks are gathered (so a resume restores each
    rank's own) and rank 0 alone writes the file."""
    path = Path(path)
    rng = [_rng_state(t)]
    if t.ctx.active:
        rng = [None] * t.ctx.world_size
        dist.all_gather_object(rng, _rng_state(t))
    error = None
    if t.ctx.is_main:
        try:
            state = _checkpoint_state(t, rng)
            write_atomically(path, lambda f: torch.save(state, f), fsync=True)
        except OSError as err:
            error = err
    # also the barrier: no rank goes on (and may read the file) before it is complete
    if not all_agree(error is None, t.device):
        raise error or RuntimeError(f"rank 0 could not write {path} (see its error); this rank stops too")
    return path


def _checkpoint_state(t: Training, rng: list) -> dict:
    return {
        "config": t.cfg.to_dict(), "epoch": t.epoch, "step": t.step,
        "model": t.model.state_dict(), "loss_fn": t.loss_fn.state_dict(),
        "probe": t.probe.state_dict() if t.probe is not None else None,
        "optimizer": t.optimizer.state_dict(),
        "probe_optimizer": t.probe_optimizer.state_dict() if t.probe_optimizer is not None else None,
        "scheduler": t.scheduler.state_dict(), "scaler": t.scaler.state_dict(), "rng": rng,
        "world_size": t.ctx.world_size, "torch_version": torch.__version__,
    }


def load_checkpoint(path, map_location="cpu") -> dict:
    # weights_only=False: the RNG states hold numpy arrays and Python tuples (our own files only)
    return torch.load(path, map_location=map_location, weights_only=False)


def checkpoint_epoch(path) -> int:
    """The completed epochs a checkpoint holds, without reading its weights (memory-mapped load)."""
    return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["epoch"])


def _restore(t: Training, state: dict) -> None:
    t.model.load_state_dict(state["model"])
    t.loss_fn.load_state_dict(state["loss_fn"])
    if t.probe is not None and state["probe"] is not None:
        t.probe.load_state_dict(state["probe"])
        t.probe_optimizer.load_state_dict(state["probe_optimizer"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    t.scaler.load_state_dict(state["scaler"])
    t.epoch, t.step = int(state["epoch"]), int(state["step"])
    rng = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]   # one entry per rank
    if len(rng) != t.ctx.world_size:
        warnings.warn(f"the checkpoint was written by {len(rng)} process(es), this run has {t.ctx.world_size}: "
                      "weights, optimiser and schedule continue, but the data order and random streams differ from "
                      "an uninterrupted run", stacklevel=2)
    _set_rng_state(t, rng[t.ctx.rank % len(rng)])


# ---------------------------------------------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------------------------------------------
class RunLog:
    """CSV (always) and TensorBoard (when installed) scalars.  On resume, rows past the checkpoint's step (written
    by the killed run after its last checkpoint) are dropped, so the log matches an uninterrupted run."""

    def __init__(self, run_dir: Path, resume_step: int | None):
        self.path = run_dir / LOG
        rows = []
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.file = open(self.path, "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=LOG_COLUMNS)
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.file.flush()
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run_dir / "tb"))
        except Exception:  # tensorboard not installed
            self.tb = None

    def write(self, row: dict) -> None:
        self.writer.writerow({k: row.get(k, "") for k in LOG_COLUMNS})
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("epoch", "step") and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


class _Meter:
    def __init__(self):
        self.reset()

    def reset(self):
        self.sums, self.n, self.probe_n, self.probe_correct, self.images = {}, 0, 0, 0, 0
        self.probe_n_steps = 0
        self.t0 = time.perf_counter()

    def add(self, terms: dict, images: int):
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1
        self.images += images

    def row(self, epoch, step, lr, elapsed) -> dict:
        row = {k: v / max(1, self.n) for k, v in self.sums.items()}
        if "probe_loss" in self.sums:
            row["probe_loss"] = self.sums["probe_loss"] / max(1, self.probe_n_steps)
        row["probe_acc"] = self.probe_correct / self.probe_n if self.probe_n else ""
        dt = time.perf_counter() - self.t0
        row.update(epoch=epoch, step=step, lr=lr, images_per_s=self.images / dt if dt > 0 else "",
                   elapsed_s=elapsed)
        return row


# ---------------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------------
def _posterior_samples(t: Training, p1: GaussianPosterior, p2: GaussianPosterior):
    """z = mean + std * eps, with eps drawn for the whole global batch on every rank and sliced to this rank's rows:
    row i of the global batch gets the same noise whatever the number of processes (the data order and the
    augmentations do depend on it)."""
    n, w = p1.mean.shape[0], t.ctx.world_size
    eps = torch.randn((2, w * n, p1.mean.shape[1]), generator=t.noise, device=t.device)
    eps = eps[:, t.ctx.rank * n:(t.ctx.rank + 1) * n]
    return p1.mean + p1.std * eps[0], p2.mean + p2.std * eps[1]


def forward_backward(t: Training, batch):
    """Loss and gradients of one batch (this rank's rows), without the optimiser step: ``(terms, features, n)``.

    After it returns, every parameter's ``.grad`` is the gradient of the global batch's loss (DDP averages the
    model's; the loss's critic is averaged here)."""
    cfg, device = t.cfg, t.device
    x1, x2, y = batch
    cl = torch.channels_last if _channels_last(cfg, device) else torch.contiguous_format
    x = torch.cat([x1, x2]).to(device, non_blocking=True).to(memory_format=cl)
    n = x1.shape[0]
    amp = _amp_dtype(cfg, device)
    t.model.train()
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        h, post = t.net(x)
    p1 = GaussianPosterior(post.mean[:n], post.logvar[:n])
    p2 = GaussianPosterior(post.mean[n:], post.logvar[n:])
    where = f"non-finite loss at epoch {t.epoch + 1}, step {t.step + 1}"
    finite = bool(torch.isfinite(post.mean).all()) and bool(torch.isfinite(post.logvar).all())
    if not all_agree(finite, t.device):
        why = "the encoder's output holds NaN/inf: check the inputs and the lr" if not finite else \
            "another rank's encoder output holds NaN/inf"
        raise NonFiniteLossError(f"{where} ({why})")
    z1, z2 = _posterior_samples(t, p1, p2)
    terms, refused = None, None
    try:
        terms = t.loss_fn(p1, p2, z1, z2)
    except ValueError as err:      # the estimators refuse non-finite scores
        if "NaN" not in str(err) and "inf" not in str(err):
            raise
        refused = err
    finite = refused is None and bool(torch.isfinite(terms.total))
    if not all_agree(finite, t.device):
        if refused is not None:
            raise NonFiniteLossError(f"{where} ({refused})") from None
        if not finite:
            values = {k: round(v, 6) if isinstance(v, float) else v for k, v in terms.as_dict().items()}
            raise NonFiniteLossError(f"{where} (terms: {values})")
        raise NonFiniteLossError(f"{where} (on another rank)")
    t.optimizer.zero_grad(set_to_none=True)
    t.scaler.scale(terms.total).backward()
    average_gradients(t.loss_fn.parameters())
    return terms, h, n


def _probe_step(t: Training, features: torch.Tensor, y: torch.Tensor) -> dict:
    """One step of the online linear probe on detached features, over the labelled rows (y >= 0) of the global
    batch; an empty dict when no rank has a labelled row (e.g. STL-10's unlabelled split)."""
    y = y.to(t.device, non_blocking=True)
    keep = y >= 0
    labelled = torch.tensor(float(keep.sum()), device=t.device)
    if t.ctx.active:
        dist.all_reduce(labelled)
    if labelled.item() == 0:
        return {}
    logits = t.probe(features[keep].float())
    loss_sum = F.cross_entropy(logits, y[keep], reduction="sum")
    t.probe_optimizer.zero_grad(set_to_none=True)
    # the ranks' gradients are averaged next: W * sum_r / n_all makes that the global mean's gradient
    (loss_sum * t.ctx.world_size / labelled).backward()
    average_gradients(t.probe.parameters())
    t.probe_optimizer.step()
    return {"probe_loss_sum": float(loss_sum.detach()), "probe_correct": float((logits.argmax(1) == y[keep]).sum()),
            "probe_n": float(keep.sum())}


def _global_metrics(out: dict, t: Training) -> dict:
    """The global batch's metrics: loss terms averaged over ranks, the probe's sums summed."""
    out = all_reduce_mean(out, t.device)
    if "probe_n" in out:
        w = t.ctx.world_size
        n = round(out.pop("probe_n") * w)
        out.update(probe_loss=out.pop("probe_loss_sum") * w / n, probe_correct=round(out["probe_correct"] * w),
                   probe_n=n)
    return out


def _train_step(t: Training, batch) -> dict:
    terms, h, n = forward_backward(t, batch)
    t.scaler.step(t.optimizer)
    t.scaler.update()
    out = {k: float(getattr(terms, k).detach()) for k in ("contrastive", "mi_lower", "superfluous_a",
                                                          "superfluous_b")}
    out["loss"] = float(terms.total.detach())
    lr = t.optimizer.param_groups[0]["lr"]
    t.scheduler.step()
    t.step += 1
    if t.probe is not None:
        out.update(_probe_step(t, h[:n].detach(), batch[2]))
    out = _global_metrics(out, t)
    out["lr"] = lr
    return out


def _last_good(run_dir: Path) -> str:
    path = run_dir / CHECKPOINT
    if not path.exists():
        return "no checkpoint was written yet (the first epoch did not finish)"
    epoch = checkpoint_epoch(path)
    return f"the last good checkpoint is {path} (after epoch {epoch}); it was left untouched"


def _run_final_eval(t: Training, run_dir: Path, eval_data) -> dict | None:
    from .evaluate import evaluate_model, write_eval

    if eval_data is None:
        _, eval_data = load_datasets(t.cfg, eval_too=True, pretrain=False)
    train_ds, test_ds = eval_data
    result = evaluate_model(t.model, train_ds, test_ds, t.cfg.final_eval, device=t.device, k=t.cfg.knn_k,
                            temperature=t.cfg.knn_temperature, batch_size=t.cfg.batch_size,
                            num_workers=t.cfg.num_workers, seed=t.cfg.seed,
                            channels_last=_channels_last(t.cfg, t.device))
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
        raise ValueError("out (the run folder) is required")
    ctx = current_context()
    check_distributed_settings(cfg, ctx)
    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    if pretrain_data is None:
        pretrain_data = _load_pretrain_data(cfg, ctx)
    if num_classes is None:
        num_classes = _num_classes(pretrain_data)
    t = build_training(cfg, pretrain_data, num_classes)
    resume_step = None
    if resume_from_checkpoint:
        # on the CPU: load_state_dict copies weights and optimiser states to their device; RNG states must stay here
        state = load_checkpoint(run_dir / CHECKPOINT, map_location="cpu")
        _restore(t, state)
        resume_step = t.step
        if t.scheduler.total_steps != cfg.epochs * t.steps_per_epoch:   # --epochs changed on resume
            t.scheduler.total_steps = cfg.epochs * t.steps_per_epoch
            t.scheduler.step(advance=False)
    else:
        if (run_dir / CHECKPOINT).exists():
            raise ValueError(f"{run_dir} already holds a run; resume it (--resume {run_dir}) or pick another --out")
        if ctx.is_main:
            _write_config(run_dir, cfg)
    log = RunLog(run_dir, resume_step) if ctx.is_main else None     # rank 0 alone logs and checkpoints
    stop = cfg.epochs if cfg.stop_after_epochs is None else min(cfg.epochs, t.epoch + cfg.stop_after_epochs)
    start_time = time.perf_counter()
    last_row: dict = {}
    try:
        from tqdm.auto import tqdm
        while t.epoch < stop:
            if isinstance(t.loader.sampler, torch.utils.data.DistributedSampler):
                t.loader.sampler.set_epoch(t.epoch)
            meter = _Meter()
            bar = tqdm(total=t.steps_per_epoch, desc=f"epoch {t.epoch + 1}/{cfg.epochs}",
                       disable=not (cfg.progress and ctx.is_main), leave=False, dynamic_ncols=True)
            for i, batch in enumerate(t.loader):
                if i >= t.steps_per_epoch:
                    break
                try:
                    out = _train_step(t, batch)
                except NonFiniteLossError as err:
                    raise NonFiniteLossError(f"{err}. Training stopped; {_last_good(run_dir)}.") from None
                meter.add({k: out[k] for k in ("loss", "contrastive", "mi_lower", "superfluous_a",
                                               "superfluous_b")}, batch[0].shape[0] * ctx.world_size)
                if "probe_loss" in out:
                    meter.sums["probe_loss"] = meter.sums.get("probe_loss", 0.0) + out["probe_loss"]
                    meter.probe_n_steps += 1
                    meter.probe_correct += out["probe_correct"]
                    meter.probe_n += out["probe_n"]
                bar.update(1)
                if t.step % cfg.log_every == 0 or i + 1 == t.steps_per_epoch:
                    last_row = meter.row(t.epoch + 1, t.step, out["lr"], time.perf_counter() - start_time)
                    if log is not None:
                        log.write(last_row)
                    bar.set_postfix(loss=f"{last_row['loss']:.3f}", img_s=f"{last_row['images_per_s']:.0f}")
                    meter.reset()
            bar.close()
            t.epoch += 1
            save_checkpoint(t, run_dir / CHECKPOINT)
    finally:
        if log is not None:
            log.close()
    summary = {"run_dir": str(run_dir), "epoch": t.epoch, "step": t.step, "last_log": last_row,
               "finished": t.epoch >= cfg.epochs, "world_size": ctx.world_size}
    if summary["finished"] and cfg.final_eval != "none" and ctx.is_main:   # on rank 0; the others are done
        summary["eval"] = _run_final_eval(t, run_dir, eval_data)
    return summary


def _load_pretrain_data(cfg: TrainConfig, ctx: DistContext):
    """The pre-training set.  In a process group with --download, rank 0 downloads first and the others then read
    the files; a rank that fails to load stops every rank."""
    if not ctx.active:
        return load_datasets(cfg)[0]
    data = None
    for turn in (("rank 0", "the others") if cfg.download else ("all",)):
        mine = turn == "all" or (turn == "rank 0") == ctx.is_main
        error = None
        if mine:
            try:
                data = load_datasets(cfg)[0]
            except Exception as err:    # re-raised below, after telling the other ranks
                error = err
        if not all_agree(error is None, resolve_device(cfg.device)):
            raise error or RuntimeError("another rank could not load the data (see its error); this rank stops too")
    return data


def _write_config(run_dir: Path, cfg: TrainConfig) -> None:
    # stop_after_epochs and progress belong to one invocation, not to the run
    write_json_atomically(run_dir / CONFIG, dict(cfg.to_dict(), stop_after_epochs=None, progress=True),
                          sort_keys=True)


RESUME_OVERRIDABLE = ("epochs", "num_workers", "device", "stop_after_epochs", "final_eval", "data_root",
                      "log_every", "progress", "download", "verify", "kernel_backend", "sync_bn")


def resume(run_dir, *, pretrain_data=None, eval_data=None, num_classes=None, **overrides) -> dict:
    """Continue the run in ``run_dir`` from its last checkpoint.  Only ``RESUME_OVERRIDABLE`` settings may change
    (changing ``epochs`` changes the schedule, so that run is no longer the same as an uninterrupted one)."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).exists():
        raise ValueError(f"{run_dir} has no {CHECKPOINT} to resume from")
    cfg = TrainConfig.from_dict(json.loads((run_dir / CONFIG).read_text()))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    bad = sorted(set(overrides) - set(RESUME_OVERRIDABLE))
    if bad:
        raise ValueError(f"cannot change {', '.join(bad)} when resuming (allowed: {', '.join(RESUME_OVERRIDABLE)})")
    cfg = dataclasses.replace(cfg, out=str(run_dir), **overrides)
    if "epochs" in overrides and current_context().is_main:
        _write_config(run_dir, cfg)
    return train(cfg, pretrain_data=pretrain_data, eval_data=eval_data, num_classes=num_classes,
                 resume_from_checkpoint=True)
