"""Classical (non-neural) MI estimators: the baselines a neural estimate is checked against.

* ``ksg``: Kraskov, Stoegbauer & Grassberger (2004), k-nearest neighbours in the max (Chebyshev) norm.
  ``variant=1`` (KSG-1: counts strictly inside the joint k-th neighbour distance, psi(n+1)) or ``variant=2`` (KSG-2:
  per-marginal distances, counts within them, psi(k) - 1/k).  Neighbour searches use scipy's ``cKDTree``: it takes
  the Chebyshev norm (``p=inf``) in both the k-NN query and the ball count, counts without building index lists
  (``query_ball_point(..., return_length=True)``), runs on several threads (``workers``), and scipy is already a
  dependency.  Above 12 joint dimensions a KD-tree prunes almost nothing (50-D, 10,000 rows: minutes), so there the
  same counts come from a chunked exhaustive search in torch.  scikit-learn's ``NearestNeighbors`` gives the same numbers (its ``mutual_info_regression`` is KSG-1 on
  its KD-tree) but has no count-only radius query on the joint neighbourhood's per-point radii in one call.
  Known small-sample behaviour: on Gaussians of growing dimension KSG under-estimates (the kNN balls are too big in
  high dimension), more so as MI grows; it is nearly unbiased for low-dimensional, low-MI data.
* ``gaussian`` (``gaussian_plugin_mi``): the Gaussian (CCA) plug-in 1/2 [log det S_x + log det S_y - log det S] on
  the sample covariance: exact in the limit for Gaussian data (the closed form from a known covariance is
  ``synthetic.gaussian_mi``).  On copula-transformed data (``estimate()``'s default) it is the
  Gaussian-copula MI of Ince et al. (2017), which in the limit is a lower bound on the true MI (with N(0, 1) margins,
  the Gaussian joint has the largest entropy for its covariance).  It misses every non-linear dependence.

Both return a point estimate and a standard error from subsampling: the estimator is re-run on ``subsamples``
random halves and SE = std(half estimates) * sqrt(1/2) (the m-out-of-n rule, variance ~ 1/n; a bootstrap would
duplicate rows, which puts kNN distances at zero).  Direction: "estimate" (neither is a bound).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special
from scipy.spatial import cKDTree

from .errors import ArgumentError
from .validation import as_numeric_array, check_int

ESTIMATE = "estimate"


def _as_2d(a, name: str = "x") -> np.ndarray:
    a = np.asarray(as_numeric_array(a, name), dtype=np.float64)
    return a.reshape(len(a), -1) if a.ndim == 1 else a


KDTREE_MAX_DIM = 12    # above this joint dimension a KD-tree prunes almost nothing: brute force (chunked torch)


def _chebyshev_chunks(a: torch.Tensor, chunk: int):
    """(start, D) with D[i, j] = max_d |a[start + i, d] - a[j, d]| for row chunks of a."""
    for start in range(0, a.shape[0], chunk):
        yield start, (a[start:start + chunk, None, :] - a[None, :, :]).abs().amax(-1)


def _brute_force_ksg(x: np.ndarray, y: np.ndarray, k: int, variant: int):
    """The same counts as the KD-tree path, by exhaustive Chebyshev distances (memory: chunk x n x d floats)."""
    # float32: half the memory traffic of this memory-bound search (ties at float32 precision are the only change)
    tx, ty = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    n = x.shape[0]
    chunk = max(1, int(4e6 // (n * max(x.shape[1], y.shape[1]))) * 4)
    nx, ny = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    for start, dx_chunk in _chebyshev_chunks(tx, chunk):
        rows = torch.arange(start, start + dx_chunk.shape[0])
        dy_chunk = (ty[start:start + chunk, None, :] - ty[None, :, :]).abs().amax(-1)
        joint = torch.maximum(dx_chunk, dy_chunk)
        joint[torch.arange(len(rows)), rows] = float("inf")         # not its own neighbour
        dist, idx = joint.topk(k, dim=1, largest=False)
        if variant == 1:
            eps = dist[:, -1:]
            cx = (dx_chunk < eps).sum(1) - 1                         # strictly inside; minus the point itself
            cy = (dy_chunk < eps).sum(1) - 1
        else:
            eps_x = dx_chunk.gather(1, idx).amax(1, keepdim=True)
            eps_y = dy_chunk.gather(1, idx).amax(1, keepdim=True)
            cx = (dx_chunk <= eps_x).sum(1) - 1
            cy = (dy_chunk <= eps_y).sum(1) - 1
        nx[start:start + len(rows)] = cx.numpy()
        ny[start:start + len(rows)] = cy.numpy()
    return nx, ny


def ksg_mi(x, y, k: int = 3, variant: int = 1, workers: int = 1) -> float:
    """KSG estimate of I(X;Y) in nats from paired rows x [n, dx], y [n, dy] (numpy or tensors).  Neighbours by
    scipy's cKDTree up to ``KDTREE_MAX_DIM`` joint dimensions, by chunked exhaustive search above (same counts)."""
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    n = x.shape[0]
    k = check_int(k, "k")
    if variant not in (1, 2):
        raise ArgumentError(f"variant must be 1 (KSG-1) or 2 (KSG-2), got {variant!r}")
    if n <= k:
        raise ArgumentError(f"ksg needs more rows than k={k}, got {n}")
    if x.shape[1] + y.shape[1] > KDTREE_MAX_DIM:
        nx, ny = _brute_force_ksg(x, y, k, variant)
        if variant == 1:
            return float(special.digamma(k) + special.digamma(n)
                         - np.mean(special.digamma(nx + 1) + special.digamma(ny + 1)))
        return float(special.digamma(k) - 1.0 / k + special.digamma(n)
                     - np.mean(special.digamma(np.maximum(nx, 1)) + special.digamma(np.maximum(ny, 1))))
    joint = np.concatenate([x, y], axis=1)
    tree = cKDTree(joint)
    # k + 1 neighbours: the point itself comes first (distance 0)
    dist, idx = tree.query(joint, k=k + 1, p=np.inf, workers=workers)
    tree_x, tree_y = cKDTree(x), cKDTree(y)
    if variant == 1:
        eps = dist[:, -1]
        radius = np.nextafter(eps, 0)  # strictly inside the joint k-th neighbour distance
        nx = tree_x.query_ball_point(x, radius, p=np.inf, return_length=True, workers=workers) - 1
        ny = tree_y.query_ball_point(y, radius, p=np.inf, return_length=True, workers=workers) - 1
        value = special.digamma(k) + special.digamma(n) - np.mean(special.digamma(nx + 1) + special.digamma(ny + 1))
    else:
        neighbours = idx[:, 1:]
        eps_x = np.abs(x[neighbours] - x[:, None, :]).max(axis=(1, 2))
        eps_y = np.abs(y[neighbours] - y[:, None, :]).max(axis=(1, 2))
        nx = tree_x.query_ball_point(x, eps_x, p=np.inf, return_length=True, workers=workers) - 1
        ny = tree_y.query_ball_point(y, eps_y, p=np.inf, return_length=True, workers=workers) - 1
        value = (special.digamma(k) - 1.0 / k + special.digamma(n)
                 - np.mean(special.digamma(np.maximum(nx, 1)) + special.digamma(np.maximum(ny, 1))))
    return float(value)


