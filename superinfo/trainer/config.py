"""Every setting of a run (``TrainConfig``, each declared once with its help, range and resume rule), the run
presets (one table: data set x protocol) and the settings derived from them, resolved once (``RunPlan``).

    from superinfo.trainer import preset_config
    cfg = preset_config("cifar10", data_root="data", out="runs/c10", lambda_a=0.1)
    plan = cfg.resolve()            # device, autocast dtype, memory format, local batch, image size, seeds

Adding a setting is one field below: the ``train`` and ``sweep`` flags, ``validate()``'s check and the resume rule
come from its ``setting(...)``.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch

from mi_toolkit.errors import ArgumentError
from mi_toolkit.kernels import CALLER_BACKENDS
from mi_toolkit.settings import FINITE, INT0, INT1, NONNEGATIVE, POSITIVE, Range, check_settings, setting, settings_of

from ..lambdas import AUTO, DEFAULT_SLACK, RAMP_SHAPES
from ..methods import METHODS
from ..objective import CLUB_LOWER_BOUNDS, CONDITIONAL_BOUNDS, TEMPERATURES, contrastive_terms
from .models import ARCHS, build_model

__all__ = ["CLUB_LOWER_BOUNDS", "DATA_PIPELINES", "FINAL_EVALS", "METHODS", "OPTIMIZERS", "RESUME_OVERRIDABLE", "RUN_PRESETS", "RunPlan",
           "TrainConfig", "preset_config", "resolve_device"]

FINAL_EVALS = ("knn", "linear", "none")
DATA_PIPELINES = ("auto", "device", "loader")
OPTIMIZERS = ("adam", "adamw", "sgd", "lars")
# lambda > 0 (or auto): held at 0 for this share of the epochs, then ramped to its target over the next share
LAMBDA_WARMUP_SHARE, LAMBDA_RAMP_SHARE = 0.2, 0.2
# each rank's own random streams (augmentations, batch order) start this far apart: a prime, so that the streams of
# (seed, rank) never coincide with those of another seed's rank 0 for the seeds people use
RANK_SEED_STRIDE = 104_729


def _datasets() -> tuple:
    from ..data import DATASETS
    return tuple(DATASETS)


def _check_device_name(value, name: str) -> None:
    """A device torch can parse (whether it exists here is the command's check: the config may travel)."""
    if value == "auto":
        return
    try:
        torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        raise ArgumentError(f"{name} {value!r} is not a device (auto, cpu, cuda, cuda:1, ...)") from None


_IMAGE_SIZE = Range(int, 4)
_BATCH = Range(int, 2)
_MOMENTUM = Range(float, 0, 1, high_open=True)
_UNIT = Range(float, 0, 1)
_SLACK = Range(float, 0, 1, low_open=True, high_open=True)


@dataclass
class TrainConfig:
    """Every setting of a run (saved as RUN_DIR/config.json), each declared once here with its help, range or
    choices, whether a resume may change it (``resume=True``) and whether a sweep grids it (``grid``): the
    ``train`` and ``sweep`` parsers, ``validate()`` and ``RESUME_OVERRIDABLE`` are generated from these fields.
    ``None`` means "derive": ``image_size`` from the data preset, ``channels_last`` on CUDA only, ``amp="auto"``
    bf16 autocast on CUDA and fp32 elsewhere, the lambda warm-up and ramp 20 % of the epochs each (all four
    resolved once, by ``resolve()``); ``width`` and ``head_hidden`` from the arch (``build_model``); ``lambda_b`` =
    ``lambda_a`` (``SuperInfoLoss``)."""

    dataset: str = setting("cifar10", "data set (superinfo.data; the Python API also takes an in-memory data set "
                           "under a name of its own)", choices=_datasets, open_choices=True)
    data_root: str | None = setting(None, "dataset folder", path=True, resume=True)
    out: str | None = setting(None, "run folder", path=True)
    # model
    arch: str = setting("resnet18", "backbone", choices=ARCHS)
    width: int | None = setting(None, "backbone width (64 for the standard ResNets)", range=INT1)
    cifar_stem: bool = setting(True, "3x3 stride-1 stem without max-pool (true/false)", bool_flags="value")
    image_size: int | None = setting(None, "crop size (default: the data preset's)", range=_IMAGE_SIZE)
    z_dim: int = setting(128, "dimension of the representation z (projection output)", range=INT1)
    head_hidden: int | None = setting(None, "hidden width of the projection head (default: the feature dimension)",
                                      range=INT1)
    head_layers: int = setting(1, "hidden layers of the projection head", range=INT0)
    sigma: float | str = setting(1.0, "head noise: a number > 0, 'learned' or 'amortized'", range=POSITIVE,
                                 special=("learned", "amortized"))
    mean_on_sphere: bool = setting(False, "the head's mean on the unit sphere, so the kl term is bounded by "
                                   "2 / sigma^2 (--mean-on-sphere, or true/false; on in the digits preset)",
                                   bool_flags="bare")
    # objective
    method: str = setting("superinfo", "; ".join(f"{m.name}: {m.help}" for m in METHODS.values())
                          + " (superinfo.methods)", choices=tuple(METHODS))
    lambda_a: float | str = setting(0.0, "weight of the superfluous term I(v1;z1|v2), or 'auto' (one multiplier "
                                    "for both terms, tuned to keep the contrastive estimate within --lambda-slack)",
                                    range=FINITE, special=(AUTO,), grid="--lambda-a")
    lambda_b: float | None = setting(None, "weight of I(v2;z2|v1) (default: --lambda-a).  With one head and a fixed "
                                     "or learned sigma KL(p1||p2) = KL(p2||p1), so only lambda_a + lambda_b "
                                     "matters; they differ only with --sigma amortized", range=FINITE,
                                     grid="--lambda-b")
    lambda_warmup_epochs: float | None = setting(None, "epochs at lambda = 0 first (default: 20%% of --epochs)",
                                                 range=NONNEGATIVE)
    lambda_ramp_epochs: float | None = setting(None, "epochs of the linear ramp to lambda after the warm-up "
                                               "(default: 20%% of --epochs; not used by auto)", range=NONNEGATIVE)
    lambda_ramp_shape: str | None = setting(None, "shape of the ramp to lambda after the warm-up: linear or "
                                            "exponential (from 1e-3 lambda; default: the method's, exponential for "
                                            "mib, linear otherwise)", choices=RAMP_SHAPES)
    lambda_slack: float = setting(DEFAULT_SLACK, "auto: the share of the contrastive estimate the penalty may cost "
                                  "(default 0.05)", range=_SLACK)
    lower_bound: str = setting("ntxent", "the contrastive term: ntxent (SimCLR's, default), pairwise (the "
                               "one-direction InfoNCE bound) or a lower bound of the mi_toolkit registry",
                               choices=contrastive_terms, flag="--contrastive")
    conditional: str = setting("kl", "upper bound on the conditional terms: kl or club", choices=CONDITIONAL_BOUNDS)
    temperature: float | None = setting(TEMPERATURES["small_images"], "NT-Xent temperature", range=POSITIVE)
    allow_negative_lambda: bool = setting(False, "accept lambda < 0 (rewards superfluous information)",
                                          bool_flags="on")
    kernel_backend: str = setting("auto", "NT-Xent path: auto (fused kernel from 2048 rows), matrix, naive, "
                                  "chunked or triton", choices=CALLER_BACKENDS, resume=True)
    # optimisation
    epochs: int = setting(200, "pre-training epochs", range=INT1, resume=True, grid="--epochs")
    batch_size: int = setting(256, "samples (pairs) per step, the global batch", range=_BATCH)
    optimizer: str = setting("adam", "adam, adamw, sgd or lars", choices=OPTIMIZERS)
    lr: float = setting(1e-3, "peak learning rate", range=POSITIVE)
    weight_decay: float = setting(1e-6, "weight decay", range=NONNEGATIVE)
    momentum: float = setting(0.9, "SGD/LARS momentum, in [0, 1)", range=_MOMENTUM)
    warmup_epochs: float = setting(10.0, "linear learning-rate warm-up epochs", range=NONNEGATIVE)
    final_lr_factor: float = setting(0.0, "cosine floor as a fraction of the peak lr", range=_UNIT)
    # probe, evaluation
    probe: bool = setting(True, "no online linear probe", bool_flags="off")
    probe_lr: float = setting(1e-3, "online linear probe learning rate", range=POSITIVE)
    final_eval: str = setting("knn", "evaluation at the end of training: knn, linear or none", choices=FINAL_EVALS,
                              resume=True)
    knn_k: int = setting(200, "neighbours of the final kNN evaluation", range=INT1)
    knn_temperature: float = setting(0.1, "vote temperature of the final kNN evaluation", range=POSITIVE)
    knn_every: int = setting(0, "every this many epochs, the kNN top-1 (--knn-k, --knn-temperature) on a validation "
                             "split of the training split into log.csv (knn_val_top1) and RUN_DIR/knn.png; never the "
                             "test split (0: off)", range=INT0, resume=True)
    # machinery
    seed: int = setting(0, "random seed", range=INT0, grid="--seeds")
    num_workers: int = setting(None, "DataLoader worker processes", range=INT0, resume=True,
                               default_factory=lambda: min(4, os.cpu_count() or 1))
    device: str = setting("auto", "auto, cpu, cuda, cuda:1, ...", check=_check_device_name, resume=True)
    amp: str = setting("auto", "autocast: auto, none, bf16, fp16", choices=("auto", "none", "bf16", "fp16"))
    channels_last: bool | None = setting(None, "true/false (default: on CUDA)", bool_flags="value")
    sync_bn: bool = setting(False, "BatchNorm statistics over the global batch (needs torchrun with >1 process; "
                            "imagenet preset)", bool_flags="on_off", resume=True)
    data_pipeline: str = setting("auto", "device (uint8 images on the device, batched augmentation there), loader "
                                 "(DataLoader, per-image CPU transforms) or auto (default: device on CUDA when the "
                                 "images fit in 8 GiB and a quarter of the GPU)", choices=DATA_PIPELINES)
    compile: bool = setting(False, "torch.compile the model and the loss (--compile, or true/false; default false)",
                            bool_flags="bare", resume=True)
    train_subset: int | None = setting(None, "pre-train on a fixed, class-stratified subset of this many images of "
                                       "the pre-training split (the same images every run: a CPU-sized budget); "
                                       "default: all of them", range=INT1)
    synthetic_size: int = setting(50_000, "images of --dataset synthetic (random uint8 images; default 50000)",
                                  range=INT1)
    log_every: int = setting(10, "steps per CSV row", range=INT1, resume=True)
    stop_after_epochs: int | None = setting(None, "stop (resumably) after this many epochs of this call",
                                            range=INT1, resume=True)
    max_steps_per_epoch: int | None = setting(None, "cap on steps per epoch (smoke runs)", range=INT1)
    download: bool = setting(False, "download missing data sets through torchvision", bool_flags="on", resume=True)
    verify: bool = setting(True, "skip the md5 checks (files you made or converted yourself)", bool_flags="off",
                           resume=True)
    progress: bool = setting(True, "no progress bars", bool_flags="off", resume=True)
    extra: dict = setting(None, "extra SuperInfoLoss keyword arguments (Python API only)", cli=False,
                          default_factory=dict)

    def validate(self) -> "TrainConfig":
        """Every field's own rule (from its declaration), then the rules that tie several fields together."""
        check_settings(self)
        method = METHODS[self.method]
        if not method.penalised and (self.lambda_a != 0 or self.lambda_b not in (None, 0)
                                     or self.lower_bound != "ntxent"):
            raise ArgumentError(f"method {self.method!r} is NT-Xent alone: it takes no lambda_a / lambda_b (they are "
                                f"0) and no other contrastive term (got lower_bound={self.lower_bound!r}); use method "
                                "'superinfo' (or 'align', 'mib') for those")
        if method.symmetric_beta and (self.lambda_a == AUTO or self.lambda_b is not None):
            raise ArgumentError(f"method {self.method!r} takes one beta, lambda_a (a number; it weighs the symmetrised "
                                f"KL), and no lambda_b; got lambda_a={self.lambda_a!r}, lambda_b={self.lambda_b!r}")
        if self.conditional not in method.conditionals:
            raise ArgumentError(f"method {self.method!r} takes conditional {' or '.join(method.conditionals)}, got "
                                f"{self.conditional!r}")
        if self.conditional == "club" and self.lower_bound not in CLUB_LOWER_BOUNDS:
            raise ArgumentError(f"conditional 'club' is an upper bound on the superfluous information only beside a "
                                f"true lower bound on I(z1;z2) ({', '.join(CLUB_LOWER_BOUNDS)}); the contrastive term "
                                f"{self.lower_bound!r} is not one (give --contrastive pairwise, or --conditional kl)")
        if self.lambda_a == AUTO and self.lambda_b is not None:
            raise ArgumentError("lambda_b must be left out with lambda_a='auto': one automatic lambda weighs "
                                "both superfluous terms")
        for name in ("lambda_warmup_epochs", "lambda_ramp_epochs"):
            value = getattr(self, name)
            if value is not None and value > self.epochs:
                raise ArgumentError(f"{name} must be in [0, epochs = {self.epochs}], got {value!r}")
        if not isinstance(self.extra, dict):
            raise ArgumentError(f"extra must be a dict of SuperInfoLoss keyword arguments, got {self.extra!r}")
        return self

    def build_model(self):
        """The encoder (backbone + stochastic head) these settings describe."""
        return build_model(self.arch, width=self.width, cifar_stem=self.cifar_stem, z_dim=self.z_dim,
                           head_hidden=self.head_hidden, head_layers=self.head_layers, sigma=self.sigma,
                           mean_on_sphere=self.mean_on_sphere)

    def resolve(self, device=None, rank: int = 0, world_size: int = 1) -> "RunPlan":
        """Every derived setting, computed once (see ``RunPlan``); ``device``: a torch.device (default: from
        ``self.device``)."""
        return RunPlan.of(self, resolve_device(self.device) if device is None else torch.device(device), rank,
                          world_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ArgumentError(f"unknown config keys: {sorted(unknown)}")
        return cls(**d)


# The paper protocol.  CIFAR-10/STL-10: ResNet-18 with the CIFAR stem, Adam, 200 epochs, batch 256.  ImageNet:
# ResNet-50, LARS with SimCLR's lr = 0.3 * batch / 256 (4.8 at 4096), weight decay 1e-6, 10 warm-up epochs.
_SMALL, _IMAGENET = TEMPERATURES["small_images"], TEMPERATURES["imagenet"]
RUN_PRESETS: dict[str, dict] = {
    "cifar10": dict(dataset="cifar10", arch="resnet18", cifar_stem=True, epochs=200, batch_size=256,
                    optimizer="adam", lr=1e-3, weight_decay=1e-6, warmup_epochs=10, temperature=_SMALL,
                    final_eval="knn"),
    "stl10": dict(dataset="stl10", arch="resnet18", cifar_stem=True, epochs=200, batch_size=256,
                  optimizer="adam", lr=1e-3, weight_decay=1e-6, warmup_epochs=10, temperature=_SMALL,
                  final_eval="knn"),
    # The embedded default (superinfo demo): scikit-learn's digits at their own 8 px, a narrow ResNet-18, ~1 min a run
    # on 2 CPU cores.  Evidence (seed 0 unless noted, docs/ablations.md): the head's noise decided it: sigma = 1 on
    # free means gave 76.9 % linear top-1 (the network beats the noise by inflating its means: a 633-nat kl term),
    # sigma = 0.01 gave 90.5 %; means on the unit sphere with sigma = 0.05 keep that accuracy and bound the kl term
    # by 2 / sigma^2 (28-35 nats at lambda = 0).  sigma = 0.07 (bound 408 nats) halves the term for the same geometry,
    # so lambda = 0.1 keeps 72-75 % of the lambda = 0 estimate (sigma = 0.05: 39-45 %; 0.1: 89 % but -1.7 points at
    # lambda = 0).  Crops of 70-100 % instead of 40-100 %: +2.2 points; colour jitter on: +3 points; temperature 0.2
    # instead of 0.5: +1.4 points; 8 px instead of 16: half the time, the same accuracy, so 60 epochs fit where 30 did.
    "digits": dict(dataset="digits", arch="resnet18", width=8, cifar_stem=True, image_size=8, epochs=60,
                   batch_size=128, optimizer="adam", lr=3e-3, weight_decay=1e-6, warmup_epochs=2,
                   temperature=TEMPERATURES["digits"],
                   sigma=0.07, mean_on_sphere=True, final_eval="none", num_workers=0, data_pipeline="device"),
    "imagenet": dict(dataset="imagenet", arch="resnet50", cifar_stem=False, epochs=100, batch_size=4096,
                     optimizer="lars", lr=4.8, weight_decay=1e-6, momentum=0.9, warmup_epochs=10,
                     temperature=_IMAGENET, final_eval="none", num_workers=8, sync_bn=True),
}


def preset_config(name: str, **overrides) -> TrainConfig:
    """The run preset ``name`` with ``overrides`` applied (``None`` values are ignored)."""
    if name not in RUN_PRESETS:
        raise ArgumentError(f"unknown preset {name!r}; valid: {', '.join(RUN_PRESETS)}")
    values = dict(RUN_PRESETS[name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values).validate()


# what a resumed run may change: the fields declared with resume=True
RESUME_OVERRIDABLE = tuple(f.name for f, s in settings_of(TrainConfig) if s.resume)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:   # under torchrun: the GPU init_from_env selected
        device = torch.device("cuda", torch.cuda.current_device())
    return device


@dataclass(frozen=True)
class RunPlan:
    """The settings a run derives from its ``TrainConfig``, computed once (``cfg.resolve()``) and only read after:
    the device, the autocast dtype (None: fp32), the memory format, this rank's share of the global batch, the
    crop size and data preset, the seeds of each random stream, and the lambda schedule in steps."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    rank: int
    world_size: int
    local_batch: int
    image_size: int | None
    data_preset: object             # the superinfo.data DataPreset (None: an in-memory data set of a name of its own)
    rank_seed: int                  # this rank's augmentations and batch order
    noise_seed: int                 # the posterior noise, drawn for the global batch: the same on every rank
    augment_seed: int               # the device pipeline's augmentations of this rank
    lambda_warmup_epochs: float
    lambda_ramp_epochs: float
    lambda_ramp_shape: str          # the method's unless --lambda-ramp-shape says otherwise
    deterministic: bool             # the contrastive term on the head's means (simclr, align), not on samples

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def lambda_steps(self, steps_per_epoch: int) -> tuple[int, int]:
        """(warm-up, ramp) of lambda's schedule in optimiser steps."""
        return (int(round(self.lambda_warmup_epochs * steps_per_epoch)),
                int(round(self.lambda_ramp_epochs * steps_per_epoch)))

    @classmethod
    def of(cls, cfg: TrainConfig, device: torch.device, rank: int = 0, world_size: int = 1) -> "RunPlan":
        from .. import data
        amp = cfg.amp if cfg.amp != "auto" else ("bf16" if device.type == "cuda" else "none")
        if cfg.batch_size % world_size:
            raise ArgumentError(f"batch_size {cfg.batch_size} is the global batch and must be divisible by the "
                                f"{world_size} processes (each rank takes batch_size / world_size rows); pick e.g. "
                                f"{cfg.batch_size - cfg.batch_size % world_size or world_size * 2}")
        try:
            preset = data.preset_for(cfg.dataset, cfg.image_size)
            image_size = preset.image_size
        except ArgumentError:       # an in-memory data set under a name of its own: no preset
            preset, image_size = None, cfg.image_size
        return cls(device=device, amp_dtype={"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp],
                   channels_last=device.type == "cuda" if cfg.channels_last is None else bool(cfg.channels_last),
                   rank=rank, world_size=world_size, local_batch=cfg.batch_size // world_size,
                   image_size=image_size, data_preset=preset,
                   rank_seed=cfg.seed + RANK_SEED_STRIDE * rank, noise_seed=cfg.seed + 1,
                   augment_seed=cfg.seed + 2 + RANK_SEED_STRIDE * rank,
                   lambda_warmup_epochs=LAMBDA_WARMUP_SHARE * cfg.epochs if cfg.lambda_warmup_epochs is None
                   else cfg.lambda_warmup_epochs,
                   lambda_ramp_epochs=LAMBDA_RAMP_SHARE * cfg.epochs if cfg.lambda_ramp_epochs is None
                   else cfg.lambda_ramp_epochs,
                   lambda_ramp_shape=cfg.lambda_ramp_shape or METHODS[cfg.method].ramp,
                   deterministic=METHODS[cfg.method].deterministic)
