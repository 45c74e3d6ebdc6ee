"""Synthetic tasks that carry their true MI (and, where known, H(Y) and the true conditional density).

Every task satisfies the ``MITask`` protocol: it draws paired samples ``x, y = task.sample(n, generator, dtype)`` of
shape [n, dim_x], [n, dim_y] and knows ``task.mi`` in nats, so tests and plots never recompute the truth by hand.
The conditional task (``ConditionalGaussian``) satisfies ``ConditionalMITask``: ``x, y, z = task.sample(...)`` and
``task.cmi`` = I(X;Y|Z).

* Tasks: ``CorrelatedGaussian``, ``Multinormal`` (dense / sparse, any dims), ``StudentT`` (any dims, any dof),
  ``AdditiveNoise`` (1-D); ``ConditionalGaussian``.  ``synthetic.suite`` names the standard suite built from them.
* ``Transformed(task, transform_x, transform_y)`` applies MI-preserving transforms (``synthetic.transforms``) to
  any task's samples and keeps its MI.
* ``Staircase``: the benchmark's schedule of MI levels.
"""
from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from scipy import special, stats

from mi_toolkit.errors import ArgumentError
from mi_toolkit.validation import check_int, check_number

from .gaussian import LOG_2PI, gaussian_conditional_mi, gaussian_mi, random_invertible_matrix, rho_for_mi
from .transforms import Transform, make_transform

__all__ = [
    "MITask", "ConditionalMITask", "Transformed", "CorrelatedGaussian", "StudentT", "ConditionalGaussian", "Staircase",
    "AdditiveNoise", "Multinormal", "student_t_mi_correction",
]


# ---------------------------------------------------------------------------------------------------------------
# The task protocols
# ---------------------------------------------------------------------------------------------------------------
@runtime_checkable
class MITask(Protocol):
    """Paired samples with a known I(X;Y)."""

    dim_x: int
    dim_y: int
    mi: float       # the true I(X;Y), nats
    name: str

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x [n, dim_x], y [n, dim_y])``, reproducible for a seeded ``generator``."""
        ...


@runtime_checkable
class ConditionalMITask(Protocol):
    """Triples with a known conditional I(X;Y|Z)."""

    dim_x: int
    dim_y: int
    dim_z: int
    cmi: float      # the true I(X;Y|Z), nats
    name: str

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x [n, dim_x], y [n, dim_y], z [n, dim_z])``."""
        ...


class Transformed:
    """Any ``MITask`` with invertible transforms applied to its samples: x -> transform_x(x), y -> transform_y(y).

    Invertible maps of either side leave I(X;Y) unchanged, so ``mi`` is the task's.  The transforms are
    ``Transform`` instances or names of ``TRANSFORMS`` (``rotation`` is drawn for the side's dimension with
    ``seed``); None is the identity.  ``sample`` draws the task's samples with the same generator and transforms
    them, so it gives exactly ``transform(task.sample(...))``.  What depends on the marginals (H(Y), densities) is
    not carried over; the wrapped task stays reachable as ``task``.
    """

    def __init__(self, task: MITask, transform_x: str | Transform | None = None,
                 transform_y: str | Transform | None = None, seed: int = 0):
        if not isinstance(task, MITask):
            raise TypeError(f"task must be an MITask (dim_x, dim_y, mi, name and sample(n, generator, dtype)), "
                            f"got {type(task).__name__}")
        self.task = task
        self.transform_x = make_transform(transform_x, task.dim_x, seed)
        self.transform_y = make_transform(transform_y, task.dim_y, seed)
        self.dim_x = self.transform_x.out_dim(task.dim_x)
        self.dim_y = self.transform_y.out_dim(task.dim_y)
        self.mi = task.mi
        self.mi_error = getattr(task, "mi_error", 0.0)
        sides = [f"{side}: {t.name}" for side, t in (("x", self.transform_x), ("y", self.transform_y))
                 if t.name != "identity"]
        self.name = f"{task.name} [{', '.join(sides)}]" if sides else task.name

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32):
        x, y = self.task.sample(n, generator, dtype)
        return self.transform_x.forward(x), self.transform_y.forward(y)

    def untransform(self, x: torch.Tensor, y: torch.Tensor):
        """The wrapped task's samples back from transformed ones."""
        return self.transform_x.inverse(x), self.transform_y.inverse(y)

    def __repr__(self):
        return self.name