def gaussian_plugin_mi(x, y, ridge: float = 1e-9) -> float:
    """Gaussian plug-in I = 1/2 [log det S_x + log det S_y - log det S] (sample covariance, tiny ridge)."""
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    joint = np.concatenate([x, y], axis=1)
    if joint.shape[0] <= joint.shape[1]:
        raise ArgumentError(f"the gaussian plug-in needs more rows than dims (dim_x + dim_y = {joint.shape[1]}), "
                            f"got {joint.shape[0]}")
    cov = np.cov(joint, rowvar=False)
    cov = cov + ridge * np.trace(cov) / len(cov) * np.eye(len(cov))
    dx = x.shape[1]

    def logdet(m):
        sign, value = np.linalg.slogdet(m)
        return value if sign > 0 else -np.inf

    return float(0.5 * (logdet(cov[:dx, :dx]) + logdet(cov[dx:, dx:]) - logdet(cov)))


@dataclass
class ClassicalEstimator:
    name: str
    function: object
    description: str
    direction: str = ESTIMATE
    min_rows: int = 8

    def cap(self, batch_size: int):
        return None


CLASSICAL = {
    "ksg": ClassicalEstimator("ksg", ksg_mi, "Kraskov-Stoegbauer-Grassberger kNN estimate (k=3, KSG-1; variant=2)"),
    "gaussian": ClassicalEstimator("gaussian", gaussian_plugin_mi, "Gaussian (CCA) plug-in on the sample covariance"),
}


