"""Conditional MI I(X;Y|Z) from samples, and the classical estimates with discrete variables, as ``MIResult``s.

    res = mi_toolkit.estimate_cmi(x, y, z)                  # KSG-CMI (Frenzel & Pompe 2007), k=3
    res = mi_toolkit.estimate(x, y, "ksg", z=z)             # the same
    res = mi_toolkit.estimate_cmi(x, y, z, "gaussian")      # Gaussian plug-in on the sample covariance

* ``ksg_cmi``: Frenzel & Pompe (2007) / Vejmelka & Palus (2008), the KSG-1 construction for a conditional MI:
  eps_i = Chebyshev distance from row i to its k-th neighbour in the joint (x, y, z) space, n_xz, n_yz, n_z the
  rows strictly within eps_i in the (x, z), (y, z) and z spaces (itself left out), and
  I(X;Y|Z) = psi(k) - < psi(n_xz + 1) + psi(n_yz + 1) - psi(n_z + 1) >.
  Neighbours from scipy's ``cKDTree`` up to ``KDTREE_MAX_DIM`` joint dimensions, above by an exhaustive chunked
  search in torch (float64: the same counts as the tree, tested).  Like KSG it under-estimates as the dimension and
  the MI grow; z of many dimensions costs the most (benchmarks/cmi_vs_ennemi.py has the figures).
* ``gaussian_cmi``: 1/2 [log|S_xz| + log|S_yz| - log|S_z| - log|S_xyz|] on the sample covariance (exact in the
  limit for Gaussians; on copula scores the Gaussian-copula CMI).

Standard errors come from ``subsamples`` random halves, SE = std(halves) sqrt(1/2), as for ``ksg``; direction
"estimate".  ``preprocess`` (default "copula", per column of x, y and z) keeps the CMI: an invertible map of each of
X, Y and Z leaves I(X;Y|Z) unchanged.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special
from scipy.spatial import cKDTree

from . import discrete
from .classical import KDTREE_MAX_DIM
from .classical import half_samples as _half_samples
from .errors import ArgumentError
from .result import EstimationFailed, MIResult, finish, warn_about
from .validation import (as_float_tensor, as_numeric_array, check_bool, check_float32_range, check_has_values,
                         check_int, check_matrix, check_rows, check_samples, degeneracy)

CMI_ESTIMATORS = ("ksg", "gaussian")


def _as_2d(a, name: str = "x") -> np.ndarray:
    a = np.asarray(as_numeric_array(a, name), dtype=np.float64)
    return a.reshape(len(a), -1) if a.ndim == 1 else a


def _exhaustive_cmi_counts(x, y, z, k: int):
    """n_xz, n_yz, n_z by exhaustive Chebyshev distances in float64 (the same counts as the KD-tree path)."""
    tx, ty, tz = (torch.from_numpy(np.ascontiguousarray(a)) for a in (x, y, z))
    n = x.shape[0]
    chunk = max(1, int(2e7 // (n * max(x.shape[1], y.shape[1], z.shape[1]))))
    counts = [np.empty(n, dtype=np.int64) for _ in range(3)]
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        dx, dy, dz = ((t[start:stop, None, :] - t[None, :, :]).abs().amax(-1) for t in (tx, ty, tz))
        dxz, dyz = torch.maximum(dx, dz), torch.maximum(dy, dz)
        joint = torch.maximum(dxz, dy)
        joint[torch.arange(stop - start), torch.arange(start, stop)] = float("inf")      # not its own neighbour
        eps = joint.topk(k, dim=1, largest=False).values[:, -1:]
        radius = torch.nextafter(eps, torch.zeros_like(eps))     # what the tree path counts: d <= nextafter(eps, 0)
        for out, d in zip(counts, (dxz, dyz, dz)):
            out[start:stop] = ((d <= radius).sum(1) - 1).numpy()
    return counts


def ksg_cmi(x, y, z, k: int = 3, workers: int = 1, exhaustive: bool | None = None) -> float:
    """KSG-CMI (Frenzel-Pompe) estimate of I(X;Y|Z) in nats from paired rows x [n, dx], y [n, dy], z [n, dz].
    ``exhaustive``: None picks the KD-tree up to ``KDTREE_MAX_DIM`` joint dimensions, the exhaustive search above."""
    x, y, z = _as_2d(x, "x"), _as_2d(y, "y"), _as_2d(z, "z")
    n = x.shape[0]
    k = check_int(k, "k")
    if not (y.shape[0] == z.shape[0] == n):
        raise ArgumentError(f"x, y and z must have the same number of rows, got {n}, {y.shape[0]}, {z.shape[0]}")
    if n <= k:
        raise ArgumentError(f"ksg needs more rows than k={k}, got {n}")
    if exhaustive is None:
        exhaustive = x.shape[1] + y.shape[1] + z.shape[1] > KDTREE_MAX_DIM
    if exhaustive:
        n_xz, n_yz, n_z = _exhaustive_cmi_counts(x, y, z, k)
    else:
        xz, yz = np.concatenate([x, z], 1), np.concatenate([y, z], 1)
        joint = np.concatenate([x, y, z], 1)
        dist, _ = cKDTree(joint).query(joint, k=k + 1, p=np.inf, workers=workers)     # itself first
        radius = np.nextafter(dist[:, -1], 0)         # strictly inside the joint k-th neighbour distance
        n_xz, n_yz, n_z = (cKDTree(a).query_ball_point(a, radius, p=np.inf, return_length=True, workers=workers) - 1
                           for a in (xz, yz, z))
    return float(special.digamma(k) - np.mean(special.digamma(n_xz + 1) + special.digamma(n_yz + 1)
                                              - special.digamma(n_z + 1)))


def gaussian_cmi(x, y, z, ridge: float = 1e-9) -> float:
    """Gaussian plug-in of I(X;Y|Z) on the sample covariance (tiny ridge)."""
    x, y, z = _as_2d(x, "x"), _as_2d(y, "y"), _as_2d(z, "z")
    joint = np.concatenate([x, y, z], 1)
    if joint.shape[0] <= joint.shape[1]:
        raise ArgumentError(f"the gaussian plug-in needs more rows than dims (dim_x + dim_y + dim_z = "
                            f"{joint.shape[1]}), got {joint.shape[0]}")
    cov = np.cov(joint, rowvar=False)
    cov = cov + ridge * np.trace(cov) / len(cov) * np.eye(len(cov))
    dx, dy = x.shape[1], y.shape[1]
    ix, iy, iz = np.arange(dx), np.arange(dx, dx + dy), np.arange(dx + dy, joint.shape[1])

    def logdet(idx):
        sign, value = np.linalg.slogdet(cov[np.ix_(idx, idx)])
        return value if sign > 0 else -np.inf

    return float(0.5 * (logdet(np.r_[ix, iz]) + logdet(np.r_[iy, iz]) - logdet(iz) - logdet(np.r_[ix, iy, iz])))


def half_samples(function, arrays, subsamples: int, seed: int, label: str | None = None, **kwargs):
    """(value on all rows, stderr, half-sample values): ``mi_toolkit.classical.half_samples`` (one implementation
    for every classical path: it checks the rows against what the halves need first)."""
    return _half_samples(function, arrays, subsamples, seed, label=label, **kwargs)


def _check_kwargs(name: str, kwargs: dict, allowed: set) -> None:
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"estimator {name!r} got an unsupported argument: {', '.join(sorted(unknown))} "
                        f"(it takes {', '.join(sorted(allowed))})")


def _result(name: str, value, stderr, halves, n: int, preprocess, seed: int, on_failure: str, warn: bool,
            refused: str | None, stacklevel: int):
    """An MIResult for a classical estimate (or a refusal: ``refused`` says why), through estimate()'s guards."""
    halves = np.asarray(halves)
    result = MIResult(estimator=name, mi=float(value), stderr=float(stderr),
                      std=float(np.std(halves)) if len(halves) else float("nan"), direction="estimate", cap=None,
                      batch_size=n, steps=0, train_mi=float(value), train_stderr=float(stderr), heldout_mi=None,
                      heldout_stderr=None, n_eval_batches=len(halves), history=np.zeros(0), preprocess=preprocess,
                      seed=seed)
    if refused is None:
        return finish(result, n, on_failure, warn, stacklevel=stacklevel + 1)
    if on_failure == "raise":
        raise EstimationFailed(f"{name}: {refused}")
    result.failed, result.failure = True, refused
    result.warnings.insert(0, f"no estimate: {refused}")
    if warn:
        warn_about(result, stacklevel + 1)
    return result