# ---------------------------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------------------------
class CorrelatedGaussian:
    """x, y0 ~ N(0, I_dim) with corr(x_k, y0_k) = rho on each coordinate; y = transform(y0).

    True MI = -(dim/2) log(1 - rho^2), whatever the (invertible) transform.  When the transform knows its Jacobian
    it knows H(Y) and the true conditional log p(y|x), so the optimal critic and the exact CLUB value can be written
    down; otherwise (the Swiss roll, which embeds y in 3-D; a ``Transform`` without a Jacobian) those raise
    ``JacobianUnavailableError``.  ``dim_y`` is the transform's output width (3 for the Swiss roll).  Its samples
    equal those of ``Transformed(CorrelatedGaussian(dim, mi), transform_y=transform, seed=seed)``, which knows none
    of that.
    """

    def __init__(self, dim: int, mi: float, transform: str | Transform | None = None, seed: int = 0):
        self.dim = self.dim_x = check_int(dim, "dim")
        self.mi = check_number(mi, "mi", nonnegative=True)
        self.rho = rho_for_mi(self.dim, self.mi)
        self.transform = make_transform(transform, self.dim, seed)
        self.dim_y = self.transform.out_dim(self.dim)
        self.name = f"gaussian(dim={self.dim}, mi={self.mi:g}" + (
            f", {self.transform.name})" if self.transform.name != "identity" else ")")

    @property
    def entropy_y(self) -> float:
        """H(Y) in nats: N(0, I_dim)'s entropy plus the transform's ``entropy_shift``."""
        return 0.5 * self.dim * (1.0 + LOG_2PI) + self.transform.entropy_shift(self.dim)

    @property
    def club_with_true_conditional(self) -> float:
        """CLUB's value with q = p(y|x): E log p(y|x) - E_{x}E_{y'} log p(y'|x) = dim rho^2 / (1 - rho^2)."""
        return self.dim * self.rho ** 2 / (1.0 - self.rho ** 2)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32):
        x = torch.randn(n, self.dim, generator=generator, dtype=dtype)
        noise = torch.randn(n, self.dim, generator=generator, dtype=dtype)
        y0 = self.rho * x + math.sqrt(1.0 - self.rho ** 2) * noise
        return x, self.transform.forward(y0)

    def conditional_log_density_matrix(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """M[i, j] = log p(y_j | x_i), Jacobian of the transform included."""
        y0 = self.transform.inverse(y)
        var = 1.0 - self.rho ** 2
        sq = (y0 * y0).sum(1)[None, :] - 2 * self.rho * (x @ y0.T) + self.rho ** 2 * (x * x).sum(1)[:, None]
        log_p0 = -0.5 * (sq / var + self.dim * (math.log(var) + LOG_2PI))
        return log_p0 - self.transform.log_abs_det_jacobian(y0)[None, :]

    def log_density_ratio_matrix(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """M[i, j] = log p(y_j | x_i) / p(y_j): the optimal critic of InfoNCE, DV, MINE, JS and SMILE
        (NWJ's optimum is this plus 1).  The transform's Jacobian cancels."""
        y0 = self.transform.inverse(y)
        log_marginal = -0.5 * ((y0 * y0).sum(1) + self.dim * LOG_2PI) - self.transform.log_abs_det_jacobian(y0)
        return self.conditional_log_density_matrix(x, y) - log_marginal[None, :]

    def __repr__(self):
        return self.name


class AdditiveNoise:
    """1-D additive noise (Czyz et al. 2023): x ~ U(0, 1), y = x + n with n ~ U(-eps, eps) independent.

    Closed form: I = h(Y) - h(N), Y's density the trapezoid U(0, 1) * U(-eps, eps).  With widths a <= b of the two
    uniforms, h(Y) = log b + a / (2b); so I = eps - log(2 eps) for eps <= 1/2 and I = 1 / (4 eps) for eps >= 1/2.
    """

    def __init__(self, eps: float):
        self.eps = check_number(eps, "eps", positive=True)
        self.dim_x = self.dim_y = 1
        self.mi = self.eps - math.log(2 * self.eps) if self.eps <= 0.5 else 1.0 / (4.0 * self.eps)
        self.mi_error = 0.0
        self.name = f"additive-noise(eps={self.eps:g})"

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32):
        x = torch.rand(n, 1, generator=generator, dtype=torch.float64)
        noise = (2.0 * torch.rand(n, 1, generator=generator, dtype=torch.float64) - 1.0) * self.eps
        return x.to(dtype), (x + noise).to(dtype)

    def __repr__(self):
        return self.name


class Multinormal:
    """Jointly Gaussian x [dim_x], y [dim_y] (dims independent) with I(X;Y) = ``mi`` nats.

    Built from canonical pairs: a ~ N(0, I_dx), b ~ N(0, I_dy), with corr(a_k, b_k) = rho on the first ``pairs``
    coordinates (rho solved for ``mi``), I = -(pairs/2) log(1 - rho^2).  ``kind="dense"``: all min(dim_x, dim_y)
    pairs interact, and x = Mx a, y = My b with random invertible Mx, My (every coordinate of x depends on every
    coordinate of y; MI unchanged).  ``kind="sparse"``: only ``pairs`` (default 2) coordinate pairs interact and no
    mixing, the rest is independent noise.  ``covariance`` is the joint covariance of [x, y] (closed-form check:
    ``synthetic.gaussian_mi``).
    """

    def __init__(self, dim_x: int, dim_y: int, mi: float, kind: str = "dense", pairs: int | None = None,
                 seed: int = 0):
        self.dim_x, self.dim_y = check_int(dim_x, "dim_x"), check_int(dim_y, "dim_y")
        self.mi = check_number(mi, "mi", nonnegative=True)
        self.mi_error = 0.0
        if kind not in ("dense", "sparse"):
            raise ArgumentError(f"kind must be 'dense' or 'sparse', got {kind!r}")
        self.kind = kind
        k = min(self.dim_x, self.dim_y)
        self.pairs = check_int(pairs if pairs is not None else (k if kind == "dense" else min(2, k)), "pairs")
        if self.pairs > k:
            raise ArgumentError(f"pairs must be <= min(dim_x, dim_y) = {k}, got {self.pairs}")
        self.rho = rho_for_mi(self.pairs, self.mi)
        rng = np.random.default_rng(seed)
        if kind == "dense":
            self.mix_x = random_invertible_matrix(self.dim_x, rng)
            self.mix_y = random_invertible_matrix(self.dim_y, rng)
        else:
            self.mix_x, self.mix_y = np.eye(self.dim_x), np.eye(self.dim_y)
        cross = np.zeros((self.dim_x, self.dim_y))
        cross[:self.pairs, :self.pairs] = self.rho * np.eye(self.pairs)
        self.covariance = np.block([[self.mix_x @ self.mix_x.T, self.mix_x @ cross @ self.mix_y.T],
                                    [self.mix_y @ cross.T @ self.mix_x.T, self.mix_y @ self.mix_y.T]])
        self.name = f"{kind}-gaussian({self.dim_x}x{self.dim_y}, mi={self.mi:g})"

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32):
        a = torch.randn(n, self.dim_x, generator=generator, dtype=torch.float64)
        b = torch.randn(n, self.dim_y, generator=generator, dtype=torch.float64)
        k = self.pairs
        b = torch.cat([self.rho * a[:, :k] + math.sqrt(1.0 - self.rho ** 2) * b[:, :k], b[:, k:]], 1)
        x = a @ torch.from_numpy(self.mix_x).T
        y = b @ torch.from_numpy(self.mix_y).T
        return x.to(dtype), y.to(dtype)

    def __repr__(self):
        return self.name