def rows_needed(function, arrays, kwargs: dict) -> int:
    """The fewest rows one run of a classical ``function`` takes on ``arrays``: more than k for the k-NN
    estimators, more than the joint dimension for the Gaussian plug-ins, 1 otherwise."""
    label = getattr(function, "__name__", "")
    if "ksg" in label:
        return int(kwargs.get("k", 3)) + 1
    if "gaussian" in label:
        return sum(a.shape[1] if a.ndim > 1 else 1 for a in arrays) + 1
    return 1


def half_samples(function, arrays, subsamples: int, seed: int, label: str | None = None, **kwargs):
    """(value on all rows, stderr, half-sample values): the classical estimators' m-out-of-n standard error, the
    estimator re-run on ``subsamples`` random halves.  The rows are checked first against what the halves need,
    so a too-small data set is reported with the user's row count, not a half's."""
    subsamples = check_int(subsamples, "subsamples", minimum=0)
    n = arrays[0].shape[0]
    need = rows_needed(function, arrays, kwargs)
    label = label or getattr(function, "__name__", "the estimator")
    if subsamples and n // 2 < need:
        raise ArgumentError(f"{label} needs at least {2 * need} rows here: {need} for one estimate"
                            f"{' (more than k=' + str(kwargs.get('k', 3)) + ')' if 'ksg' in function.__name__ else ''}"
                            f", and the standard error re-runs it on random halves (subsamples={subsamples}), each of "
                            f"which needs {need} too; x has {n} rows (subsamples=0 skips the standard error)")
    if n < need:
        raise ArgumentError(f"{label} needs at least {need} rows; x has {n}")
    value = function(*arrays, **kwargs)
    rng = np.random.default_rng(seed)
    halves = []
    for _ in range(subsamples):
        rows = rng.choice(n, n // 2, replace=False)
        halves.append(function(*(a[rows] for a in arrays), **kwargs))
    halves = np.asarray(halves)
    stderr = float(halves.std(ddof=1) * math.sqrt(0.5)) if len(halves) > 1 else float("nan")
    return value, stderr, halves


def classical_estimate(name: str, x, y, *, subsamples: int = 10, seed: int = 0, **kwargs):
    """(value, stderr, half-sample values) of classical estimator ``name`` on all rows."""
    if name not in CLASSICAL:
        raise ArgumentError(f"unknown classical estimator {name!r}; valid: {', '.join(sorted(CLASSICAL))}")
    function = CLASSICAL[name].function
    allowed = {"ksg": {"k", "variant", "workers"}, "gaussian": {"ridge"}}[name]
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"estimator {name!r} got an unsupported argument: {', '.join(sorted(unknown))} "
                        f"(it takes {', '.join(sorted(allowed))})")
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    if "k" in kwargs:
        kwargs["k"] = check_int(kwargs["k"], "k")
    return half_samples(function, (x, y), subsamples, seed, label=name, **kwargs)
