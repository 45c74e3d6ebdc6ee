"""Tiled InfoNCE in plain PyTorch: O(N) saved memory, any device.

Per-row loss (notation of ``naive``): ``l_i = LSE_{j != e(i)} s_ij - s_{i p(i)}`` with ``s_ij = a_i . b_j``.

Forward walks tiles of ``block_rows`` rows x ``block_cols`` columns with the online log-sum-exp: per row a running
max m_i and a running sum S_i = sum_j exp(s_ij - m_i) over the columns seen so far; when a tile raises the max to
m', the sum is rescaled by exp(m_i - m').  Then ``l_i = (m_i - s_ip) + log S_i``, the large terms subtracted
first (as log-softmax does), with s_ip read from the tile that holds it so it rounds like the LSE's copy.
Autograd keeps a, b, the index vectors, m and S: O((M + K) d), never the [M, K] matrix.

Backward recomputes each tile.  With g_i the incoming gradient of l_i, E_ij = exp(s_ij - m_i) <= 1 and
P_ij = E_ij / S_i (0 where excluded):

    dl_i/ds_ij = g_i (P_ij - [j == p(i)]) = (g_i / S_i) (E_ij - S_i [j == p(i)])
    dA = diag(g / S) (E - S onehot) B,        dB = (E - S onehot)^T diag(g / S) A,

so a tile needs one subtraction and one exp; the row weights g / S go on the O(M d) operands.
"""
from __future__ import annotations

import torch

__all__ = ["row_losses", "DEFAULT_BLOCK_ROWS", "DEFAULT_BLOCK_COLS", "CUDA_BLOCK_ROWS", "CUDA_BLOCK_COLS"]

# A 1024 x 4096 float32 tile is 16 MiB: big enough for efficient matmuls and elementwise passes on CPU, and tiny
# next to the N x N matrix at the batch sizes where memory matters (4.3 GB at 2N = 32768).
DEFAULT_BLOCK_ROWS = 1024
DEFAULT_BLOCK_COLS = 4096
# On a GPU each tile costs ~10 kernel launches: 64 MiB tiles keep launch overhead small next to the work.
CUDA_BLOCK_ROWS = 2048
CUDA_BLOCK_COLS = 8192


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Tiles are computed in at least float32: half-precision exp/sum would lose the loss's precision."""
    return torch.promote_types(dtype, torch.float32)


def _spans(length: int, block: int) -> list[tuple[int, int]]:
    return [(start, min(start + block, length)) for start in range(0, length, block)]


def _locate(columns: torch.Tensor, col_start: int, width: int):
    """Per row: the index of its column inside this tile (clamped) and whether it really lies there, [r, 1] each."""
    local = columns - col_start
    inside = (local >= 0) & (local < width)
    return local.clamp(0, width - 1).unsqueeze(1), inside.unsqueeze(1)


def _take(tile: torch.Tensor, columns: torch.Tensor, col_start: int) -> torch.Tensor:
    """tile[r, columns[r] - col_start] where that column lies in the tile, else 0; shape [r]."""
    index, inside = _locate(columns, col_start, tile.shape[1])
    return torch.where(inside, tile.gather(1, index), 0.0).squeeze(1)


def _update(tile: torch.Tensor, columns: torch.Tensor, col_start: int, new_value) -> torch.Tensor:
    """tile[r, columns[r] - col_start] = new_value(old) in place, for rows whose column lies in the tile.

    O(rows) and no host sync: rows whose column is elsewhere write their clamped entry back unchanged.
    """
    index, inside = _locate(columns, col_start, tile.shape[1])
    current = tile.gather(1, index)
    return tile.scatter_(1, index, torch.where(inside, new_value(current), current))