def _tie_refusal(name: str, variables: dict, conditional: bool = False) -> tuple[str | None, list[str]]:
    """(why a k-NN estimator must not run on these continuous variables, or None; warnings about a few ties)."""
    notes = []
    for which, a in variables.items():
        fraction = discrete.tied_fraction(a)
        if fraction > discrete.TIE_LIMIT:
            return discrete.tie_message(name, which, fraction, len(np.unique(a, axis=0)), conditional), notes
        if fraction > discrete.TIE_WARN:
            advice = "" if conditional else f"; see discrete_{which} / name='plugin' for discrete data"
            notes.append(f"{which} has {fraction:.1%} of its rows tied with another row: {name} assumes continuous "
                         f"data, so its estimate is biased{advice}")
    return None, notes


def _checks(on_failure: str, preprocess, seed) -> int:
    if on_failure not in ("warn", "raise"):
        raise ArgumentError(f"on_failure must be 'warn' or 'raise', got {on_failure!r}")
    if preprocess not in ("copula", "standardize", None):
        raise ArgumentError(f"preprocess must be 'copula', 'standardize' or None, got {preprocess!r}")
    return check_int(seed, "seed", minimum=0)


def _continuous(a, name: str) -> torch.Tensor:
    """A floating [n, d] tensor on the CPU (1-D: one column; bool: 0/1), finite."""
    check_has_values(a, name)
    if isinstance(a, np.ndarray) and a.dtype == bool:
        a = a.astype(np.float32)
    t = as_float_tensor(a, name).detach().cpu()
    check_float32_range(t, name)
    if t.dim() == 1:
        t = t[:, None]
    return check_matrix(t, name).float()


