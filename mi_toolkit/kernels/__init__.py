"""InfoNCE / NT-Xent losses with O(N) memory: the similarity matrix is tiled, never stored.

    from mi_toolkit.kernels import infonce
    loss = infonce(z1, z2, temperature=0.1)                        # SimCLR NT-Xent, mean over 2N rows
    loss = infonce(z1, z2, shape="pairwise", symmetric=True)        # CLIP / InfoNCE with positives on the diagonal

Every form is a mean of per-row cross-entropies.  Row i (a vector divided by the temperature T) is scored
against columns b_j by ``s_ij = <a_i, b_j>``; it has one positive column p(i) and at most one excluded column e(i):

    l_i = log sum_{j != e(i)} exp(s_ij) - s_{i p(i)}

* ``shape="simclr"``: z = [z1; z2] (2N rows and columns), p(i) = i + N mod 2N, e(i) = i; mean over 2N rows.
* ``shape="pairwise"``: rows z1 against columns z2, p(i) = i.  ``symmetric=True`` also scores rows z2 against
  columns z1 and averages the two directions (CLIP); ``symmetric=False`` keeps the z1 -> z2 rows only.
  ``log N - loss`` (asymmetric) is the InfoNCE lower bound on I(z1; z2).

Backends: ``naive`` (the full matrix and ``F.cross_entropy``; the reference), ``chunked`` (tiles in plain
PyTorch with an online log-sum-exp; backward recomputes tiles; any device), ``triton`` (fused forward/backward
kernels, CUDA), ``auto`` (triton on CUDA when it can take the input, chunked otherwise).

``infonce_local`` is the torch.distributed form: this rank's rows against columns gathered from every rank.
"""
from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F

from ..validation import (check_bool, check_choice, check_number, check_pair, check_same_kind,
                          value_checks_enabled)
from . import chunked, naive

__all__ = ["infonce", "infonce_local", "available_backends", "fused_backend", "resolve_backend", "triton_module",
           "BACKENDS", "SHAPES", "REDUCTIONS", "FUSED_MIN_ROWS"]

BACKENDS = ("auto", "naive", "chunked", "triton")
SHAPES = ("simclr", "pairwise")
REDUCTIONS = ("share", "mean")

_triton = None  # the triton_kernels module once imported, or the ImportError that stopped it


# ----------------------------------------------------------------------------------------------- validation
def _check_temperature(temperature, learn_temperature: bool, like: torch.Tensor):
    """A finite T > 0: a Python number, or a one-element floating tensor (differentiable if it requires grad).
    A tensor's value is read (a device sync) only while value checks are on."""
    if isinstance(temperature, torch.Tensor):
        if not temperature.is_floating_point() or temperature.numel() != 1:
            raise TypeError(f"temperature must be a number or a one-element floating tensor, got dtype "
                            f"{temperature.dtype} and shape {tuple(temperature.shape)}")
        if value_checks_enabled():
            check_number(float(temperature.detach()), "temperature", positive=True)
        if learn_temperature and not temperature.requires_grad:
            raise ValueError(_FIXED_TEMPERATURE)
        return temperature.reshape(()).to(like.device)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number or a one-element tensor, got {type(temperature).__name__}")
    value = check_number(temperature, "temperature", positive=True)
    if learn_temperature:
        raise ValueError(_FIXED_TEMPERATURE)
    return value


_FIXED_TEMPERATURE = ("learn_temperature=True needs temperature to be a tensor with requires_grad=True "
                      "(e.g. an nn.Parameter); got one without gradient, which would silently stay fixed")


def _check_block_size(block_size) -> tuple[int | None, int | None]:
    """None (backend defaults), an int (square tiles) or a (rows, columns) pair of positive ints."""
    if block_size is None:
        return None, None
    pair = (block_size, block_size) if not isinstance(block_size, (tuple, list)) else tuple(block_size)
    ok = len(pair) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)
    if not ok:
        raise ValueError(f"block_size must be a positive int or a (rows, columns) pair of them, got {block_size!r}")
    return pair


def _check_options(shape, symmetric, normalize, backend, learn_temperature) -> None:
    check_choice(shape, SHAPES, "shape")
    check_choice(backend, BACKENDS, "backend")
    check_bool(symmetric, "symmetric")
    check_bool(normalize, "normalize")
    check_bool(learn_temperature, "learn_temperature")
    if shape == "simclr" and not symmetric:
        raise ValueError("symmetric=False applies to shape='pairwise' only; SimCLR's NT-Xent scores both views' rows")


# ------------------------------------------------------------------------------------------------- backends
def triton_module():
    """Import the Triton kernels on first use; remember an ImportError so 'auto' can fall back quietly."""
    global _triton
    if _triton is None:
        try:
            _triton = importlib.import_module(".triton_kernels", __name__)
        except ImportError as err:  # triton missing or broken
            _triton = err
    return _triton


