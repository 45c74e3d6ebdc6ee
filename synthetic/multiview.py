"""Multi-view worlds whose information quantities are exact.

Everything here is jointly Gaussian (or an invertible function of something jointly Gaussian), so every mutual and
conditional mutual information is a closed form of ``synthetic.gaussian`` (log-determinants of covariance blocks).

* ``MultiViewWorld``: shared latent s, view-specific n1, n2, the non-shared task-relevant t1 = n1[:t1_dim];
  v1 = A1 [s + e1; n1], v2 = A2 [s + e2; n2] with random invertible A.  For any linear-Gaussian encoder
  z = W v + b + noise it gives I(z1;z2), the superfluous I(z1;v1|v2), I(z1;s), I(z1;t1), the expected KL bound of
  the SuperInfo objective, and the Bayes accuracy of the two probe tasks, all exactly.
* ``EntangledMultiViewWorld``: t1 rides on the shared directions (it is view 1's own deviation e1 on them), so an
  encoder cannot keep the shared signal without keeping some t1: where the paper's "tuning lambda keeps part of
  the non-shared task-relevant information" can show.
* ``NonlinearMultiViewWorld``: views pushed through an invertible non-linear mixing v = B g(A u); every quantity
  between views and latents is unchanged (invariance of MI under invertible maps of one side).

Samples come from ``torch`` generators (like ``synthetic.tasks``); covariance maths is numpy float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mi_toolkit.validation import check_int, check_number

from .gaussian import _check_cov, expected_gaussian_kl, gaussian_conditional_mi, gaussian_mi, random_invertible_matrix
from .transforms import make_transform
from mi_toolkit.errors import ArgumentError, ArgumentTypeError

__all__ = ["EntangledMultiViewWorld", "LinearGaussianEncoder", "MultiViewSample", "MultiViewWorld",
           "NonlinearMultiViewWorld"]


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
            raise ArgumentError(f"weight must be a finite [k, d] matrix, got shape {weight.shape}")
        k = weight.shape[0]
        bias = np.zeros(k) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
        if bias.shape != (k,) or not np.all(np.isfinite(bias)):
            raise ArgumentError(f"bias must be a finite vector of length {k}, got shape {bias.shape}")
        if (noise_std is None) == (noise_cov is None):
            raise ArgumentError("give exactly one of noise_std (scalar or per-dimension) or noise_cov ([k, k])")
        if noise_std is not None:
            std = np.broadcast_to(np.asarray(noise_std, dtype=np.float64), (k,)).copy()
            if not np.all(np.isfinite(std)) or np.any(std < 0):
                raise ArgumentError(f"noise_std must be finite and >= 0, got {std.tolist()}")
            noise_cov = np.diag(std ** 2)
        noise_cov = _check_cov(noise_cov, "noise_cov")
        if noise_cov.shape != (k, k):
            raise ArgumentError(f"noise_cov must be [{k}, {k}], got {noise_cov.shape}")
        if float(np.linalg.eigvalsh(noise_cov).min()) < -1e-10 * max(1.0, float(np.abs(noise_cov).max())):
            raise ArgumentError("noise_cov must be positive semi-definite")
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
        self.shared_dim = check_int(shared_dim, "shared_dim", 1)
        self.nuisance_dim = check_int(nuisance_dim, "nuisance_dim", 1)
        self.t1_dim = check_int(t1_dim, "t1_dim", 1)
        if self.t1_dim > self.nuisance_dim:
            raise ArgumentError(f"t1_dim must be <= nuisance_dim ({self.nuisance_dim}): t1 is a slice of n1, got {t1_dim}")
        self.noise_std = check_number(noise_std, "noise_std", nonnegative=True)
        self.condition = check_number(condition, "condition", positive=True)
        self.seed = check_int(seed, "seed", 0)
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
            raise ArgumentError(f"unknown variable {name!r}; valid: {', '.join(self._loadings)}")
        return self._loadings[name]

    def view_covariance(self) -> np.ndarray:
        """Covariance of [v1; v2]."""
        L = np.vstack([self._loadings["v1"], self._loadings["v2"]])
        return L @ L.T

    def _check_encoder(self, enc, name):
        if not isinstance(enc, LinearGaussianEncoder):
            raise ArgumentTypeError(f"{name} must be a LinearGaussianEncoder, got {type(enc).__name__}")
        if enc.in_dim != self.view_dim:
            raise ArgumentError(f"{name} takes {enc.in_dim} inputs but the views have {self.view_dim} dims")
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
            raise ArgumentError(f"encoder1 and encoder2 must share z_dim, got {encoder1.z_dim} and {encoder2.z_dim}")
        delta = encoder1.weight @ self._loadings["v1"] - encoder2.weight @ self._loadings["v2"]
        return expected_gaussian_kl(encoder1.noise_cov, encoder2.noise_cov, delta @ delta.T, encoder1.bias - encoder2.bias)

    def club_value(self, encoder: LinearGaussianEncoder, view: int = 1) -> float:
        """The CLUB bound's population value for I(v;z) with the encoder's own density as q(z|v):
        E_{p(v,z)} log p(z|v) - E_{p(v)p(z)} log p(z|v) = tr(noise_cov^-1 W S_v W^T)  (>= I(v;z))."""
        self._check_encoder(encoder, "encoder")
        if view not in (1, 2):
            raise ArgumentError(f"view must be 1 or 2, got {view!r}")
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
            raise ArgumentError(f"task must be 'shared' or 't1', got {task!r}")
        if view not in (1, 2):
            raise ArgumentError(f"view must be 1 or 2, got {view!r}")
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
        n = check_int(n, "n", 1)
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
            raise ArgumentError(f"nonlinearity must be one of asinh, cubic, half-cube, got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.transform = make_transform(nonlinearity, self.view_dim)
        self.scale = check_number(scale, "scale", positive=True)
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
            raise ArgumentError(f"view must be 1 or 2, got {view!r}")
        g = torch.linalg.solve(self._outer(view), v.double().T).T
        return (self.transform.inverse(g * self.scale) / self.scale).to(v.dtype)

    def _views(self, parts):
        return self.nonlinear_view(parts["v1"], 1), self.nonlinear_view(parts["v2"], 2)

    def __repr__(self):
        return super().__repr__()[:-1] + f", nonlinearity={self.nonlinearity!r})"


class EntangledMultiViewWorld(MultiViewWorld):
    """``MultiViewWorld`` whose non-shared task-relevant part lies on the shared directions.

    View 1 sees the shared part as s + e1 (as before), but the first ``t1_dim`` coordinates of e1 now have std
    ``t1_std`` and *are* t1 (standardised): t1 = e1[:t1_dim] / t1_std.  v2 never sees e1, so t1 is non-shared
    (I(v2;t1) = 0), yet every direction of v1 that carries s carries t1 too: keeping the shared signal costs keeping
    some t1, and discarding superfluous information costs some t1.  The nuisance n1 stays pure nuisance.
    """

    def __init__(self, shared_dim: int = 4, nuisance_dim: int = 6, t1_dim: int = 2, noise_std: float = 0.3,
                 t1_std: float = 0.6, condition: float = 4.0, seed: int = 0):
        self.t1_std = check_number(t1_std, "t1_std", positive=True)
        if check_int(t1_dim, "t1_dim", 1) > check_int(shared_dim, "shared_dim", 1):
            raise ArgumentError(f"t1_dim must be <= shared_dim ({shared_dim}): t1 lies on the shared directions, "
                             f"got {t1_dim}")
        super().__init__(shared_dim, nuisance_dim, t1_dim, noise_std, condition, seed)

    def _build_loadings(self):
        super()._build_loadings()
        L, k, ds = self._loadings, self.t1_dim, self.shared_dim
        e1 = np.zeros((ds, self.source_dim))
        e1[:, ds:2 * ds] = np.diag([self.t1_std] * k + [self.noise_std] * (ds - k))
        L["e1"] = e1
        L["t1"] = e1[:k] / self.t1_std
        L["v1"] = self.mixing1 @ np.vstack([L["s"] + L["e1"], L["n1"]])
        L["t1_score"] = self.t1_direction[None, :] @ L["t1"]

    def view_information(self) -> dict:
        out = super().view_information()
        cov, b = self.joint_covariance()
        out["i_v1_t1"] = gaussian_mi(cov, b["v1"], b["t1"])      # finite here: t1 is mixed with s
        out["i_v1_s_given_v2"] = gaussian_conditional_mi(cov, b["v1"], b["s"], b["v2"])
        return out

    def __repr__(self):
        return super().__repr__()[:-1] + f", t1_std={self.t1_std:g})"
