"""Fused InfoNCE in Triton: forward and backward kernels that never write the [M, K] logits to memory.

Notation of ``naive``: rows a_i (already divided by T) against columns b_j, ``s_ij = a_i . b_j``, positive column
p(i), optional excluded column e(i); ``l_i = LSE_{j != e(i)} s_ij - s_{i p(i)}``.

* ``_forward_kernel``: one program per block of rows walks the column blocks, keeping a running max m_i and a
  running sum S_i = sum_j exp(s_ij - m_i) (the online log-sum-exp: when the max grows to m', S_i is rescaled by
  exp(m_i - m')), and picks the positive logit out of the tile that holds it.  It stores m_i, log S_i and
  l_i = (m_i - s_ip) + log S_i: large terms are subtracted first, and m and log S are kept apart, so
  P_ij = exp((s_ij - m_i) - log S_i) is as accurate as log-softmax's (LSE_i = m_i + log S_i would round).
* ``_grad_rows_kernel`` (dA) and ``_grad_cols_kernel`` (dB) recompute the tiles; with dS_ij = g_i (P_ij - [j ==
  p(i)]), dA = dS B is accumulated by row-block programs and dB = dS^T A by column-block programs, so every output
  has one writer (no atomics, deterministic).  Half-precision dS is rounded to the input dtype for the dot.

Runs on CUDA tensors; with ``TRITON_INTERPRET=1`` set before this module is imported, on CPU tensors through
Triton's interpreter (float32/float16 only: numpy has no bfloat16).  Import this module lazily: it imports triton.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = ["row_losses", "INTERPRETED", "MAX_DIM", "SUPPORTED_DTYPES"]

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
# dA / dB accumulators hold whole feature rows in registers; past this the chunked backend is the better tool.
MAX_DIM = 256
SUPPORTED_DTYPES = (torch.float32, torch.float16) if INTERPRETED else (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _load_block(ptr, idx, idx_ok, dims, dim_ok, stride):
    return tl.load(ptr + idx[:, None] * stride + dims[None, :], mask=idx_ok[:, None] & dim_ok[None, :], other=0.0)


@triton.jit
def _row_targets(POS, EXCL, rows, rows_ok, HAS_EXCLUDE: tl.constexpr):
    """Each row's positive column and excluded column (the positive when there is none: never read then)."""
    pos = tl.load(POS + rows, mask=rows_ok, other=-1)
    excl = tl.load(EXCL + rows, mask=rows_ok, other=-1) if HAS_EXCLUDE else pos
    return pos, excl


@triton.jit
def _row_softmax_stats(POS, EXCL, ROW_MAX, ROW_LOGSUM, G, rows, rows_ok, HAS_EXCLUDE: tl.constexpr):
    """What the backward needs of a block of rows: targets, the forward's m and log S, and the upstream g."""
    pos, excl = _row_targets(POS, EXCL, rows, rows_ok, HAS_EXCLUDE)
    row_max = tl.load(ROW_MAX + rows, mask=rows_ok, other=0.0)
    log_sum = tl.load(ROW_LOGSUM + rows, mask=rows_ok, other=0.0)
    g = tl.load(G + rows, mask=rows_ok, other=0.0)
    return pos, excl, row_max, log_sum, g


@triton.jit
def _kept(cols, cols_ok, excl, HAS_EXCLUDE: tl.constexpr):
    """Which (row, column) entries take part in the row's log-sum-exp (padding rows are harmless: g = 0 there)."""
    keep = cols_ok[None, :]  # [1, BLOCK_N]; tl.where broadcasts it over the rows
    if HAS_EXCLUDE:
        keep = keep & (cols[None, :] != excl[:, None])
    return keep


@triton.jit
def _forward_kernel(A, B, POS, EXCL, ROW_MAX, ROW_LOGSUM, LOSS, M, K, D, stride_a, stride_b,
                    HAS_EXCLUDE: tl.constexpr, PRECISION: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rows_ok = rows < M
    dims = tl.arange(0, BLOCK_D)
    dims_ok = dims < D
    a = _load_block(A, rows, rows_ok, dims, dims_ok, stride_a)
    pos, excl = _row_targets(POS, EXCL, rows, rows_ok, HAS_EXCLUDE)
    # a finite "minus infinity" start, so exp(m - m') never sees inf - inf
    run_max = tl.full([BLOCK_M], -3.0e38, tl.float32)
    run_sum = tl.zeros([BLOCK_M], tl.float32)
    pos_logit = tl.zeros([BLOCK_M], tl.float32)
    for col_start in range(0, K, BLOCK_N):
        cols = col_start + tl.arange(0, BLOCK_N)
        cols_ok = cols < K
        b = _load_block(B, cols, cols_ok, dims, dims_ok, stride_b)
        s = tl.dot(a, tl.trans(b), input_precision=PRECISION)
        pos_logit += tl.sum(tl.where(cols[None, :] == pos[:, None], s, 0.0), axis=1)
        s = tl.where(_kept(cols, cols_ok, excl, HAS_EXCLUDE), s, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(s, axis=1))
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(s - new_max[:, None]), axis=1)
        run_max = new_max
    log_sum = tl.log(run_sum)
    tl.store(ROW_MAX + rows, run_max, mask=rows_ok)
    tl.store(ROW_LOGSUM + rows, log_sum, mask=rows_ok)
    tl.store(LOSS + rows, (run_max - pos_logit) + log_sum, mask=rows_ok)


