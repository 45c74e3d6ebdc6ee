"""MI with discrete variables, and the tie check that keeps continuous-only estimators off discrete data.

* ``plugin_mi`` (discrete-discrete): the plug-in I = sum p(x, y) log p(x, y) / (p(x) p(y)) on the empirical joint
  table of integer / bool / any exactly-repeating values (each distinct row of a multi-column variable is one
  category).  Biased upwards by about (K_xy - K_x - K_y + 1) / (2n) nats (K: occupied cells); ``miller_madow=True``
  applies the Miller-Madow correction H += (K - 1) / (2n) to each of the three entropies, i.e.
  I_MM = I_plugin - (K_xy - K_x - K_y + 1) / (2n).
* ``mixed_ksg_mi`` (one discrete, one continuous variable): Ross (2014), "Mutual information between discrete and
  continuous data sets", the k-NN estimator scikit-learn's ``mutual_info_classif`` uses:
  I = psi(n) + <psi(k_i)> - <psi(n_c(i))> - <psi(m_i)>, with d_i the distance from point i to its k-th neighbour
  among the points of its own class c(i) (k_i = min(k, n_c - 1)), and m_i the number of points of any class
  strictly within d_i (the point itself included).  Rows whose class occurs once are left out (as sklearn does).
  Chebyshev norm (like ``ksg``; sklearn uses the Euclidean, which only matters for multi-column continuous data),
  scipy ``cKDTree``; unlike sklearn the value is not clipped at 0 (the guards and the standard error see it).
* ``tied_fraction``: the share of rows of a variable whose value (the whole row) occurs more than once.  KSG's
  counts assume no two rows coincide (continuous data): with ties the k-th neighbour distance is 0 and every tied
  row lands inside every ball, which gives estimates far below 0 or far off.  ``estimate()`` refuses ``ksg`` on a
  variable with more than ``TIE_LIMIT`` of its rows tied and says to use ``discrete_x`` / ``discrete_y`` or
  ``name="plugin"``.
"""
from __future__ import annotations

import numpy as np
from scipy import special
from scipy.spatial import cKDTree

from .errors import ArgumentError
from .validation import as_numeric_array, check_int

TIE_LIMIT = 0.10     # ksg is refused when more than this share of a variable's rows are tied with another row
TIE_WARN = 0.01      # ... and warned about above this share


def as_2d(a, name: str = "the data") -> np.ndarray:
    """An [n, d] numpy array (1-D input: one column; bool: 0/1; tensors: moved to the CPU)."""
    a = as_numeric_array(a, name)      # ragged lists, non-numbers and complex values are refused by name
    if a.dtype == bool:
        a = a.astype(np.int64)
    return a.reshape(len(a), -1) if a.ndim == 1 else a


def labels(a) -> np.ndarray:
    """One integer label per row: distinct rows of ``a`` [n, d] get distinct labels 0..K-1."""
    a = as_2d(a)
    return np.unique(a, axis=0, return_inverse=True)[1].reshape(-1)


def tied_fraction(a) -> float:
    """The share of rows of ``a`` [n, d] whose whole row occurs more than once (0 for continuous data)."""
    a = as_2d(a)
    if len(a) == 0:
        return 0.0
    _, inverse, counts = np.unique(a, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.reshape(-1)] > 1).mean())


def tie_message(name: str, which: str, fraction: float, n_distinct: int, conditional: bool = False) -> str:
    if conditional:
        advice = ("For a discrete z, I(X;Y|Z) = sum_c p(c) I(X;Y|Z=c): average estimate(x[z == c], y[z == c]) over "
                  "the classes weighted by their frequencies" if which == "z" else
                  f"A discrete {which} is not supported by the conditional estimate; with a discrete z as well, "
                  f"average the per-class plug-in or mixed estimates (estimate(..., discrete_{which}=True)) over z")
        return (f"{which} has {fraction:.0%} of its rows tied with another row ({n_distinct} distinct values): {name} "
                f"assumes continuous variables (tied rows are at distance 0, so the k-NN counts break and the "
                f"estimate is meaningless). {advice}; for continuous data with rounding ties add noise below the "
                f"rounding step")
    return (f"{which} has {fraction:.0%} of its rows tied with another row ({n_distinct} distinct values): {name} "
            f"assumes continuous variables (tied rows are at distance 0, so the k-NN counts break and the estimate "
            f"is meaningless, typically far below 0). For a discrete {which} pass discrete_{which}=True (the Ross "
            f"2014 mixed k-NN estimator), for two discrete variables name='plugin' (plug-in MI, miller_madow=True "
            f"for the bias correction); for continuous data with rounding ties add noise below the rounding step")


def plugin_mi(x, y, miller_madow: bool = False) -> float:
    """Plug-in MI in nats of two discrete variables (rows of x [n, dx], y [n, dy], or 1-D); Miller-Madow optional."""
    lx, ly = labels(x), labels(y)
    n = len(lx)
    if len(ly) != n:
        raise ArgumentError(f"x and y must have the same number of rows, got {n} and {len(ly)}")
    if n == 0:
        raise ArgumentError("plugin_mi needs at least one row")
    kx, ky = lx.max() + 1, ly.max() + 1
    joint = np.bincount(lx * ky + ly, minlength=kx * ky).reshape(kx, ky).astype(np.float64)
    px, py = joint.sum(1), joint.sum(0)
    nz = joint > 0
    value = float(np.sum(joint[nz] * (np.log(joint[nz] * n) - np.log(np.outer(px, py)[nz]))) / n)
    if miller_madow:
        value -= (int(nz.sum()) - int(kx) - int(ky) + 1) / (2.0 * n)
    return value


def mixed_ksg_mi(continuous, discrete, k: int = 3, workers: int = 1) -> float:
    """Ross (2014) k-NN MI in nats between a continuous variable [n, d] and a discrete one (rows = categories)."""
    c = np.asarray(as_2d(continuous), dtype=np.float64)
    d = labels(discrete)
    k = check_int(k, "k")
    if len(c) != len(d):
        raise ArgumentError(f"the continuous and discrete variables must have the same rows, got {len(c)} and {len(d)}")
    counts = np.bincount(d)
    keep = counts[d] > 1
    c, d = c[keep], d[keep]
    n = len(d)
    if n <= k:
        raise ArgumentError(f"the mixed k-NN estimator needs more than k={k} rows in classes that occur twice or "
                            f"more, got {n}")
    counts = np.bincount(d)
    radius = np.empty(n)
    k_all = np.empty(n)
    for label in np.flatnonzero(counts > 1):
        rows = np.flatnonzero(d == label)
        kk = min(k, len(rows) - 1)
        dist, _ = cKDTree(c[rows]).query(c[rows], k=kk + 1, p=np.inf, workers=workers)
        radius[rows] = np.nextafter(dist[:, -1], 0)     # strictly inside the k-th same-class neighbour distance
        k_all[rows] = kk
    m = cKDTree(c).query_ball_point(c, radius, p=np.inf, return_length=True, workers=workers)   # includes itself
    return float(special.digamma(n) + np.mean(special.digamma(k_all)) - np.mean(special.digamma(counts[d]))
                 - np.mean(special.digamma(m)))
