"""Synthetic tasks that carry their true MI (and, where known, H(Y) and the true conditional density).

Every task draws paired samples ``x, y = task.sample(n, generator)`` of shape [n, dim_x], [n, dim_y] and knows
``task.mi`` in nats, so tests and plots never recompute the truth by hand.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import integrate, special, stats

LOG_2PI = math.log(2 * math.pi)


def _check_dim(dim) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    return int(dim)


def _check_mi(mi) -> float:
    if isinstance(mi, bool) or not isinstance(mi, (int, float, np.floating, np.integer)) or not math.isfinite(mi) or mi < 0:
        raise ValueError(f"mi must be a finite number of nats >= 0, got {mi!r}")
    return float(mi)


def rho_for_mi(dim: int, mi: float) -> float:
    """Per-dimension correlation giving I = -(dim/2) log(1 - rho^2) nats."""
    return math.sqrt(-math.expm1(-2.0 * mi / dim))


# ---------------------------------------------------------------------------------------------------------------
# MI-preserving transforms of y (elementwise and invertible, or orthogonal): they change H(Y), never I(X;Y).
# ---------------------------------------------------------------------------------------------------------------
def _expected_under_normal(fn) -> float:
    """E fn(z), z ~ N(0, 1), by adaptive quadrature."""
    value, _ = integrate.quad(lambda z: fn(z) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi), -np.inf, np.inf,
                              limit=200)
    return value


class Transform:
    name = "identity"

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def log_abs_det_jacobian(self, y0: torch.Tensor) -> torch.Tensor:
        """log |det d forward / d y0| per row, at the untransformed y0."""
        return torch.zeros(y0.shape[0], dtype=y0.dtype, device=y0.device)

    def entropy_shift(self, dim: int) -> float:
        """H(f(Y0)) - H(Y0) for Y0 ~ N(0, I_dim)."""
        return 0.0


class Cubic(Transform):
    name = "cubic"

    def forward(self, y):
        return y ** 3

    def inverse(self, y):
        return torch.sign(y) * y.abs() ** (1.0 / 3.0)

    def log_abs_det_jacobian(self, y0):
        return (math.log(3.0) + 2.0 * torch.log(y0.abs())).sum(-1)

    def entropy_shift(self, dim):
        # E log|z| = -(gamma + log 2) / 2 for z ~ N(0, 1)
        return dim * (math.log(3.0) - (np.euler_gamma + math.log(2.0)))


class Asinh(Transform):
    name = "asinh"

    def forward(self, y):
        return torch.asinh(y)

    def inverse(self, y):
        return torch.sinh(y)

    def log_abs_det_jacobian(self, y0):
        return (-0.5 * torch.log1p(y0 ** 2)).sum(-1)

    def entropy_shift(self, dim):
        return dim * _expected_under_normal(lambda z: -0.5 * math.log1p(z * z))


class HalfCube(Transform):
    """y -> y |y|^{1/2} (Czyz et al. 2023)."""
    name = "half-cube"

    def forward(self, y):
        return y * y.abs().sqrt()

    def inverse(self, y):
        return torch.sign(y) * y.abs() ** (2.0 / 3.0)

    def log_abs_det_jacobian(self, y0):
        return (math.log(1.5) + 0.5 * torch.log(y0.abs())).sum(-1)

    def entropy_shift(self, dim):
        return dim * (math.log(1.5) - 0.25 * (np.euler_gamma + math.log(2.0)))


class RandomRotation(Transform):
    """y -> Q y with a random orthogonal Q (seeded): entropy and MI unchanged, coordinates mixed."""
    name = "rotation"

    def __init__(self, dim: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.matrix = torch.as_tensor(stats.ortho_group.rvs(dim, random_state=rng) if dim > 1 else np.ones((1, 1)),
                                      dtype=torch.float32)

    def forward(self, y):
        return y @ self.matrix.to(y).T

    def inverse(self, y):
        return y @ self.matrix.to(y)


TRANSFORMS = {"identity": Transform, "cubic": Cubic, "asinh": Asinh, "half-cube": HalfCube, "rotation": RandomRotation}


def make_transform(name: str | Transform | None, dim: int, seed: int = 0) -> Transform:
    if name is None:
        return Transform()
    if isinstance(name, Transform):
        return name
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; valid transforms: {', '.join(sorted(TRANSFORMS))}")
    return RandomRotation(dim, seed) if name == "rotation" else TRANSFORMS[name]()


# ---------------------------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------------------------
class CorrelatedGaussian:
    """x, y0 ~ N(0, I_dim) with corr(x_k, y0_k) = rho on each coordinate; y = transform(y0).

    True MI = -(dim/2) log(1 - rho^2), whatever the (invertible) transform.  Knows H(Y) and the true conditional
    log p(y|x), so the optimal critic and the exact CLUB value can be written down.
    """

    def __init__(self, dim: int, mi: float, transform: str | Transform | None = None, seed: int = 0):
        self.dim = self.dim_x = self.dim_y = _check_dim(dim)
        self.mi = _check_mi(mi)
        self.rho = rho_for_mi(self.dim, self.mi)
        self.transform = make_transform(transform, self.dim, seed)
        self.name = f"gaussian(dim={self.dim}, mi={self.mi:g}" + (
            f", {self.transform.name})" if self.transform.name != "identity" else ")")

    @property
    def entropy_y(self) -> float:
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


def _t_entropy_term(dof: float, d: int) -> float:
    """The part of a d-dim Student-t entropy that does not depend on the scale matrix."""
    return (0.5 * d * math.log(dof * math.pi) + special.gammaln(dof / 2) - special.gammaln((dof + d) / 2)
            + 0.5 * (dof + d) * (special.digamma((dof + d) / 2) - special.digamma(dof / 2)))


def student_t_mi_correction(dof: float, dim_x: int, dim_y: int) -> float:
    """MI of a multivariate t minus the MI of the Gaussian with the same scale matrix (always > 0)."""
    return _t_entropy_term(dof, dim_x) + _t_entropy_term(dof, dim_y) - _t_entropy_term(dof, dim_x + dim_y)


class StudentT:
    """(x, y) jointly multivariate Student-t with ``dof`` degrees of freedom and the correlated-Gaussian scale matrix
    (per-coordinate correlation rho).  Closed form: I = -(dim/2) log(1 - rho^2) + c(dof, dim, dim) where c > 0 comes
    from the shared heavy tail; so even rho = 0 carries information.  Give ``mi`` (solved for rho) or ``rho``.
    """

    def __init__(self, dim: int, dof: float, mi: float | None = None, rho: float | None = None):
        self.dim = self.dim_x = self.dim_y = _check_dim(dim)
        if isinstance(dof, bool) or not isinstance(dof, (int, float)) or not math.isfinite(dof) or dof <= 0:
            raise ValueError(f"dof must be a finite number > 0, got {dof!r}")
        self.dof = float(dof)
        self.correction = student_t_mi_correction(self.dof, self.dim, self.dim)
        if (mi is None) == (rho is None):
            raise ValueError("give exactly one of mi (nats) or rho (per-coordinate correlation)")
        if mi is not None:
            mi = _check_mi(mi)
            if mi < self.correction:
                raise ValueError(f"mi must be >= {self.correction:.4f} nats for dim={dim}, dof={dof:g} "
                                 f"(the heavy tail alone carries that much), got {mi}")
            self.rho = rho_for_mi(self.dim, mi - self.correction)
        else:
            if not (isinstance(rho, (int, float)) and 0 <= rho < 1):
                raise ValueError(f"rho must be in [0, 1), got {rho!r}")
            self.rho = float(rho)
        self.mi = -0.5 * self.dim * math.log1p(-self.rho ** 2) + self.correction
        self.name = f"student-t(dim={self.dim}, dof={self.dof:g}, mi={self.mi:.3g})"

    @property
    def entropy_y(self) -> float:
        """Y alone is a dim-variate t with identity scale, whatever rho."""
        return _t_entropy_term(self.dof, self.dim)

    def scale_matrix(self) -> np.ndarray:
        eye = np.eye(self.dim)
        return np.block([[eye, self.rho * eye], [self.rho * eye, eye]])

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32):
        x = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        y = self.rho * x + math.sqrt(1.0 - self.rho ** 2) * noise
        # a shared chi-square scale: u / dof with u ~ chi2(dof) = Gamma(dof/2, scale 2)
        u = torch._standard_gamma(torch.full((n, 1), self.dof / 2, dtype=torch.float64), generator=generator) * 2.0
        scale = torch.sqrt(self.dof / u)
        return (x * scale).to(dtype), (y * scale).to(dtype)

    def log_density_ratio(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """log p(x, y) - log p(x) - log p(y) per row (exact densities, for plug-in checks)."""
        joint = stats.multivariate_t(loc=np.zeros(2 * self.dim), shape=self.scale_matrix(), df=self.dof)
        marginal = stats.multivariate_t(loc=np.zeros(self.dim), shape=np.eye(self.dim), df=self.dof)
        return joint.logpdf(np.concatenate([x, y], 1)) - marginal.logpdf(x) - marginal.logpdf(y)

    def __repr__(self):
        return self.name


class Staircase:
    """The standard benchmark schedule: true MI steps through ``levels``, ``steps_per_level`` training steps each."""

    def __init__(self, levels=(2.0, 4.0, 6.0, 8.0, 10.0), steps_per_level: int = 2000):
        if len(levels) == 0:
            raise ValueError("levels must hold at least one MI value")
        self.levels = [_check_mi(m) for m in levels]
        if isinstance(steps_per_level, bool) or not isinstance(steps_per_level, int) or steps_per_level < 1:
            raise ValueError(f"steps_per_level must be an integer >= 1, got {steps_per_level!r}")
        self.steps_per_level = steps_per_level

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
