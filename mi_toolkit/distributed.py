"""Collectives with gradients, for contrastive losses whose negatives span every rank of torch.distributed.

``all_gather_with_grad(z)`` concatenates every rank's ``z`` in rank order.  Its backward hands each rank the SUM
over ranks of the gradient with respect to its own slice: every rank's loss may depend on every other rank's rows,
and the gradient of the sum of the per-rank losses with respect to this rank's rows collects all of them.  Together
with DistributedDataParallel, which AVERAGES parameter gradients over the W ranks, training on per-rank losses
``loss_r`` then follows the gradient of ``mean_r loss_r`` exactly (the single-process gradient on the global batch
when ``mean_r loss_r`` is the global loss).  The failure this guards against is a backward that returns only the
local slice's own gradient (the other ranks' contributions are lost) or that counts a contribution twice.

Outside an initialised process group (or with one process) both functions return their input unchanged.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_gather_with_grad", "is_distributed", "rank", "world_size"]


def is_distributed(group=None) -> bool:
    """True when torch.distributed is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def world_size(group=None) -> int:
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


def rank(group=None) -> int:
    return dist.get_rank(group) if dist.is_available() and dist.is_initialized() else 0


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        ctx.rows = x.shape[0]
        ctx.rank = dist.get_rank(group)
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        if dist.get_backend(ctx.group) == dist.Backend.NCCL:
            # reduce-scatter: each rank receives only its own slice, summed over ranks
            out = torch.empty((ctx.rows,) + tuple(grad.shape[1:]), dtype=grad.dtype, device=grad.device)
            dist.reduce_scatter_tensor(out, grad, op=dist.ReduceOp.SUM, group=ctx.group)
            return out, None
        # gloo has no reduce-scatter: sum the whole gradient, then keep this rank's slice
        summed = grad.clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM, group=ctx.group)
        return summed[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows], None


def all_gather_with_grad(x: torch.Tensor, group=None) -> torch.Tensor:
    """``torch.cat`` of every rank's ``x`` (all ranks must pass the same shape) in rank order, differentiable:
    the backward returns, to each rank, the sum over ranks of the gradient flowing into its slice.

    This rank's rows are ``result[rank * n:(rank + 1) * n]`` with ``n = x.shape[0]``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1:
        raise ValueError(f"x must have a batch dimension, got a 0-dim tensor")
    if not is_distributed(group):
        return x
    return _AllGatherWithGrad.apply(x, group)
