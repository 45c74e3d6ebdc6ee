"""Collectives with gradients, for contrastive losses whose negatives span every rank of torch.distributed.

``all_gather_with_grad(z)`` concatenates every rank's ``z`` in rank order.  Its backward hands each rank the SUM
over ranks of the gradient with respect to its own slice: every rank's loss may depend on every other rank's rows,
and the gradient of the sum of the per-rank losses with respect to this rank's rows collects all of them.  Together
with DistributedDataParallel, which AVERAGES parameter gradients over the W ranks, training on per-rank losses
``loss_r`` then follows the gradient of ``mean_r loss_r`` exactly (the single-process gradient on the global batch
when ``mean_r loss_r`` is the global loss).  The failure this guards against is a backward that returns only the
local slice's own gradient (the other ranks' contributions are lost) or that counts a contribution twice.
It is ``torch.distributed.nn.functional.all_gather`` (reduce-scatter in the backward on NCCL, all-to-all plus a
sum on gloo), concatenated; ``tests/test_distributed.py`` checks the summed gradient on 3 gloo ranks.

Outside an initialised process group (or with one process) it returns its input unchanged.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn

__all__ = ["all_gather_with_grad", "is_distributed", "rank", "world_size"]


def is_distributed(group=None) -> bool:
    """True when torch.distributed is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def world_size(group=None) -> int:
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


def rank(group=None) -> int:
    return dist.get_rank(group) if dist.is_available() and dist.is_initialized() else 0


def all_gather_with_grad(x: torch.Tensor, group=None) -> torch.Tensor:
    """``torch.cat`` of every rank's ``x`` (all ranks must pass the same shape) in rank order, differentiable:
    the backward returns, to each rank, the sum over ranks of the gradient flowing into its slice.

    This rank's rows are ``result[rank * n:(rank + 1) * n]`` with ``n = x.shape[0]``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1:
        raise ValueError("x must have a batch dimension, got a 0-dim tensor")
    if not is_distributed(group):
        return x
    return torch.cat(dist_fn.all_gather(x, group=group or dist.group.WORLD))
