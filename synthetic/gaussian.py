"""Closed forms for Gaussians: entropy, (conditional) mutual information, KL, and the matrices the synthetic tasks
and worlds are built from.  All covariance maths is numpy float64.

For jointly Gaussian variables, mutual and conditional mutual information are log-determinants of covariance
blocks:

    I(A;B|C) = 1/2 log( |S_AC| |S_BC| / (|S_C| |S_ABC|) )          (nats; I(A;B) is the case C = {})

* ``gaussian_conditional_mi(cov, a_idx, b_idx, c_idx)`` / ``gaussian_mi``: the formula above.
* ``gaussian_entropy``, ``gaussian_kl`` (full covariances), ``rho_for_mi`` (the per-coordinate correlation of a
  given MI), ``random_invertible_matrix``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats
from mi_toolkit.errors import ArgumentError, ArgumentTypeError

__all__ = [
    "LOG_2PI", "gaussian_entropy", "gaussian_mi", "gaussian_conditional_mi", "gaussian_kl", "rho_for_mi",
    "random_invertible_matrix", "expected_gaussian_kl",
]

LOG_2PI = math.log(2 * math.pi)


def rho_for_mi(dim: int, mi: float) -> float:
    """Per-dimension correlation giving I = -(dim/2) log(1 - rho^2) nats."""
    return math.sqrt(-math.expm1(-2.0 * mi / dim))


def _check_cov(cov, name: str = "cov") -> np.ndarray:
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ArgumentError(f"{name} must be a square [d, d] matrix, got shape {cov.shape}")
    if not np.all(np.isfinite(cov)):
        raise ArgumentError(f"{name} contains NaN/inf values")
    if not np.allclose(cov, cov.T, rtol=1e-8, atol=1e-10 * max(1.0, float(np.abs(cov).max(initial=0.0)))):
        raise ArgumentError(f"{name} must be symmetric")
    return 0.5 * (cov + cov.T)


def _check_index(idx, dim: int, name: str) -> np.ndarray:
    if isinstance(idx, slice):
        idx = range(dim)[idx]
    try:
        arr = np.asarray(list(idx), dtype=np.int64)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name} must be a sequence of integer indices, got {idx!r}") from None
    if arr.ndim != 1:
        raise ArgumentError(f"{name} must be a flat sequence of indices, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= dim):
        raise ArgumentError(f"{name} holds indices outside [0, {dim}): {arr.tolist()}")
    if len(set(arr.tolist())) != arr.size:
        raise ArgumentError(f"{name} repeats an index: {arr.tolist()}")
    return arr


def _logdet_matrix(block: np.ndarray, scale: float | None = None) -> float:
    """log |block| for a symmetric PSD matrix; -inf when singular (smallest eigenvalue at round-off level of
    ``scale``, default the block's largest diagonal entry)."""
    if block.shape[0] == 0:
        return 0.0
    scale = float(np.abs(np.diag(block)).max(initial=0.0)) if scale is None else scale
    eig = np.linalg.eigvalsh(0.5 * (block + block.T))
    if eig.min() <= 1e-12 * max(scale, 1e-300):
        return -math.inf
    return float(np.log(eig).sum())


def _logdet(cov: np.ndarray, idx: np.ndarray) -> float:
    """log |cov[idx, idx]|; -inf when the block is singular (a deterministic relation inside it)."""
    return _logdet_matrix(cov[np.ix_(idx, idx)])


def _conditional_cov(cov: np.ndarray, a: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Cov(A | X) = S_AA - S_AX S_XX^+ S_XA (pseudo-inverse: X may itself be degenerate)."""
    s_aa = cov[np.ix_(a, a)]
    if given.size == 0:
        return s_aa
    s_ax = cov[np.ix_(a, given)]
    return s_aa - s_ax @ np.linalg.pinv(cov[np.ix_(given, given)], rcond=1e-12, hermitian=True) @ s_ax.T


def gaussian_entropy(cov, idx=None) -> float:
    """Differential entropy (nats) of N(., cov[idx, idx]); -inf for a singular block."""
    cov = _check_cov(cov)
    idx = np.arange(cov.shape[0]) if idx is None else _check_index(idx, cov.shape[0], "idx")
    return 0.5 * (idx.size * (1.0 + LOG_2PI) + _logdet(cov, idx))


def gaussian_conditional_mi(cov, a_idx, b_idx, c_idx=()) -> float:
    """I(A;B|C) in nats for jointly Gaussian variables with covariance ``cov`` (blocks picked by index lists).

    Computed as 1/2 log |Cov(A|C)| / |Cov(A|B,C)| (Schur complements with a pseudo-inverse), which equals
    1/2 log(|S_AC||S_BC| / (|S_C||S_ABC|)) whenever all four blocks are regular and stays correct when B or C is
    degenerate (e.g. views that share a noiseless part).  ``c_idx=()`` gives I(A;B).  Returns ``inf`` when A is
    (partly) a deterministic function of B given C; raises when A itself is degenerate given C.
    """
    cov = _check_cov(cov)
    d = cov.shape[0]
    a, b, c = (_check_index(i, d, n) for i, n in ((a_idx, "a_idx"), (b_idx, "b_idx"), (c_idx, "c_idx")))
    if a.size == 0 or b.size == 0:
        raise ArgumentError("a_idx and b_idx must each name at least one variable")
    for (x, xn), (y, yn) in (((a, "a_idx"), (b, "b_idx")), ((a, "a_idx"), (c, "c_idx")), ((b, "b_idx"), (c, "c_idx"))):
        if set(x.tolist()) & set(y.tolist()):
            raise ArgumentError(f"{xn} and {yn} must be disjoint, both hold {sorted(set(x.tolist()) & set(y.tolist()))}")
    scale = float(np.abs(np.diag(cov[np.ix_(a, a)])).max(initial=0.0))
    ld_given_c = _logdet_matrix(_conditional_cov(cov, a, c), scale)
    if not math.isfinite(ld_given_c):
        raise ArgumentError("A is degenerate given C (a singular conditional covariance): I(A;B|C) is undefined")
    ld_given_bc = _logdet_matrix(_conditional_cov(cov, a, np.concatenate([b, c])), scale)
    if not math.isfinite(ld_given_bc):
        return math.inf
    return max(0.5 * (ld_given_c - ld_given_bc), 0.0)


def gaussian_mi(cov, a_idx, b_idx) -> float:
    """I(A;B) in nats for jointly Gaussian variables with covariance ``cov`` (the closed form; the plug-in estimate
    from samples is ``mi_toolkit.classical.gaussian_plugin_mi``)."""
    return gaussian_conditional_mi(cov, a_idx, b_idx, ())


def gaussian_kl(mean1, cov1, mean2, cov2) -> float:
    """KL( N(mean1, cov1) || N(mean2, cov2) ) in nats, full covariances, float64."""
    cov1, cov2 = _check_cov(cov1, "cov1"), _check_cov(cov2, "cov2")
    mean1, mean2 = np.asarray(mean1, dtype=np.float64), np.asarray(mean2, dtype=np.float64)
    k = cov1.shape[0]
    if cov2.shape != (k, k) or mean1.shape != (k,) or mean2.shape != (k,):
        raise ArgumentError(f"shapes disagree: mean1 {mean1.shape}, cov1 {cov1.shape}, mean2 {mean2.shape}, cov2 {cov2.shape}")
    return expected_gaussian_kl(cov1, cov2, np.zeros((k, k)), mean1 - mean2)


def expected_gaussian_kl(cov1, cov2, cov_delta, mean_delta) -> float:
    """E KL(N(m1, C1) || N(m2, C2)) where m1 - m2 has mean ``mean_delta`` and covariance ``cov_delta``."""
    k = cov1.shape[0]
    ld1, ld2 = _logdet(cov1, np.arange(k)), _logdet(cov2, np.arange(k))
    if not math.isfinite(ld2):
        raise ArgumentError("the second Gaussian's covariance is singular: KL is infinite or undefined")
    if not math.isfinite(ld1):
        return math.inf
    solve = np.linalg.solve(cov2, cov1 + cov_delta + np.outer(mean_delta, mean_delta))
    return 0.5 * (float(np.trace(solve)) - k + ld2 - ld1)


def random_invertible_matrix(dim: int, rng: np.random.Generator, condition: float = 4.0) -> np.ndarray:
    """Q1 diag(s) Q2 with Haar-random orthogonal Q's and singular values log-uniform in [1/sqrt(c), sqrt(c)]."""
    if condition < 1:
        raise ArgumentError(f"condition must be >= 1, got {condition!r}")
    if dim == 1:
        return np.array([[float(np.exp(rng.uniform(-0.5, 0.5) * math.log(condition)))]])
    q1 = stats.ortho_group.rvs(dim, random_state=rng)
    q2 = stats.ortho_group.rvs(dim, random_state=rng)
    singular = np.exp(rng.uniform(-0.5, 0.5, size=dim) * math.log(condition))
    return q1 @ np.diag(singular) @ q2
