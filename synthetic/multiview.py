"""Multi-view worlds and conditional tasks whose information quantities are exact.

Everything here is jointly Gaussian (or an invertible function of something jointly Gaussian), so mutual and
conditional mutual information are log-determinants of covariance blocks:

    I(A;B|C) = 1/2 log( |S_AC| |S_BC| / (|S_C| |S_ABC|) )          (nats; I(A;B) is the case C = {})

* ``gaussian_conditional_mi(cov, a_idx, b_idx, c_idx)`` / ``gaussian_mi``: the formula above, float64.
* ``MultiViewWorld``: shared latent s, view-specific n1, n2, the non-shared task-relevant t1 = n1[:t1_dim];
  v1 = A1 [s + e1; n1], v2 = A2 [s + e2; n2] with random invertible A.  For any linear-Gaussian encoder
  z = W v + b + noise it gives I(z1;z2), the superfluous I(z1;v1|v2), I(z1;s), I(z1;t1), the expected KL bound of
  the SuperInfo objective, and the Bayes accuracy of the two probe tasks, all exactly.
* ``NonlinearMultiViewWorld``: views pushed through an invertible non-linear mixing v = B g(A u); every quantity
  between views and latents is unchanged (invariance of MI under invertible maps of one side).
* ``ConditionalGaussian``: X, Y, Z jointly Gaussian, any dims, with a chosen I(X;Y|Z).

Samples come from ``torch`` generators (like ``synthetic.tasks``); covariance maths is numpy float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from .tasks import LOG_2PI, _check_mi, make_transform, rho_for_mi

__all__ = [
    "gaussian_entropy", "gaussian_mi", "gaussian_conditional_mi", "gaussian_kl", "random_invertible_matrix",
    "LinearGaussianEncoder", "MultiViewSample", "MultiViewWorld", "NonlinearMultiViewWorld", "ConditionalGaussian",
]


# ---------------------------------------------------------------------------------------------------------------
# Closed forms
# ---------------------------------------------------------------------------------------------------------------
def _check_cov(cov, name: str = "cov") -> np.ndarray:
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"{name} must be a square [d, d] matrix, got shape {cov.shape}")
    if not np.all(np.isfinite(cov)):
        raise ValueError(f"{name} contains NaN/inf values")
    if not np.allclose(cov, cov.T, rtol=1e-8, atol=1e-10 * max(1.0, float(np.abs(cov).max(initial=0.0)))):
        raise ValueError(f"{name} must be symmetric")
    return 0.5 * (cov + cov.T)


def _check_index(idx, dim: int, name: str) -> np.ndarray:
    if isinstance(idx, slice):
        idx = range(dim)[idx]
    try:
        arr = np.asarray(list(idx), dtype=np.int64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of integer indices, got {idx!r}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of indices, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= dim):
        raise ValueError(f"{name} holds indices outside [0, {dim}): {arr.tolist()}")
    if len(set(arr.tolist())) != arr.size:
        raise ValueError(f"{name} repeats an index: {arr.tolist()}")
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
        raise ValueError("a_idx and b_idx must each name at least one variable")
    for (x, xn), (y, yn) in (((a, "a_idx"), (b, "b_idx")), ((a, "a_idx"), (c, "c_idx")), ((b, "b_idx"), (c, "c_idx"))):
        if set(x.tolist()) & set(y.tolist()):
            raise ValueError(f"{xn} and {yn} must be disjoint, both hold {sorted(set(x.tolist()) & set(y.tolist()))}")
    scale = float(np.abs(np.diag(cov[np.ix_(a, a)])).max(initial=0.0))
    ld_given_c = _logdet_matrix(_conditional_cov(cov, a, c), scale)
    if not math.isfinite(ld_given_c):
        raise ValueError("A is degenerate given C (a singular conditional covariance): I(A;B|C) is undefined")
    ld_given_bc = _logdet_matrix(_conditional_cov(cov, a, np.concatenate([b, c])), scale)
    if not math.isfinite(ld_given_bc):
        return math.inf
    return max(0.5 * (ld_given_c - ld_given_bc), 0.0)


def gaussian_mi(cov, a_idx, b_idx) -> float:
    """I(A;B) in nats for jointly Gaussian variables."""
    return gaussian_conditional_mi(cov, a_idx, b_idx, ())


def gaussian_kl(mean1, cov1, mean2, cov2) -> float:
    """KL( N(mean1, cov1) || N(mean2, cov2) ) in nats, full covariances, float64."""
    cov1, cov2 = _check_cov(cov1, "cov1"), _check_cov(cov2, "cov2")
    mean1, mean2 = np.asarray(mean1, dtype=np.float64), np.asarray(mean2, dtype=np.float64)
    k = cov1.shape[0]
    if cov2.shape != (k, k) or mean1.shape != (k,) or mean2.shape != (k,):
        raise ValueError(f"shapes disagree: mean1 {mean1.shape}, cov1 {cov1.shape}, mean2 {mean2.shape}, cov2 {cov2.shape}")
    return _expected_kl(cov1, cov2, np.zeros((k, k)), mean1 - mean2)


def _expected_kl(cov1, cov2, cov_delta, mean_delta) -> float:
    """E KL(N(m1, C1) || N(m2, C2)) where m1 - m2 has mean ``mean_delta`` and covariance ``cov_delta``."""
    k = cov1.shape[0]
    ld1, ld2 = _logdet(cov1, np.arange(k)), _logdet(cov2, np.arange(k))
    if not math.isfinite(ld2):
        raise ValueError("the second Gaussian's covariance is singular: KL is infinite or undefined")
    if not math.isfinite(ld1):
        return math.inf
    solve = np.linalg.solve(cov2, cov1 + cov_delta + np.outer(mean_delta, mean_delta))
    return 0.5 * (float(np.trace(solve)) - k + ld2 - ld1)


def random_invertible_matrix(dim: int, rng: np.random.Generator, condition: float = 4.0) -> np.ndarray:
    """Q1 diag(s) Q2 with Haar-random orthogonal Q's and singular values log-uniform in [1/sqrt(c), sqrt(c)]."""
    if condition < 1:
        raise ValueError(f"condition must be >= 1, got {condition!r}")
    if dim == 1:
        return np.array([[float(np.exp(rng.uniform(-0.5, 0.5) * math.log(condition)))]])
    q1 = stats.ortho_group.rvs(dim, random_state=rng)
    q2 = stats.ortho_group.rvs(dim, random_state=rng)
    singular = np.exp(rng.uniform(-0.5, 0.5, size=dim) * math.log(condition))
    return q1 @ np.diag(singular) @ q2


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_nonneg(value, name: str, positive: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------------------------
# Encoders whose information is exact
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinearGaussianEncoder:
    """z = weight @ v + bias + noise, noise ~ N(0, noise_cov) independent of everything else (float64).

    Build with ``LinearGaussianEncoder.make(weight, bias=None, noise_std=...)`` (a scalar or per-dimension std) or
    ``noise_cov=`` (a full covariance: the true conditional p(z1 | v2) of another encoder is one of these).
    """

    weight: np.ndarray       # [k, d]
    bias: np.ndarray         # [k]
    noise_cov: np.ndarray    # [k, k]

    @classmethod
    def make(cls, weight, bias=None, noise_std=None, noise_cov=None) -> "LinearGaussianEncoder":
        weight = np.asarray(weight, dtype=np.float64)
        if weight.ndim != 2 or not np.all(np.isfinite(weight)):
            raise ValueError(f"weight must be a finite [k, d] matrix, got shape {weight.shape}")
        k = weight.shape[0]
        bias = np.zeros(k) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
        if bias.shape != (k,) or not np.all(np.isfinite(bias)):
            raise ValueError(f"bias must be a finite vector of length {k}, got shape {bias.shape}")
        if (noise_std is None) == (noise_cov is None):
            raise ValueError("give exactly one of noise_std (scalar or per-dimension) or noise_cov ([k, k])")
        if noise_std is not None:
            std = np.broadcast_to(np.asarray(noise_std, dtype=np.float64), (k,)).copy()
            if not np.all(np.isfinite(std)) or np.any(std < 0):
                raise ValueError(f"noise_std must be finite and >= 0, got {std.tolist()}")
            noise_cov = np.diag(std ** 2)
        noise_cov = _check_cov(noise_cov, "noise_cov")
        if noise_cov.shape != (k, k):
            raise ValueError(f"noise_cov must be [{k}, {k}], got {noise_cov.shape}")
        if float(np.linalg.eigvalsh(noise_cov).min()) < -1e-10 * max(1.0, float(np.abs(noise_cov).max())):
            raise ValueError("noise_cov must be positive semi-definite")
        return cls(weight, bias, noise_cov)

    @property
    def z_dim(self) -> int:
        return self.weight.shape[0]

    @property
    def in_dim(self) -> int:
        return self.weight.shape[1]

    def noise_factor(self) -> np.ndarray:
        """L with L L^T = noise_cov (symmetric square root, so zero noise gives a zero factor)."""
        vals, vecs = np.linalg.eigh(self.noise_cov)
        return vecs @ np.diag(np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


@dataclass
class MultiViewSample:
    """One batch of the world: the two views, every latent part, and the two probe labels (0/1)."""

    v1: torch.Tensor
    v2: torch.Tensor
    s: torch.Tensor
    e1: torch.Tensor
    e2: torch.Tensor
    n1: torch.Tensor
    n2: torch.Tensor
    t1: torch.Tensor
    shared_label: torch.Tensor
    t1_label: torch.Tensor


# ---------------------------------------------------------------------------------------------------------------
# Multi-view world
# ---------------------------------------------------------------------------------------------------------------
class MultiViewWorld:
    """Two views of a shared latent, each with its own nuisance, all jointly Gaussian.

    Latents (independent, zero mean): s ~ N(0, I_shared_dim); e1, e2 ~ N(0, noise_std^2 I_shared_dim) (the part
    of the shared signal each view sees differently); n1, n2 ~ N(0, I_nuisance_dim) (view-specific); t1 = n1[:t1_dim]
    (view-specific, yet relevant to a task).  Views: v1 = A1 [s + e1; n1], v2 = A2 [s + e2; n2], with A1, A2 random
    invertible (``condition`` bounds their condition number).

    Probe tasks: ``shared_label = [u_s . s > 0]`` and ``t1_label = [u_t . t1 > 0]`` for fixed random unit vectors.

    The world is linear in a standard-normal source vector xi = [s, e1/noise_std, e2/noise_std, n1, n2] (plus the
    encoders' own noise), so every covariance is L L^T for a matrix of loadings L: see ``joint_covariance``.
    """

    def __init__(self, shared_dim: int = 4, nuisance_dim: int = 6, t1_dim: int = 2, noise_std: float = 0.3,
                 condition: float = 4.0, seed: int = 0):
        self.shared_dim = _check_int(shared_dim, "shared_dim", 1)
        self.nuisance_dim = _check_int(nuisance_dim, "nuisance_dim", 1)
        self.t1_dim = _check_int(t1_dim, "t1_dim", 1)
        if self.t1_dim > self.nuisance_dim:
            raise ValueError(f"t1_dim must be <= nuisance_dim ({self.nuisance_dim}): t1 is a slice of n1, got {t1_dim}")
        self.noise_std = _check_nonneg(noise_std, "noise_std")
        self.condition = _check_nonneg(condition, "condition", positive=True)
        self.seed = _check_int(seed, "seed", 0)
        rng = np.random.default_rng(self.seed)
        self.view_dim = self.shared_dim + self.nuisance_dim
        self.mixing1 = random_invertible_matrix(self.view_dim, rng, self.condition)
        self.mixing2 = random_invertible_matrix(self.view_dim, rng, self.condition)
        self.shared_direction = self._unit(rng.standard_normal(self.shared_dim))
        self.t1_direction = self._unit(rng.standard_normal(self.t1_dim))
        self._build_loadings()

    @staticmethod
    def _unit(v):
        return v / np.linalg.norm(v)

    # -- the linear structure -------------------------------------------------------------------------------
    def _build_loadings(self):
        ds, dn = self.shared_dim, self.nuisance_dim
        self.source_dim = 3 * ds + 2 * dn
        offsets = {"s": 0, "e1": ds, "e2": 2 * ds, "n1": 3 * ds, "n2": 3 * ds + dn}
        sizes = {"s": ds, "e1": ds, "e2": ds, "n1": dn, "n2": dn}
        scale = {"s": 1.0, "e1": self.noise_std, "e2": self.noise_std, "n1": 1.0, "n2": 1.0}
        L = {}
        for name in offsets:
            m = np.zeros((sizes[name], self.source_dim))
            m[:, offsets[name]:offsets[name] + sizes[name]] = scale[name] * np.eye(sizes[name])
            L[name] = m
        L["t1"] = L["n1"][: self.t1_dim]
        L["v1"] = self.mixing1 @ np.vstack([L["s"] + L["e1"], L["n1"]])
        L["v2"] = self.mixing2 @ np.vstack([L["s"] + L["e2"], L["n2"]])
        L["shared_score"] = self.shared_direction[None, :] @ L["s"]
        L["t1_score"] = self.t1_direction[None, :] @ L["t1"]
        self._loadings = L

    def loadings(self, name: str) -> np.ndarray:
        """Rows mapping the standard-normal source vector to variable ``name`` (s, e1, e2, n1, n2, t1, v1, v2,
        shared_score, t1_score)."""
        if name not in self._loadings:
            raise ValueError(f"unknown variable {name!r}; valid: {', '.join(self._loadings)}")
        return self._loadings[name]

    def view_covariance(self) -> np.ndarray:
        """Covariance of [v1; v2]."""
        L = np.vstack([self._loadings["v1"], self._loadings["v2"]])
        return L @ L.T

    def _check_encoder(self, enc, name):
        if not isinstance(enc, LinearGaussianEncoder):
            raise TypeError(f"{name} must be a LinearGaussianEncoder, got {type(enc).__name__}")
        if enc.in_dim != self.view_dim:
            raise ValueError(f"{name} takes {enc.in_dim} inputs but the views have {self.view_dim} dims")
        return enc

    def joint_covariance(self, encoder1: LinearGaussianEncoder | None = None,
                         encoder2: LinearGaussianEncoder | None = None):
        """Covariance of every latent, both views, and z1 = enc1(v1), z2 = enc2(v2) (when given).

        Returns ``(cov, blocks)`` with ``blocks[name]`` the index array of each variable inside ``cov``.
        """
        names = ["s", "e1", "e2", "n1", "n2", "t1", "v1", "v2", "shared_score", "t1_score"]
        rows = [self._loadings[n] for n in names]
        k1 = k2 = 0
        if encoder1 is not None:
            k1 = self._check_encoder(encoder1, "encoder1").z_dim
        if encoder2 is not None:
            k2 = self._check_encoder(encoder2, "encoder2").z_dim
        rows = [np.hstack([r, np.zeros((r.shape[0], k1 + k2))]) for r in rows]
        if encoder1 is not None:
            rows.append(np.hstack([encoder1.weight @ self._loadings["v1"], encoder1.noise_factor(),
                                   np.zeros((k1, k2))]))
            names.append("z1")
        if encoder2 is not None:
            rows.append(np.hstack([encoder2.weight @ self._loadings["v2"], np.zeros((k2, k1)),
                                   encoder2.noise_factor()]))
            names.append("z2")
        L = np.vstack(rows)
        blocks, start = {}, 0
        for n, r in zip(names, rows):
            blocks[n] = np.arange(start, start + r.shape[0])
            start += r.shape[0]
        return L @ L.T, blocks

    # -- exact information -----------------------------------------------------------------------------------
    def view_information(self) -> dict:
        """Quantities between views and latents (encoder-free; invariant under invertible maps of either view)."""
        cov, b = self.joint_covariance()
        out = {
            "i_v1_v2": gaussian_mi(cov, b["v1"], b["v2"]),
            "i_v1_s": gaussian_mi(cov, b["v1"], b["s"]),
            "i_v2_s": gaussian_mi(cov, b["v2"], b["s"]),
            # what v1 knows about s beyond v2 (0 without view noise); I(v1;t1) is infinite (A1 is invertible)
            "i_v1_s_given_v2": gaussian_conditional_mi(cov, b["v1"], b["s"], b["v2"]) if self.noise_std > 0 else 0.0,
            "i_v2_t1": 0.0,  # t1 lives in n1, which v2 never sees
        }
        return out

    def exact_information(self, encoder1: LinearGaussianEncoder, encoder2: LinearGaussianEncoder | None = None) -> dict:
        """Exact nats for z1 = enc1(v1) (and z2 = enc2(v2) when given).

        Keys: ``superfluous_1`` = I(z1;v1|v2) (what z1 knows about its own view beyond v2), ``i_z1_s``,
        ``i_z1_t1``, ``i_z1_n1``, ``i_z1_v1``, ``i_z1_v2``; with encoder2 also ``i_z1_z2``, ``superfluous_2`` =
        I(z2;v2|v1), ``i_z2_s``, ``i_z1_s_given_z2``.  Deterministic encoders (zero noise) give inf for the
        quantities that are infinite.
        """
        cov, b = self.joint_covariance(encoder1, encoder2)
        out = {
            "superfluous_1": gaussian_conditional_mi(cov, b["z1"], b["v1"], b["v2"]),
            "i_z1_s": gaussian_mi(cov, b["z1"], b["s"]),
            "i_z1_t1": gaussian_mi(cov, b["z1"], b["t1"]),
            "i_z1_n1": gaussian_mi(cov, b["z1"], b["n1"]),
            "i_z1_v1": gaussian_mi(cov, b["z1"], b["v1"]),
            "i_z1_v2": gaussian_mi(cov, b["z1"], b["v2"]),
        }
        if encoder2 is not None:
            out.update({
                "i_z1_z2": gaussian_mi(cov, b["z1"], b["z2"]),
                "superfluous_2": gaussian_conditional_mi(cov, b["z2"], b["v2"], b["v1"]),
                "i_z2_s": gaussian_mi(cov, b["z2"], b["s"]),
                "i_z1_s_given_z2": gaussian_conditional_mi(cov, b["z1"], b["s"], b["z2"]),
            })
        return out

    def expected_kl(self, encoder1: LinearGaussianEncoder, encoder2: LinearGaussianEncoder) -> float:
        """E_{v1,v2} KL( p(z1|v1) || q(z|v2) ) exactly, for p = encoder1 and q = encoder2 (any linear-Gaussian q,
        full noise covariance allowed): the population value of SuperInfo's ``kl`` conditional bound.

        For every q that depends on v2 alone this is >= I(z1;v1|v2); the gap is E_{v2} KL(p(z1|v2) || q(.|v2)).
        """
        self._check_encoder(encoder1, "encoder1")
        self._check_encoder(encoder2, "encoder2")
        if encoder1.z_dim != encoder2.z_dim:
            raise ValueError(f"encoder1 and encoder2 must share z_dim, got {encoder1.z_dim} and {encoder2.z_dim}")
        delta = encoder1.weight @ self._loadings["v1"] - encoder2.weight @ self._loadings["v2"]
        return _expected_kl(encoder1.noise_cov, encoder2.noise_cov, delta @ delta.T, encoder1.bias - encoder2.bias)

    def club_value(self, encoder: LinearGaussianEncoder, view: int = 1) -> float:
        """The CLUB bound's population value for I(v;z) with the encoder's own density as q(z|v):
        E_{p(v,z)} log p(z|v) - E_{p(v)p(z)} log p(z|v) = tr(noise_cov^-1 W S_v W^T)  (>= I(v;z))."""
        self._check_encoder(encoder, "encoder")
        if view not in (1, 2):
            raise ValueError(f"view must be 1 or 2, got {view!r}")
        lw = encoder.weight @ self._loadings[f"v{view}"]
        signal = lw @ lw.T
        return float(np.trace(np.linalg.solve(encoder.noise_cov, signal)))

    def true_conditional_given_v2(self, encoder1: LinearGaussianEncoder) -> LinearGaussianEncoder:
        """p(z1 | v2) for z1 = enc1(v1), as a linear-Gaussian encoder of v2 (full covariance): the q that makes the
        KL bound tight."""
        cov, b = self.joint_covariance(encoder1)
        s_zv = cov[np.ix_(b["z1"], b["v2"])]
        s_vv = cov[np.ix_(b["v2"], b["v2"])]
        gain = np.linalg.solve(s_vv, s_zv.T).T
        cond = cov[np.ix_(b["z1"], b["z1"])] - gain @ s_zv.T
        return LinearGaussianEncoder.make(gain, encoder1.bias, noise_cov=0.5 * (cond + cond.T))

    def bayes_accuracy(self, encoder: LinearGaussianEncoder, task: str = "shared", view: int = 1,
                       include_noise: bool = True) -> float:
        """Accuracy of the best possible classifier of the task label from the features z = enc(v_view) (with its
        noise) or its mean (``include_noise=False``).  Jointly Gaussian score a and features f: the Bayes rule is
        sign(E[a|f]) and its accuracy is 1 - arccos(r)/pi with r = corr(a, E[a|f])."""
        if task not in ("shared", "t1"):
            raise ValueError(f"task must be 'shared' or 't1', got {task!r}")
        if view not in (1, 2):
            raise ValueError(f"view must be 1 or 2, got {view!r}")
        self._check_encoder(encoder, "encoder")
        score = self._loadings[f"{task}_score"]
        feats = encoder.weight @ self._loadings[f"v{view}"]
        f_cov = feats @ feats.T + (encoder.noise_cov if include_noise else 0.0)
        cross = feats @ score.T  # [k, 1]
        explained = (cross.T @ np.linalg.pinv(f_cov, hermitian=True) @ cross).item()
        r = math.sqrt(min(max(explained / (score @ score.T).item(), 0.0), 1.0))
        return 1.0 - math.acos(r) / math.pi

    # -- sampling -----------------------------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> MultiViewSample:
        n = _check_int(n, "n", 1)
        xi = torch.randn(n, self.source_dim, generator=generator, dtype=torch.float64)
        parts = {name: xi @ torch.from_numpy(self._loadings[name]).T
                 for name in ("s", "e1", "e2", "n1", "n2", "t1", "v1", "v2", "shared_score", "t1_score")}
        v1, v2 = self._views(parts)
        return MultiViewSample(
            v1=v1.to(dtype), v2=v2.to(dtype), s=parts["s"].to(dtype), e1=parts["e1"].to(dtype),
            e2=parts["e2"].to(dtype), n1=parts["n1"].to(dtype), n2=parts["n2"].to(dtype), t1=parts["t1"].to(dtype),
            shared_label=(parts["shared_score"][:, 0] > 0).long(), t1_label=(parts["t1_score"][:, 0] > 0).long())

    def _views(self, parts):
        return parts["v1"], parts["v2"]

    def __repr__(self):
        return (f"{type(self).__name__}(shared_dim={self.shared_dim}, nuisance_dim={self.nuisance_dim}, "
                f"t1_dim={self.t1_dim}, noise_std={self.noise_std:g}, seed={self.seed})")


class NonlinearMultiViewWorld(MultiViewWorld):
    """The same latents and linear views, then an invertible non-linear mixing per view:
    v_k = B_k g(scale * u_k) / scale, u_k = A_k [s + e_k; n_k] the linear view, g elementwise invertible
    (``asinh`` default; ``cubic``/``half-cube`` too), B_k random invertible.

    v_k is an invertible function of u_k, so every quantity between views and latents (``view_information``)
    equals the linear world's, and so does any quantity of an encoder applied to ``linearize(v_k)``.  For a
    trained non-linear encoder there is no closed form: only the latent-level truth is exact.
    """

    def __init__(self, shared_dim: int = 4, nuisance_dim: int = 6, t1_dim: int = 2, noise_std: float = 0.3,
                 condition: float = 4.0, seed: int = 0, nonlinearity: str = "asinh", scale: float = 2.0):
        super().__init__(shared_dim, nuisance_dim, t1_dim, noise_std, condition, seed)
        if nonlinearity not in ("asinh", "cubic", "half-cube"):
            raise ValueError(f"nonlinearity must be one of asinh, cubic, half-cube, got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.transform = make_transform(nonlinearity, self.view_dim)
        self.scale = _check_nonneg(scale, "scale", positive=True)
        rng = np.random.default_rng([self.seed, 1])
        self.outer_mixing1 = random_invertible_matrix(self.view_dim, rng, self.condition)
        self.outer_mixing2 = random_invertible_matrix(self.view_dim, rng, self.condition)

    def _outer(self, view):
        return torch.from_numpy(self.outer_mixing1 if view == 1 else self.outer_mixing2)

    def nonlinear_view(self, u: torch.Tensor, view: int) -> torch.Tensor:
        """Map a linear view u_k to the observed v_k."""
        g = self.transform.forward(u.double() * self.scale) / self.scale
        return (g @ self._outer(view).T).to(u.dtype)

    def linearize(self, v: torch.Tensor, view: int) -> torch.Tensor:
        """The exact inverse of ``nonlinear_view``: recovers the linear (Gaussian) view u_k from v_k."""
        if view not in (1, 2):
            raise ValueError(f"view must be 1 or 2, got {view!r}")
        g = torch.linalg.solve(self._outer(view), v.double().T).T
        return (self.transform.inverse(g * self.scale) / self.scale).to(v.dtype)

    def _views(self, parts):
        return self.nonlinear_view(parts["v1"], 1), self.nonlinear_view(parts["v2"], 2)

    def __repr__(self):
        return super().__repr__()[:-1] + f", nonlinearity={self.nonlinearity!r})"


# ---------------------------------------------------------------------------------------------------------------
# Conditional Gaussian task
# ---------------------------------------------------------------------------------------------------------------
class ConditionalGaussian:
    """X, Y, Z jointly Gaussian (any dims) with a chosen conditional MI I(X;Y|Z) = ``cmi`` nats.

    Construction: z ~ N(0, I); (a, b) with per-coordinate correlation rho on the first min(dim_x, dim_y)
    coordinates, independent of z; x = Mx a + z_strength Bx z, y = My b + z_strength By z with random invertible
    Mx, My and random Bx, By.  I(X;Y|Z) = I(a;b) = cmi, whatever the mixing, while I(X;Y) (``mi_xy``) differs
    from it in either direction (conditioning on a common cause can add or remove dependence): the task separates
    conditional from plain dependence.  ``cmi=0`` gives X and Y dependent yet conditionally independent.  ``covariance`` and ``blocks``
    give the joint covariance of [x, y, z] for ``gaussian_conditional_mi``.
    """

    def __init__(self, dim_x: int, dim_y: int, dim_z: int, cmi: float, z_strength: float = 1.0, seed: int = 0):
        self.dim_x = _check_int(dim_x, "dim_x", 1)
        self.dim_y = _check_int(dim_y, "dim_y", 1)
        self.dim_z = _check_int(dim_z, "dim_z", 1)
        self.cmi = _check_mi(cmi)
        self.z_strength = _check_nonneg(z_strength, "z_strength")
        self.seed = _check_int(seed, "seed", 0)
        k = min(self.dim_x, self.dim_y)
        self.rho = rho_for_mi(k, self.cmi) if self.cmi > 0 else 0.0
        rng = np.random.default_rng(self.seed)
        self.mix_x = random_invertible_matrix(self.dim_x, rng)
        self.mix_y = random_invertible_matrix(self.dim_y, rng)
        self.z_to_x = self.z_strength * rng.standard_normal((self.dim_x, self.dim_z)) / math.sqrt(self.dim_z)
        self.z_to_y = self.z_strength * rng.standard_normal((self.dim_y, self.dim_z)) / math.sqrt(self.dim_z)
        # source [a, b_indep, z]: b = rho a[:k] (padded) + sqrt(1 - rho^2) b_indep on the first k coordinates
        dx, dy, dz = self.dim_x, self.dim_y, self.dim_z
        la = np.hstack([np.eye(dx), np.zeros((dx, dy + dz))])
        couple = np.zeros((dy, dx))
        couple[:k, :k] = self.rho * np.eye(k)
        indep = np.eye(dy)
        indep[:k, :k] *= math.sqrt(1.0 - self.rho ** 2)
        lb = np.hstack([couple, indep, np.zeros((dy, dz))])
        lz = np.hstack([np.zeros((dz, dx + dy)), np.eye(dz)])
        self._loadings = np.vstack([self.mix_x @ la + self.z_to_x @ lz, self.mix_y @ lb + self.z_to_y @ lz, lz])
        self.covariance = self._loadings @ self._loadings.T
        self.blocks = {"x": np.arange(dx), "y": np.arange(dx, dx + dy), "z": np.arange(dx + dy, dx + dy + dz)}
        self.name = f"conditional-gaussian(dx={dx}, dy={dy}, dz={dz}, cmi={self.cmi:g})"

    @property
    def mi_xy(self) -> float:
        """I(X;Y) without conditioning (closed form)."""
        return gaussian_mi(self.covariance, self.blocks["x"], self.blocks["y"])

    @property
    def cmi_closed_form(self) -> float:
        """I(X;Y|Z) recomputed from the covariance (equals ``cmi``)."""
        return gaussian_conditional_mi(self.covariance, self.blocks["x"], self.blocks["y"], self.blocks["z"])

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32):
        n = _check_int(n, "n", 1)
        src = torch.randn(n, self._loadings.shape[1], generator=generator, dtype=torch.float64)
        joint = src @ torch.from_numpy(self._loadings).T
        bx, by, bz = (self.blocks[k] for k in ("x", "y", "z"))
        return (joint[:, bx[0]:bx[-1] + 1].to(dtype), joint[:, by[0]:by[-1] + 1].to(dtype),
                joint[:, bz[0]:bz[-1] + 1].to(dtype))

    def conditional(self, target: str, given: tuple[str, ...]):
        """p(target | given) as ``(gain, cov)``: mean = gain @ concat(given), covariance ``cov`` (zero means)."""
        for name in (target, *given):
            if name not in self.blocks:
                raise ValueError(f"unknown variable {name!r}; valid: x, y, z")
        t = self.blocks[target]
        g = np.concatenate([self.blocks[n] for n in given])
        c = self.covariance
        gain = np.linalg.solve(c[np.ix_(g, g)], c[np.ix_(g, t)]).T
        cov = c[np.ix_(t, t)] - gain @ c[np.ix_(g, t)]
        return gain, 0.5 * (cov + cov.T)

    def log_density_ratio(self, x, y, z) -> np.ndarray:
        """log p(x, y | z) - log p(x | z) - log p(y | z) per row: its mean is I(X;Y|Z) (the pointwise CMI)."""
        x, y, z = (np.asarray(t, dtype=np.float64) for t in (x, y, z))

        def cond_logpdf(target, tv, given, gv):
            gain, cov = self.conditional(target, given)
            resid = tv - gv @ gain.T
            return stats.multivariate_normal(np.zeros(cov.shape[0]), cov).logpdf(resid).reshape(-1)

        xy = np.concatenate([x, y], 1)
        c = self.covariance
        bxy = np.concatenate([self.blocks["x"], self.blocks["y"]])
        bz = self.blocks["z"]
        gain = np.linalg.solve(c[np.ix_(bz, bz)], c[np.ix_(bz, bxy)]).T
        cov = c[np.ix_(bxy, bxy)] - gain @ c[np.ix_(bz, bxy)]
        joint = stats.multivariate_normal(np.zeros(len(bxy)), 0.5 * (cov + cov.T)).logpdf(xy - z @ gain.T).reshape(-1)
        return joint - cond_logpdf("x", x, ("z",), z) - cond_logpdf("y", y, ("z",), z)

    def __repr__(self):
        return self.name
