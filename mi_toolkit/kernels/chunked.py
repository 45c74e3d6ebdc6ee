"""Tiled InfoNCE in plain PyTorch: O(N) saved memory, any device.

Per-row loss (notation of ``naive``): ``l_i = LSE_{j != e(i)} s_ij - s_{i p(i)}`` with ``s_ij = a_i . b_j``.

Forward walks tiles of ``block_rows`` rows x ``block_cols`` columns.  Each tile yields its own row-wise
log-sum-exp, merged into a running one with ``logaddexp`` (the online log-sum-exp:
``LSE(x u y) = log(e^LSE(x) + e^LSE(y))``), so only one tile of logits exists at a time.  Autograd saves the
inputs and the per-row LSE (O((M + K) d + M)), never the [M, K] matrix.

Backward recomputes each tile.  With g_i the incoming gradient of l_i and P_ij = exp(s_ij - LSE_i) (0 where
excluded):

    dl/ds_ij = g_i (P_ij - [j == p(i)]),    dA = dS B,    dB = dS^T A,

the one-hot part applied once at the end as a gather / index_add (O(M d)).
"""
from __future__ import annotations

import torch

__all__ = ["row_losses", "DEFAULT_BLOCK_ROWS", "DEFAULT_BLOCK_COLS"]

# Tile of 256 x 4096 float32 = 4 MiB: large enough for efficient matmuls, small next to an N x N matrix.
DEFAULT_BLOCK_ROWS = 256
DEFAULT_BLOCK_COLS = 4096


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Tiles are computed in at least float32: half-precision exp/sum would lose the loss's precision."""
    return torch.promote_types(dtype, torch.float32)


def _exclude_in_tile(logits: torch.Tensor, exclude: torch.Tensor | None, col_start: int) -> torch.Tensor:
    """Set logits[r, exclude[r] - col_start] = -inf where that column lies in this tile (in place, no host sync)."""
    if exclude is None:
        return logits
    width = logits.shape[1]
    local = exclude - col_start
    inside = (local >= 0) & (local < width)
    index = local.clamp(0, width - 1).unsqueeze(1)
    current = logits.gather(1, index)
    # rows whose excluded column is elsewhere write back their own value at the clamped index
    masked = torch.where(inside.unsqueeze(1), torch.full_like(current, float("-inf")), current)
    return logits.scatter_(1, index, masked)


def _tile(a_rows: torch.Tensor, b: torch.Tensor, exclude_rows, col_start: int, col_end: int) -> torch.Tensor:
    logits = a_rows @ b[col_start:col_end].T
    return _exclude_in_tile(logits, exclude_rows, col_start)


def _row_logsumexp(a: torch.Tensor, b: torch.Tensor, exclude, block_rows: int, block_cols: int) -> torch.Tensor:
    """LSE_i over the non-excluded columns, one tile at a time (online merge across column blocks)."""
    m, k = a.shape[0], b.shape[0]
    lse = torch.empty(m, dtype=a.dtype, device=a.device)
    for r0 in range(0, m, block_rows):
        r1 = min(r0 + block_rows, m)
        exclude_rows = None if exclude is None else exclude[r0:r1]
        running = torch.full((r1 - r0,), float("-inf"), dtype=a.dtype, device=a.device)
        for c0 in range(0, k, block_cols):
            c1 = min(c0 + block_cols, k)
            tile_lse = torch.logsumexp(_tile(a[r0:r1], b, exclude_rows, c0, c1), dim=1)
            running = torch.logaddexp(running, tile_lse)
        lse[r0:r1] = running
    return lse


def _positive_logits(a: torch.Tensor, b: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """s_{i p(i)} = a_i . b_{p(i)}, O(M d)."""
    return (a * b.index_select(0, positive)).sum(dim=1)


def _softmax_grads(a, b, exclude, lse, grad, block_rows: int, block_cols: int):
    """dA = (g * P) B and dB = (g * P)^T A, recomputing each tile of P (no one-hot term)."""
    m, k = a.shape[0], b.shape[0]
    grad_a = torch.zeros_like(a)
    grad_b = torch.zeros_like(b)
    for r0 in range(0, m, block_rows):
        r1 = min(r0 + block_rows, m)
        exclude_rows = None if exclude is None else exclude[r0:r1]
        shift = lse[r0:r1].unsqueeze(1)
        weight = grad[r0:r1].unsqueeze(1)
        for c0 in range(0, k, block_cols):
            c1 = min(c0 + block_cols, k)
            # P * g in place: exp(s - LSE) is <= 1, so no overflow however large the logits
            p = _tile(a[r0:r1], b, exclude_rows, c0, c1).sub_(shift).exp_().mul_(weight)
            grad_a[r0:r1].addmm_(p, b[c0:c1])
            grad_b[c0:c1].addmm_(p.T, a[r0:r1])
    return grad_a, grad_b


class _ChunkedRowLosses(torch.autograd.Function):
    """l = LSE - positive logit per row; saves only a, b, the index vectors and the per-row LSE."""

    @staticmethod
    def forward(ctx, a, b, positive, exclude, block_rows, block_cols):
        work = _compute_dtype(a.dtype)
        a_w, b_w = a.to(work), b.to(work)
        lse = _row_logsumexp(a_w, b_w, exclude, block_rows, block_cols)
        losses = lse - _positive_logits(a_w, b_w, positive)
        ctx.save_for_backward(a, b, positive, exclude if exclude is not None else positive, lse)
        ctx.has_exclude = exclude is not None
        ctx.blocks = (block_rows, block_cols)
        return losses

    @staticmethod
    def backward(ctx, grad):
        a, b, positive, exclude, lse = ctx.saved_tensors
        exclude = exclude if ctx.has_exclude else None
        work = lse.dtype
        a_w, b_w = a.to(work), b.to(work)
        grad = grad.to(work).contiguous()
        grad_a, grad_b = _softmax_grads(a_w, b_w, exclude, lse, grad, *ctx.blocks)
        # the -s_{i p(i)} term: d/da_i = -g_i b_{p(i)}, d/db_{p(i)} = -g_i a_i
        grad_a.sub_(grad.unsqueeze(1) * b_w.index_select(0, positive))
        grad_b.index_add_(0, positive, a_w * grad.unsqueeze(1), alpha=-1.0)
        return grad_a.to(a.dtype), grad_b.to(b.dtype), None, None, None, None


def row_losses(a: torch.Tensor, b: torch.Tensor, positive: torch.Tensor, exclude: torch.Tensor | None = None,
               block_rows: int | None = None, block_cols: int | None = None) -> torch.Tensor:
    """Per-row InfoNCE losses of rows ``a`` [M, d] against columns ``b`` [K, d], never forming [M, K].

    ``positive`` [M] (int64) is each row's positive column, ``exclude`` [M] (int64) or None a column left out of
    the row's log-sum-exp.  Returns [M] losses in at least float32; differentiable in ``a`` and ``b``.
    """
    block_rows = DEFAULT_BLOCK_ROWS if block_rows is None else block_rows
    block_cols = DEFAULT_BLOCK_COLS if block_cols is None else block_cols
    return _ChunkedRowLosses.apply(a.contiguous(), b.contiguous(), positive, exclude, block_rows, block_cols)
