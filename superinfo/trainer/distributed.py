"""Multi-process training on torch.distributed: the process group from torchrun's environment, batch statistics
shared across ranks, and gradient / metric averaging for what DistributedDataParallel does not wrap.

    torchrun --standalone --nproc_per_node=8 -m superinfo train --preset imagenet --data-root DIR --out RUN_DIR

``superinfo train`` calls ``init_from_env()`` (NCCL on CUDA, gloo on CPU), and ``superinfo.trainer.train`` sees the
initialised group: it splits the global ``batch_size`` over the ranks, wraps the model in DDP, gathers the
negatives from every rank with gradients, and lets rank 0 alone log and checkpoint.

``CrossRankBatchNorm`` is SyncBatchNorm written with differentiable collectives.  torch's ``nn.SyncBatchNorm``
runs on CUDA only, so its gradients could not be checked against a single process in CI; this one runs on every
device and backend, and the tests prove a 2- and 3-rank step equal to the single-process step on the global batch.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from mi_toolkit.distributed import is_distributed, rank, world_size
from mi_toolkit.errors import ArgumentError

__all__ = ["CrossRankBatchNorm", "DistContext", "all_agree", "average_gradients", "convert_batchnorm",
           "current_context", "init_from_env", "launched_by_torchrun"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``world_size == 1`` is plain single-process training."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_context() -> DistContext:
    """The context of the initialised process group (single process when there is none)."""
    if not is_distributed():
        return DistContext()
    return DistContext(rank(), world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(backend: str = "auto", device: str = "auto", timeout_minutes: float = 30.0) -> DistContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).

    ``backend``: ``"auto"`` is NCCL when CUDA is used and gloo otherwise.  On CUDA each process takes the GPU
    ``LOCAL_RANK``.  Without torchrun's variables (WORLD_SIZE unset or 1) nothing happens.
    """
    if not launched_by_torchrun():
        return DistContext()
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} is not set: launch "
                           "with torchrun (see the README), which sets all of them")
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ArgumentError(f"backend must be auto, nccl or gloo, got {backend!r}")
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return current_context()


def _at_least_float32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _global_moments(xf: torch.Tensor):
    """(count, mean, biased var) per channel over every rank's [N, C, H, W] batch.  Each rank's own mean and sum of
    squared deviations are combined with Chan's parallel formula: no E[x^2] - E[x]^2 cancellation."""
    count = xf.new_tensor(float(xf.numel() // xf.shape[1]))
    mean = xf.mean(dim=(0, 2, 3))
    m2 = (xf - mean.view(1, -1, 1, 1)).square().sum(dim=(0, 2, 3))
    parts = [torch.empty(2 * mean.numel() + 1, dtype=xf.dtype, device=xf.device) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, torch.cat([count.view(1), mean, m2]))
    stacked = torch.stack(parts)
    counts, means, m2s = stacked[:, :1], stacked[:, 1:1 + mean.numel()], stacked[:, 1 + mean.numel():]
    total = counts.sum()
    global_mean = (counts * means).sum(0) / total
    global_m2 = (m2s + counts * (means - global_mean).square()).sum(0)
    return total, global_mean, global_m2 / total


class _CrossRankBatchNormFn(torch.autograd.Function):
    """Batch normalisation over the global batch.  Saves only the input and two per-channel vectors (the memory of
    ``F.batch_norm``); the backward all-reduces the two per-channel sums every rank's input gradient needs."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        xf = _at_least_float32(x)
        count, mean, var = _global_moments(xf)
        invstd = torch.rsqrt(var + eps)
        scale = invstd if weight is None else invstd * weight.to(invstd.dtype)
        shift = -mean * scale if bias is None else bias.to(invstd.dtype) - mean * scale
        y = xf * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
        ctx.save_for_backward(x, weight, mean, invstd, count)
        ctx.has_bias = bias is not None
        ctx.mark_non_differentiable(count, mean, var)
        return y.to(x.dtype), count, mean, var

    @staticmethod
    def backward(ctx, dy, _count, _mean, _var):
        x, weight, mean, invstd, count = ctx.saved_tensors
        dyf = _at_least_float32(dy)
        xhat = (_at_least_float32(x) - mean.view(1, -1, 1, 1)) * invstd.view(1, -1, 1, 1)
        local = torch.cat([dyf.sum(dim=(0, 2, 3)), (dyf * xhat).sum(dim=(0, 2, 3))])
        grad_bias = local[:mean.numel()].clone() if ctx.has_bias else None      # this rank's share; DDP averages
        grad_weight = local[mean.numel():].clone() if weight is not None else None
        dist.all_reduce(local)      # the statistics depend on every rank's rows: so does each input's gradient
        sum_dy, sum_dy_xhat = local[:mean.numel()], local[mean.numel():]
        gain = invstd if weight is None else invstd * weight.to(invstd.dtype)
        dx = gain.view(1, -1, 1, 1) * (dyf - (sum_dy.view(1, -1, 1, 1) + xhat * sum_dy_xhat.view(1, -1, 1, 1))
                                       / count)
        cast = (lambda g: None if g is None else g.to(weight.dtype))
        return dx.to(x.dtype), cast(grad_weight), cast(grad_bias), None


class CrossRankBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the whole global batch (all ranks together).

    Per-channel counts, means and squared deviations are gathered and combined (float32, also under autocast); the
    backward all-reduces the per-channel sums of the output gradient, so every rank's input gradient is that of the
    global batch.  It saves what ``nn.BatchNorm2d`` saves.  Eval mode and a single process behave exactly like
    ``nn.BatchNorm2d`` (same parameters, buffers and state-dict keys).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        if x.dim() != 4:
            raise ArgumentError(f"CrossRankBatchNorm expects [N, C, H, W] input, got shape {tuple(x.shape)}")
        if not isinstance(self.momentum, float):
            raise ArgumentError("CrossRankBatchNorm needs a float momentum (cumulative averaging is not supported)")
        y, count, mean, var = _CrossRankBatchNormFn.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            with torch.no_grad():   # running_var is unbiased, as in BatchNorm
                unbiased = var * count / (count - 1).clamp_min(1.0)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
                self.num_batches_tracked.add_(1)
        return y


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a ``CrossRankBatchNorm`` with the same state (in place
    for children; returns the possibly new root)."""
    if type(module) is nn.BatchNorm2d:
        new = CrossRankBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats, device=_device_of(module))
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        converted = convert_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


def _device_of(module: nn.Module):
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return None


def average_gradients(parameters) -> None:
    """Average ``.grad`` over ranks (for modules DDP does not wrap: the loss's critic, the online probe).  One
    all-reduce of the flattened gradients; parameters without a gradient count as zero on that rank."""
    if not is_distributed():
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def all_agree(ok: bool, device) -> bool:
    """True when ``ok`` holds on every rank.  Ranks decide together whether to go on, so a rank that hit an error
    (a NaN, a failed write) stops the others instead of leaving them waiting in a collective."""
    if not is_distributed():
        return ok
    flag = torch.tensor([1.0 if ok else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)