@triton.jit
def _grad_logits(a, b, cols, cols_ok, pos, excl, row_max, log_sum, g,
                 HAS_EXCLUDE: tl.constexpr, PRECISION: tl.constexpr):
    """dS = g (P - onehot(p)) for one recomputed tile, float32."""
    s = tl.dot(a, tl.trans(b), input_precision=PRECISION)
    s = tl.where(_kept(cols, cols_ok, excl, HAS_EXCLUDE), s, float("-inf"))  # before exp: excluded s may be > LSE
    p = tl.exp((s - row_max[:, None]) - log_sum[:, None])
    one_hot = tl.where(cols[None, :] == pos[:, None], 1.0, 0.0)
    return g[:, None] * (p - one_hot)


@triton.jit
def _grad_rows_kernel(A, B, POS, EXCL, ROW_MAX, ROW_LOGSUM, G, DA, M, K, D, stride_a, stride_b, stride_da,
                      HAS_EXCLUDE: tl.constexpr, PRECISION: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rows_ok = rows < M
    dims = tl.arange(0, BLOCK_D)
    dims_ok = dims < D
    a = _load_block(A, rows, rows_ok, dims, dims_ok, stride_a)
    pos, excl, row_max, log_sum, g = _row_softmax_stats(POS, EXCL, ROW_MAX, ROW_LOGSUM, G, rows, rows_ok, HAS_EXCLUDE)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for col_start in range(0, K, BLOCK_N):
        cols = col_start + tl.arange(0, BLOCK_N)
        cols_ok = cols < K
        b = _load_block(B, cols, cols_ok, dims, dims_ok, stride_b)
        ds = _grad_logits(a, b, cols, cols_ok, pos, excl, row_max, log_sum, g, HAS_EXCLUDE, PRECISION)
        acc += tl.dot(ds.to(b.dtype), b, input_precision=PRECISION)
    tl.store(DA + rows[:, None] * stride_da + dims[None, :], acc.to(DA.dtype.element_ty),
             mask=rows_ok[:, None] & dims_ok[None, :])


@triton.jit
def _grad_cols_kernel(A, B, POS, EXCL, ROW_MAX, ROW_LOGSUM, G, DB, M, K, D, stride_a, stride_b, stride_db,
                      HAS_EXCLUDE: tl.constexpr, PRECISION: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols_ok = cols < K
    dims = tl.arange(0, BLOCK_D)
    dims_ok = dims < D
    b = _load_block(B, cols, cols_ok, dims, dims_ok, stride_b)
    acc = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    for row_start in range(0, M, BLOCK_M):
        rows = row_start + tl.arange(0, BLOCK_M)
        rows_ok = rows < M
        a = _load_block(A, rows, rows_ok, dims, dims_ok, stride_a)
        pos, excl, row_max, log_sum, g = _row_softmax_stats(POS, EXCL, ROW_MAX, ROW_LOGSUM, G, rows, rows_ok,
                                                            HAS_EXCLUDE)
        ds = _grad_logits(a, b, cols, cols_ok, pos, excl, row_max, log_sum, g, HAS_EXCLUDE, PRECISION)
        acc += tl.dot(tl.trans(ds).to(a.dtype), a, input_precision=PRECISION)
    tl.store(DB + cols[:, None] * stride_db + dims[None, :], acc.to(DB.dtype.element_ty),
             mask=cols_ok[:, None] & dims_ok[None, :])


def _precision(dtype: torch.dtype) -> str:
    """float32 dots follow torch's TF32 switch, so the fused loss rounds like the matmul it replaces."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"


def _default_blocks(dtype: torch.dtype, d: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps): untuned starting points sized to keep a [BLOCK, d] block in registers."""
    if INTERPRETED:
        return 16, 16, 1  # the interpreter runs each program in numpy: small tiles keep tests quick
    if d > 128:  # [BLOCK, 256] operands and accumulators: halve the tiles to stay out of register spills
        return (32, 64, 4) if dtype == torch.float32 else (64, 32, 4)
    if dtype == torch.float32:
        return 64, 64, 4
    return 128, 64, 8


def _check_block(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 16 or value & (value - 1):
        raise ValueError(f"{name} for the triton backend must be a power of two >= 16, got {value!r}")
    return value


def _launch_config(a: torch.Tensor, block_rows, block_cols):
    d = a.shape[1]
    block_m, block_n, warps = _default_blocks(a.dtype, d)
    block_m = block_m if block_rows is None else _check_block(block_rows, "block_rows")
    block_n = block_n if block_cols is None else _check_block(block_cols, "block_cols")
    block_d = max(16, triton.next_power_of_2(d))  # tl.dot needs every dimension >= 16; padding dims are zeros
    return dict(HAS_EXCLUDE=None, PRECISION=_precision(a.dtype), BLOCK_M=block_m, BLOCK_N=block_n,
                BLOCK_D=block_d), warps


class _TritonRowLosses(torch.autograd.Function):
    """l = (m - s_ip) + log S per row; saves a, b, the index vectors, m and log S (O(M + K) beyond the inputs)."""

    @staticmethod
    def forward(ctx, a, b, positive, exclude, block_rows, block_cols):
        m, k, d = a.shape[0], b.shape[0], a.shape[1]
        meta, warps = _launch_config(a, block_rows, block_cols)
        meta["HAS_EXCLUDE"] = exclude is not None
        excl = exclude if exclude is not None else positive  # never read when HAS_EXCLUDE is False
        row_max, row_logsum, losses = (torch.empty(m, dtype=torch.float32, device=a.device) for _ in range(3))
        _forward_kernel[(triton.cdiv(m, meta["BLOCK_M"]),)](
            a, b, positive, excl, row_max, row_logsum, losses, m, k, d, a.stride(0), b.stride(0),
            num_warps=warps, **meta)
        ctx.save_for_backward(a, b, positive, excl, row_max, row_logsum)
        ctx.meta, ctx.warps = meta, warps
        return losses

    @staticmethod
    def backward(ctx, grad):
        a, b, positive, excl, row_max, row_logsum = ctx.saved_tensors
        meta, warps = ctx.meta, ctx.warps
        m, k, d = a.shape[0], b.shape[0], a.shape[1]
        grad = grad.to(torch.float32).contiguous()
        grad_a = torch.empty_like(a)
        grad_b = torch.empty_like(b)
        stats = (a, b, positive, excl, row_max, row_logsum, grad)
        _grad_rows_kernel[(triton.cdiv(m, meta["BLOCK_M"]),)](
            *stats, grad_a, m, k, d, a.stride(0), b.stride(0), grad_a.stride(0), num_warps=warps, **meta)
        _grad_cols_kernel[(triton.cdiv(k, meta["BLOCK_N"]),)](
            *stats, grad_b, m, k, d, a.stride(0), b.stride(0), grad_b.stride(0), num_warps=warps, **meta)
        return grad_a, grad_b, None, None, None, None


def check_supported(t: torch.Tensor) -> None:
    """Raise a ValueError/TypeError saying why the triton backend cannot take this tensor."""
    if t.device.type != "cuda" and not INTERPRETED:
        raise ValueError(f"backend='triton' needs CUDA tensors, got device {t.device} (for the CPU interpreter set "
                         "TRITON_INTERPRET=1 before mi_toolkit.kernels.triton_kernels is imported)")
    if t.dtype not in SUPPORTED_DTYPES:
        names = ", ".join(str(dt).replace("torch.", "") for dt in SUPPORTED_DTYPES)
        where = " under the Triton interpreter" if INTERPRETED else ""
        raise TypeError(f"backend='triton' supports dtypes {names}{where}, got {t.dtype}")
    if t.shape[1] > MAX_DIM:
        raise ValueError(f"backend='triton' handles feature dimension d <= {MAX_DIM}, got d = {t.shape[1]}; "
                         "use backend='chunked'")


def row_losses(a: torch.Tensor, b: torch.Tensor, positive: torch.Tensor, exclude: torch.Tensor | None = None,
               block_rows: int | None = None, block_cols: int | None = None) -> torch.Tensor:
    """Per-row losses via the fused kernels (same contract as ``chunked.row_losses``); float32 result.

    ``block_rows`` / ``block_cols`` (powers of two >= 16) override the tile sizes BLOCK_M / BLOCK_N.
    """
    check_supported(a)
    positive = positive.to(torch.int32).contiguous()  # int32 indices: cheaper compares in the kernels
    exclude = None if exclude is None else exclude.to(torch.int32).contiguous()
    return _TritonRowLosses.apply(a.contiguous(), b.contiguous(), positive, exclude, block_rows, block_cols)