def estimate_cmi(x, y, z, name: str = "ksg", *, preprocess: str | None = "copula", subsamples: int = 10,
                 seed: int = 0, on_failure: str = "warn", warn: bool = True, _stacklevel: int = 2, **kwargs):
    """Conditional MI I(X;Y|Z) in nats from paired rows x [n, dx], y [n, dy], z [n, dz] (arrays or tensors), as an
    ``MIResult`` (direction "estimate", standard error over ``subsamples`` random halves).

    * ``name="ksg"``: KSG-CMI (Frenzel & Pompe 2007), ``k=3``, Chebyshev norm, ``workers`` threads; refused (with
      the reason) when x, y or z has more than 10% of its rows tied (discrete data).
    * ``name="gaussian"``: the Gaussian plug-in on the sample covariance (``ridge``).
    * ``preprocess``: "copula" (default), "standardize" or None, per column of each variable (keeps the CMI).
    * Guards as in ``estimate()``: an estimate far below 0 or above 2 log n comes back as nan with a
      ``MIEstimateWarning`` (``on_failure="raise"``: ``EstimationFailed``).
    """
    from .preprocess import preprocess as apply_preprocess
    if name not in CMI_ESTIMATORS:
        raise ArgumentError(f"unknown conditional-MI estimator {name!r}; valid: {', '.join(CMI_ESTIMATORS)}")
    seed = _checks(on_failure, preprocess, seed)
    _check_kwargs(name, kwargs, {"ksg": {"k", "workers", "exhaustive"}, "gaussian": {"ridge"}}[name])
    x, y, z = (_continuous(a, n) for a, n in ((x, "x"), (y, "y"), (z, "z")))
    x, y = check_samples(x, y)
    _, z = check_samples(x, z, y_name="z")
    n = x.shape[0]
    label = f"{name}-cmi"
    refused, notes = degeneracy(x.numpy(), y.numpy(), label, knn=name == "ksg", z=z.numpy())
    if refused is None and name == "ksg":
        refused, tie_notes = _tie_refusal("ksg-cmi", {"x": x.numpy(), "y": y.numpy(), "z": z.numpy()},
                                          conditional=True)
        notes += tie_notes
    if refused is not None:
        return _result(label, math.nan, math.nan, [], n, preprocess, seed, on_failure, warn, refused, _stacklevel)
    x, y, z = (apply_preprocess(t, preprocess).numpy() for t in (x, y, z))
    function = ksg_cmi if name == "ksg" else gaussian_cmi
    value, stderr, halves = half_samples(function, (x, y, z), subsamples, seed, label=label, **kwargs)
    result = _result(label, value, stderr, halves, n, preprocess, seed, on_failure, False, None, _stacklevel)
    return _notes(result, notes, warn, _stacklevel)


