"""Reference InfoNCE losses: the whole similarity matrix, ``F.cross_entropy`` on it.

These are the textbook forms every other backend is tested against.  They hold O(N^2) memory (the logits, the
log-softmax saved for backward and its gradient), which is what the chunked and Triton backends avoid.

Notation used throughout ``mi_toolkit.kernels``: rows ``a_i`` (already divided by the temperature T) are scored
against columns ``b_j``, ``s_ij = a_i . b_j``; row i has one positive column ``p(i)`` and at most one excluded
column ``e(i)`` (its own copy in SimCLR).  Its loss is the cross-entropy

    l_i = log sum_{j != e(i)} exp(s_ij) - s_{i p(i)}.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["nt_xent", "pairwise_infonce", "row_losses"]


def _loss_dtype(dtype: torch.dtype) -> torch.dtype:
    """Losses are accumulated in at least float32 (half-precision logits lose too much in log-softmax)."""
    return torch.promote_types(dtype, torch.float32)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return F.cross_entropy(logits.to(_loss_dtype(logits.dtype)), targets, reduction=reduction)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature) -> torch.Tensor:
    """SimCLR's NT-Xent: z = [z1; z2] (2N rows), logits z z^T / T with the diagonal removed.

    Row i's positive is i + N and row i + N's is i; the loss is the mean cross-entropy over all 2N rows.
    Inputs are used as given (normalise them first for cosine similarity).
    """
    n = z1.shape[0]
    z = torch.cat([z1, z2], dim=0)
    logits = (z / temperature) @ z.T
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_pairs, float("-inf"))  # a sample is never its own negative
    idx = torch.arange(n, device=z.device)
    targets = torch.cat([idx + n, idx])
    return _cross_entropy(logits, targets)


def pairwise_infonce(z1: torch.Tensor, z2: torch.Tensor, temperature, symmetric: bool = True) -> torch.Tensor:
    """InfoNCE / CLIP: logits z1 z2^T / T, positives on the diagonal.

    ``symmetric=False``: mean cross-entropy of the rows (z1 -> z2).  ``symmetric=True``: the average of the row
    and column (z2 -> z1) cross-entropies, as in CLIP.
    """
    logits = (z1 / temperature) @ z2.T
    targets = torch.arange(z1.shape[0], device=z1.device)
    forward = _cross_entropy(logits, targets)
    if not symmetric:
        return forward
    return 0.5 * (forward + _cross_entropy(logits.T, targets))


def row_losses(a: torch.Tensor, b: torch.Tensor, positive: torch.Tensor, exclude: torch.Tensor | None = None,
               block_rows: int | None = None, block_cols: int | None = None) -> torch.Tensor:
    """Per-row losses l_i (see the module docstring) from the full [M, K] matrix; block sizes are ignored."""
    logits = a @ b.T
    if exclude is not None:
        excluded = torch.zeros_like(logits, dtype=torch.bool)
        excluded.scatter_(1, exclude.unsqueeze(1), True)
        logits = logits.masked_fill(excluded, float("-inf"))
    return _cross_entropy(logits, positive, reduction="none")