FUSED_MIN_ROWS = 2048  # below this the N x N score matrix is small and the plain matmul path is fastest
CALLER_BACKENDS = ("auto", "matrix") + tuple(b for b in BACKENDS if b != "auto")


def fused_backend(backend: str, rows: int) -> str | None:
    """For callers that can also build the score matrix themselves (estimators, losses): the kernel backend to
    call for ``rows`` rows, or None for the plain score-matrix path.  ``"auto"`` fuses from FUSED_MIN_ROWS rows
    on, ``"matrix"`` never fuses, a kernel backend name always does."""
    if backend not in CALLER_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(CALLER_BACKENDS)}; got {backend!r}")
    if backend == "matrix" or (backend == "auto" and rows < FUSED_MIN_ROWS):
        return None
    return backend


def available_backends() -> tuple[str, ...]:
    """Backend names usable in this process ('triton' only when triton imports)."""
    usable = ("auto", "naive", "chunked")
    return usable + ("triton",) if not isinstance(triton_module(), ImportError) else usable


def _triton_accepts(z: torch.Tensor) -> bool:
    module = triton_module()
    if isinstance(module, ImportError):
        return False
    try:
        module.check_supported(z)
    except (TypeError, ValueError):
        return False
    return True


def resolve_backend(backend: str, z: torch.Tensor) -> str:
    """'auto' -> triton for CUDA tensors it supports, else chunked; 'triton' -> checked, with a clear error."""
    if backend == "auto":
        return "triton" if z.is_cuda and _triton_accepts(z) else "chunked"
    if backend == "triton":
        module = triton_module()
        if isinstance(module, ImportError):
            raise RuntimeError(f"backend='triton' needs the triton package, which failed to import: {module}; "
                               "use backend='chunked' or 'auto'") from module
        module.check_supported(z)
    return backend


def _row_losses_fn(name: str):
    return {"naive": naive.row_losses, "chunked": chunked.row_losses}.get(name) or triton_module().row_losses


# ------------------------------------------------------------------------------------------------ the losses
def _row_problems(r1, r2, c1, c2, offset: int, shape: str, symmetric: bool):
    """(rows, columns, positive index, excluded index or None) for each scoring direction.

    r1, r2 are this caller's n rows of the two views, c1, c2 all N rows; local row i is global row offset + i.
    """
    n, total = r1.shape[0], c1.shape[0]
    idx = torch.arange(offset, offset + n, device=r1.device)
    if shape == "simclr":
        rows = torch.cat([r1, r2])
        cols = rows if (r1 is c1 and r2 is c2) else torch.cat([c1, c2])
        return [(rows, cols, torch.cat([idx + total, idx]), torch.cat([idx, idx + total]))]
    problems = [(r1, c2, idx, None)]
    if symmetric:
        problems.append((r2, c1, idx, None))
    return problems


def _full_row_count(total: int, shape: str, symmetric: bool) -> int:
    """How many rows the whole-batch loss averages over."""
    return 2 * total if shape == "simclr" or symmetric else total


def _summed_row_losses(problems, temperature, row_losses, blocks) -> torch.Tensor:
    """sum_i l_i over every direction; T divides the rows, so autograd carries dT through a = z / T."""
    return sum(row_losses(rows / temperature, cols, pos, excl, *blocks).sum() for rows, cols, pos, excl in problems)


def _normalized(tensors, normalize: bool):
    return [F.normalize(t, dim=1) for t in tensors] if normalize else list(tensors)


def infonce(z1: torch.Tensor, z2: torch.Tensor, temperature=0.1, symmetric: bool = True, shape: str = "simclr",
            normalize: bool = True, backend: str = "auto", learn_temperature: bool = False, *,
            block_size=None) -> torch.Tensor:
    """Mean InfoNCE cross-entropy of a batch of N positive pairs (z1[i], z2[i]); lower is better.

    z1, z2:        [N, d] floating tensors, N >= 2 (a single pair has no negatives).
    temperature:   T > 0; a float, or a one-element tensor that gets a gradient when it requires grad.
    symmetric:     pairwise only: average the z1 -> z2 and z2 -> z1 directions (CLIP).  Must be True for simclr.
    shape:         "simclr" (NT-Xent over 2N rows, self-similarity excluded) or "pairwise" (N x N, diagonal
                   positives).  See the module docstring for the formulas.
    normalize:     L2-normalise rows first (cosine similarity); False uses the vectors as given (e.g. a separable
                   critic's embeddings with T = 1).
    backend:       "auto", "naive", "chunked" or "triton".
    learn_temperature: assert that ``temperature`` is a tensor requiring grad (an error instead of a silently
                   fixed T); the gradient itself flows whenever the tensor requires grad.
    block_size:    tile size for chunked/triton, an int or (rows, columns); None for the backend's default.

    Returns a 0-dim tensor, float32 for half-precision inputs, else the inputs' dtype.
    """
    _check_options(shape, symmetric, normalize, backend, learn_temperature)
    z1, z2 = check_pair(z1, z2, ("z1", "z2"), min_rows=2)
    temperature = _check_temperature(temperature, learn_temperature, z1)
    blocks = _check_block_size(block_size)
    name = resolve_backend(backend, z1)
    z1, z2 = _normalized((z1, z2), normalize)
    if name == "naive":
        if shape == "simclr":
            return naive.nt_xent(z1, z2, temperature)
        return naive.pairwise_infonce(z1, z2, temperature, symmetric)
    problems = _row_problems(z1, z2, z1, z2, 0, shape, symmetric)
    total = _summed_row_losses(problems, temperature, _row_losses_fn(name), blocks)
    return total / _full_row_count(z1.shape[0], shape, symmetric)