def _notes(result, notes: list[str], warn: bool, stacklevel: int):
    result.warnings.extend(notes)
    if warn:
        warn_about(result, stacklevel + 1)
    return result


def estimate_discrete(x, y, *, discrete_x: bool = True, discrete_y: bool = True, preprocess: str | None = "copula",
                      subsamples: int = 10, seed: int = 0, on_failure: str = "warn", warn: bool = True,
                      _stacklevel: int = 2, **kwargs):
    """MI with a discrete variable, as an ``MIResult`` (what ``estimate(x, y, "plugin")`` and
    ``estimate(x, y, "ksg", discrete_x=..., discrete_y=...)`` run).  Discrete variables: integer, bool or any
    exactly-repeating values, 1-D or [n, d] (each distinct row one category).

    * both discrete: the plug-in MI on the joint table (``miller_madow=True``: Miller-Madow bias correction);
      estimator "plugin" (or "plugin-mm").
    * one discrete: Ross (2014) mixed k-NN (``k=3``, ``workers``), the continuous side preprocessed
      (``preprocess``) and checked for ties; estimator "ksg-mixed".
    """
    from .preprocess import preprocess as apply_preprocess
    discrete_x, discrete_y = check_bool(discrete_x, "discrete_x"), check_bool(discrete_y, "discrete_y")
    if not (discrete_x or discrete_y):
        raise ArgumentError("estimate_discrete needs discrete_x=True or discrete_y=True (both continuous: use ksg)")
    seed = _checks(on_failure, preprocess, seed)
    both = discrete_x and discrete_y
    _check_kwargs("plugin" if both else "ksg-mixed", kwargs, {"miller_madow"} if both else {"k", "workers"})
    arrays = {}
    for which, a, is_discrete in (("x", x, discrete_x), ("y", y, discrete_y)):
        check_has_values(a, which)
        if is_discrete:
            a = discrete.as_2d(a, which)
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise ArgumentError(f"{which} contains NaN/inf value(s); expected finite numbers")
            arrays[which] = a
        else:
            arrays[which] = _continuous(a, which)
    n = len(arrays["x"])
    if len(arrays["y"]) != n:
        raise ArgumentError(f"x and y must have the same batch size, got {n} and {len(arrays['y'])}")
    check_rows(torch.empty(n, 1), "x", 2)
    notes = []
    if both:
        label = "plugin-mm" if kwargs.get("miller_madow") else "plugin"
        for which, a in arrays.items():
            distinct = len(np.unique(a, axis=0))
            if distinct > n / 2:
                notes.append(f"{which} has {distinct} distinct values in {n} rows: the plug-in treats each as its own "
                             f"category, so the estimate is near min(H(X), H(Y)) whatever the dependence; for a "
                             f"continuous {which} use discrete_{which}=False (ksg)")
        value, stderr, halves = half_samples(discrete.plugin_mi, (arrays["x"], arrays["y"]), subsamples, seed,
                                             label=label, **kwargs)
        preprocess = None
    else:
        label = "ksg-mixed"
        cont_name = "y" if discrete_x else "x"
        cont, disc = arrays[cont_name], arrays["x" if discrete_x else "y"]
        refused, notes = _tie_refusal("ksg-mixed", {cont_name: cont.numpy()})
        if refused is not None:
            return _result(label, math.nan, math.nan, [], n, preprocess, seed, on_failure, warn, refused, _stacklevel)
        cont = apply_preprocess(cont, preprocess).double().numpy()
        value, stderr, halves = half_samples(discrete.mixed_ksg_mi, (cont, disc), subsamples, seed, label=label,
                                             **kwargs)
    result = _result(label, value, stderr, halves, n, preprocess, seed, on_failure, False, None, _stacklevel)
    return _notes(result, notes, warn, _stacklevel)