def _t_entropy_term(dof: float, d: int) -> float:
    """The part of a d-dim Student-t entropy that does not depend on the scale matrix."""
    return (0.5 * d * math.log(dof * math.pi) + special.gammaln(dof / 2) - special.gammaln((dof + d) / 2)
            + 0.5 * (dof + d) * (special.digamma((dof + d) / 2) - special.digamma(dof / 2)))


def student_t_mi_correction(dof: float, dim_x: int, dim_y: int) -> float:
    """MI of a multivariate t minus the MI of the Gaussian with the same scale matrix (always > 0)."""
    return _t_entropy_term(dof, dim_x) + _t_entropy_term(dof, dim_y) - _t_entropy_term(dof, dim_x + dim_y)


class StudentT:
    """(x, y) jointly multivariate Student-t with ``dof`` degrees of freedom and the correlated-Gaussian scale matrix
    (per-coordinate correlation rho on the first min(dim_x, dim_y) coordinates; ``dim_y`` defaults to ``dim``).
    Closed form: I = -(k/2) log(1 - rho^2) + c(dof, dim_x, dim_y) where c > 0 comes from the shared heavy tail; so
    even rho = 0 carries information.  Give ``mi`` (solved for rho) or ``rho``.
    """

    def __init__(self, dim: int, dof: float, mi: float | None = None, rho: float | None = None,
                 dim_y: int | None = None):
        self.dim = self.dim_x = check_int(dim, "dim")
        self.dim_y = self.dim if dim_y is None else check_int(dim_y, "dim_y")
        self.pairs = min(self.dim_x, self.dim_y)
        self.dof = check_number(dof, "dof", positive=True)
        self.correction = student_t_mi_correction(self.dof, self.dim_x, self.dim_y)
        self.mi_error = 0.0
        if (mi is None) == (rho is None):
            raise ArgumentError("give exactly one of mi (nats) or rho (per-coordinate correlation)")
        if mi is not None:
            mi = check_number(mi, "mi", nonnegative=True)
            if mi < self.correction:
                raise ArgumentError(f"mi must be >= {self.correction:.4f} nats for dim={dim}, dof={dof:g} "
                                 f"(the heavy tail alone carries that much), got {mi}")
            self.rho = rho_for_mi(self.pairs, mi - self.correction)
        else:
            if not (isinstance(rho, (int, float)) and 0 <= rho < 1):
                raise ArgumentError(f"rho must be in [0, 1), got {rho!r}")
            self.rho = float(rho)
        self.mi = -0.5 * self.pairs * math.log1p(-self.rho ** 2) + self.correction
        dims = f"dim={self.dim}" if self.dim_y == self.dim_x else f"{self.dim_x}x{self.dim_y}"
        self.name = f"student-t({dims}, dof={self.dof:g}, mi={self.mi:.3g})"

    @property
    def entropy_y(self) -> float:
        """Y alone is a dim_y-variate t with identity scale, whatever rho."""
        return _t_entropy_term(self.dof, self.dim_y)

    def scale_matrix(self) -> np.ndarray:
        cross = np.zeros((self.dim_x, self.dim_y))
        cross[:self.pairs, :self.pairs] = self.rho * np.eye(self.pairs)
        return np.block([[np.eye(self.dim_x), cross], [cross.T, np.eye(self.dim_y)]])

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32):
        x = torch.randn(n, self.dim_x, generator=generator, dtype=torch.float64)
        noise = torch.randn(n, self.dim_y, generator=generator, dtype=torch.float64)
        k = self.pairs
        y = torch.cat([self.rho * x[:, :k] + math.sqrt(1.0 - self.rho ** 2) * noise[:, :k], noise[:, k:]], 1)
        # a shared chi-square scale: u / dof with u ~ chi2(dof) = Gamma(dof/2, scale 2)
        u = torch._standard_gamma(torch.full((n, 1), self.dof / 2, dtype=torch.float64), generator=generator) * 2.0
        scale = torch.sqrt(self.dof / u)
        return (x * scale).to(dtype), (y * scale).to(dtype)

    def log_density_ratio(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """log p(x, y) - log p(x) - log p(y) per row (exact densities, for plug-in checks)."""
        joint = stats.multivariate_t(loc=np.zeros(self.dim_x + self.dim_y), shape=self.scale_matrix(), df=self.dof)
        marginal_x = stats.multivariate_t(loc=np.zeros(self.dim_x), shape=np.eye(self.dim_x), df=self.dof)
        marginal_y = stats.multivariate_t(loc=np.zeros(self.dim_y), shape=np.eye(self.dim_y), df=self.dof)
        return joint.logpdf(np.concatenate([x, y], 1)) - marginal_x.logpdf(x) - marginal_y.logpdf(y)

    def __repr__(self):
        return self.name


# ---------------------------------------------------------------------------------------------------------------
# The conditional task
# ---------------------------------------------------------------------------------------------------------------
class ConditionalGaussian:
    """X, Y, Z jointly Gaussian (any dims) with a chosen conditional MI I(X;Y|Z) = ``cmi`` nats.

    Construction: z ~ N(0, I); (a, b) with per-coordinate correlation rho on the first min(dim_x, dim_y)
    coordinates, independent of z; x = Mx a + z_strength Bx z, y = My b + z_strength By z with random invertible
    Mx, My and random Bx, By.  I(X;Y|Z) = I(a;b) = cmi, whatever the mixing, while I(X;Y) (``mi_xy``) differs
    from it in either direction (conditioning on a common cause can add or remove dependence): the task separates
    conditional from plain dependence.  ``cmi=0`` gives X and Y dependent yet conditionally independent.  ``covariance`` and ``blocks``
    give the joint covariance of [x, y, z] for ``gaussian_conditional_mi``; ``loadings`` maps the standard-normal source
    to [x, y, z] (``covariance = loadings @ loadings.T``).
    """

    def __init__(self, dim_x: int, dim_y: int, dim_z: int, cmi: float, z_strength: float = 1.0, seed: int = 0):
        self.dim_x = check_int(dim_x, "dim_x", 1)
        self.dim_y = check_int(dim_y, "dim_y", 1)
        self.dim_z = check_int(dim_z, "dim_z", 1)
        self.cmi = check_number(cmi, "cmi", nonnegative=True)
        self.z_strength = check_number(z_strength, "z_strength", nonnegative=True)
        self.seed = check_int(seed, "seed", 0)
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
        self.loadings = np.vstack([self.mix_x @ la + self.z_to_x @ lz, self.mix_y @ lb + self.z_to_y @ lz, lz])
        self.covariance = self.loadings @ self.loadings.T
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
        n = check_int(n, "n", 1)
        src = torch.randn(n, self.loadings.shape[1], generator=generator, dtype=torch.float64)
        joint = src @ torch.from_numpy(self.loadings).T
        bx, by, bz = (self.blocks[k] for k in ("x", "y", "z"))
        return (joint[:, bx[0]:bx[-1] + 1].to(dtype), joint[:, by[0]:by[-1] + 1].to(dtype),
                joint[:, bz[0]:bz[-1] + 1].to(dtype))

    def conditional(self, target: str, given: tuple[str, ...]):
        """p(target | given) as ``(gain, cov)``: mean = gain @ concat(given), covariance ``cov`` (zero means)."""
        for name in (target, *given):
            if name not in self.blocks:
                raise ArgumentError(f"unknown variable {name!r}; valid: x, y, z")
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


# ---------------------------------------------------------------------------------------------------------------
# The benchmark schedule
# ---------------------------------------------------------------------------------------------------------------
class Staircase:
    """The standard benchmark schedule: true MI steps through ``levels``, ``steps_per_level`` training steps each."""

    def __init__(self, levels=(2.0, 4.0, 6.0, 8.0, 10.0), steps_per_level: int = 2000):
        if len(levels) == 0:
            raise ArgumentError("levels must hold at least one MI value")
        self.levels = [check_number(m, "mi", nonnegative=True) for m in levels]
        self.steps_per_level = check_int(steps_per_level, "steps_per_level")

    @property
    def total_steps(self) -> int:
        return len(self.levels) * self.steps_per_level

    def true_mi(self) -> np.ndarray:
        """The true MI at every training step."""
        return np.repeat(self.levels, self.steps_per_level)

    def tasks(self, make_task):
        """Yield (level_index, task) with ``task = make_task(mi)`` for each level."""
        for k, mi in enumerate(self.levels):
            yield k, make_task(mi)