def _check_local_rows(local: torch.Tensor, everything: torch.Tensor, offset: int, names: tuple[str, str]) -> None:
    """The local rows must be the gathered batch's rows [offset, offset + n): positives are found by position.
    Compares values (a device sync), so it is a value check: skipped while value checks are off."""
    n = local.shape[0]
    if value_checks_enabled() and not torch.equal(local.detach(), everything.detach()[offset:offset + n]):
        raise ValueError(f"{names[0]} must equal {names[1]}[row_offset:row_offset + {n}] (row_offset={offset}); "
                         "gather the batches in rank order and pass this rank's offset")


def infonce_local(z1_local: torch.Tensor, z2_local: torch.Tensor, z1_all: torch.Tensor, z2_all: torch.Tensor,
                  row_offset: int, temperature=0.1, symmetric: bool = True, shape: str = "simclr",
                  normalize: bool = True, backend: str = "auto", learn_temperature: bool = False, *,
                  reduction: str = "share", block_size=None) -> torch.Tensor:
    """This rank's part of ``infonce(z1_all, z2_all, ...)``: its rows scored against all gathered columns.

    z1_local, z2_local: [n, d] this rank's pairs; they are rows row_offset .. row_offset + n - 1 of
    z1_all, z2_all: [N, d], every rank's pairs concatenated in rank order (gathered *with* gradients, e.g.
    ``torch.cat(torch.distributed.nn.functional.all_gather(z1_local))``), so negatives span all ranks.
    For simclr the local rows are z1_local's and z2_local's (2n), the columns all 2N; for pairwise the local rows
    of z1 (and, if symmetric, z2) against all of z2 (z1).  Other arguments as in ``infonce``.

    reduction="share": sum of the local rows' losses divided by the whole batch's row count, so the shares of all
    ranks add up to ``infonce(z1_all, z2_all)`` exactly, gradients included.  DDP *averages* gradients over the
    W ranks, so train on ``W * share`` (or on reduction="mean", the mean over local rows, equal to it when the
    ranks hold equal n).
    """
    _check_options(shape, symmetric, normalize, backend, learn_temperature)
    check_choice(reduction, REDUCTIONS, "reduction")
    z1_local, z2_local = check_pair(z1_local, z2_local, ("z1_local", "z2_local"), min_rows=1)
    z1_all, z2_all = check_pair(z1_all, z2_all, ("z1_all", "z2_all"), min_rows=2)
    if z1_local.shape[1] != z1_all.shape[1]:
        raise ValueError(f"z1_local and z1_all must have the same feature dimension, got {z1_local.shape[1]} "
                         f"and {z1_all.shape[1]}")
    check_same_kind(z1_local, z1_all, ("z1_local", "z1_all"))
    n, total = z1_local.shape[0], z1_all.shape[0]
    if isinstance(row_offset, bool) or not isinstance(row_offset, int) or not 0 <= row_offset <= total - n:
        raise ValueError(f"row_offset must be an int in [0, {total - n}] (N_all - n_local), got {row_offset!r}")
    _check_local_rows(z1_local, z1_all, row_offset, ("z1_local", "z1_all"))
    _check_local_rows(z2_local, z2_all, row_offset, ("z2_local", "z2_all"))
    temperature = _check_temperature(temperature, learn_temperature, z1_local)
    blocks = _check_block_size(block_size)
    name = resolve_backend(backend, z1_local)
    r1, r2, c1, c2 = _normalized((z1_local, z2_local, z1_all, z2_all), normalize)
    problems = _row_problems(r1, r2, c1, c2, row_offset, shape, symmetric)
    summed = _summed_row_losses(problems, temperature, _row_losses_fn(name), blocks)
    if reduction == "mean":
        return summed / sum(rows.shape[0] for rows, *_ in problems)
    return summed / _full_row_count(total, shape, symmetric)