class _Tiles:
    """Logits tiles s = a[r0:r1] b[c0:c1]^T with the excluded entries at -inf, written into one reused buffer.

    Reusing the buffer matters on CPU: a fresh multi-MiB tensor per tile costs page faults comparable to the matmul.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor, exclude, block_rows: int, block_cols: int):
        self.a, self.b, self.exclude = a, b, exclude
        self.rows, self.cols = _spans(a.shape[0], block_rows), _spans(b.shape[0], block_cols)
        size = min(block_rows, a.shape[0]) * min(block_cols, b.shape[0])
        self.buffer = torch.empty(size, dtype=a.dtype, device=a.device)

    def logits(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        out = self.buffer[: (r1 - r0) * (c1 - c0)].view(r1 - r0, c1 - c0)
        torch.mm(self.a[r0:r1], self.b[c0:c1].T, out=out)
        if self.exclude is not None:  # a sample is never its own negative
            _update(out, self.exclude[r0:r1], c0, lambda old: torch.full_like(old, float("-inf")))
        return out


def _online_logsumexp(tiles: _Tiles, positive: torch.Tensor):
    """Per row: the max m, the sum S = sum_j exp(s_ij - m) over kept columns, and the positive logit s_ip."""
    m_total = tiles.a.shape[0]
    row_max, row_sum, pos_logit = (torch.empty(m_total, dtype=tiles.a.dtype, device=tiles.a.device) for _ in range(3))
    for r0, r1 in tiles.rows:
        run_max = torch.full((r1 - r0,), float("-inf"), dtype=tiles.a.dtype, device=tiles.a.device)
        run_sum = torch.zeros_like(run_max)
        run_pos = torch.zeros_like(run_max)
        for c0, c1 in tiles.cols:
            s = tiles.logits(r0, r1, c0, c1)
            run_pos += _take(s, positive[r0:r1], c0)
            new_max = torch.maximum(run_max, s.amax(dim=1))
            # rows with nothing kept yet (max -inf) shift by 0, so their sums stay 0 instead of NaN
            shift = new_max.masked_fill(new_max == float("-inf"), 0.0)
            run_sum = run_sum * torch.exp(run_max - shift) + s.sub_(shift.unsqueeze(1)).exp_().sum(dim=1)
            run_max = new_max
        row_max[r0:r1], row_sum[r0:r1], pos_logit[r0:r1] = run_max, run_sum, run_pos
    return row_max, row_sum, pos_logit


def _logit_grads(tiles: _Tiles, positive, row_max, row_sum, grad):
    """dA and dB of sum_i g_i l_i by recomputing tiles (formulas in the module docstring)."""
    a, b = tiles.a, tiles.b
    weight = (grad / row_sum).unsqueeze(1)
    weighted_a = a * weight
    grad_a = torch.zeros_like(a)
    grad_b = torch.zeros_like(b)
    for r0, r1 in tiles.rows:
        shift = row_max[r0:r1].unsqueeze(1)
        sums = row_sum[r0:r1].unsqueeze(1)
        for c0, c1 in tiles.cols:
            e = tiles.logits(r0, r1, c0, c1).sub_(shift).exp_()  # <= 1: no overflow however large the logits
            e = _update(e, positive[r0:r1], c0, lambda old: old - sums)  # E - S onehot, the one-hot in the tile
            grad_a[r0:r1].addmm_(e, b[c0:c1])
            grad_b[c0:c1].addmm_(e.T, weighted_a[r0:r1])
    return grad_a.mul_(weight), grad_b


class _ChunkedRowLosses(torch.autograd.Function):
    """l = (m - s_ip) + log S per row; saves a, b, the index vectors, m and S."""

    @staticmethod
    def forward(ctx, a, b, positive, exclude, block_rows, block_cols):
        work = _compute_dtype(a.dtype)
        a_w, b_w = a.to(work), b.to(work)
        row_max, row_sum, pos_logit = _online_logsumexp(_Tiles(a_w, b_w, exclude, block_rows, block_cols), positive)
        ctx.save_for_backward(a, b, positive, exclude if exclude is not None else positive, row_max, row_sum)
        ctx.has_exclude = exclude is not None
        ctx.blocks = (block_rows, block_cols)
        return (row_max - pos_logit) + row_sum.log()

    @staticmethod
    def backward(ctx, grad):
        a, b, positive, exclude, row_max, row_sum = ctx.saved_tensors
        work = row_max.dtype
        tiles = _Tiles(a.to(work), b.to(work), exclude if ctx.has_exclude else None, *ctx.blocks)
        grad_a, grad_b = _logit_grads(tiles, positive, row_max, row_sum, grad.to(work))
        return grad_a.to(a.dtype), grad_b.to(b.dtype), None, None, None, None


def row_losses(a: torch.Tensor, b: torch.Tensor, positive: torch.Tensor, exclude: torch.Tensor | None = None,
               block_rows: int | None = None, block_cols: int | None = None) -> torch.Tensor:
    """Per-row InfoNCE losses of rows ``a`` [M, d] against columns ``b`` [K, d], never forming [M, K].

    ``positive`` [M] (int64) is each row's positive column, ``exclude`` [M] (int64) or None a column left out of
    the row's log-sum-exp (never the positive).  Returns [M] losses in at least float32; differentiable in ``a``
    and ``b``.  ``block_rows`` x ``block_cols`` is the tile size (defaults: DEFAULT_BLOCK_* on CPU, CUDA_BLOCK_*
    on GPU).
    """
    on_gpu = a.device.type == "cuda"
    if block_rows is None:
        block_rows = CUDA_BLOCK_ROWS if on_gpu else DEFAULT_BLOCK_ROWS
    if block_cols is None:
        block_cols = CUDA_BLOCK_COLS if on_gpu else DEFAULT_BLOCK_COLS
    return _ChunkedRowLosses.apply(a.contiguous(), b.contiguous(), positive, exclude, block_rows, block_cols)
