"""MI-preserving transforms of one side of a task: invertible maps (or an embedding) that change H(Y), never I(X;Y).

Every ``Transform`` has ``forward`` (applied to samples), ``inverse`` and ``out_dim``.  A transform that knows its
Jacobian also gives ``log_abs_det_jacobian(y0)`` (log |det d forward / d y0| per row, at the untransformed y0) and
``entropy_shift(dim)`` = H(forward(Y0)) - H(Y0) = E log |det J(Y0)| for Y0 ~ N(0, I_dim): what a task needs for H(Y)
and the transformed density.  The base class raises ``JacobianUnavailableError`` for both, so a transform that does
not know its Jacobian can never pass for a volume-preserving one.

* ``Identity``, ``RandomRotation`` (orthogonal) and ``Spiral`` (a norm-dependent rotation) preserve volume: 0.
* ``Cubic``, ``Asinh``, ``HalfCube``, ``NormalCDF``, ``Wiggly``, ``Bimodal``: coordinate-wise increasing maps,
  log |det J| = sum_k log f'(y0_k).
* ``SwissRoll`` embeds R^2 in R^3: its output has no density on R^3, so both methods raise.

``make_transform`` builds one by name (``TRANSFORMS``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import integrate, stats

from mi_toolkit.errors import ArgumentError

__all__ = [
    "JacobianUnavailableError", "Transform", "Identity", "Cubic", "Asinh", "HalfCube", "RandomRotation", "NormalCDF",
    "Wiggly", "Bimodal", "Spiral", "SwissRoll", "TRANSFORMS", "make_transform",
]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class JacobianUnavailableError(NotImplementedError):
    """A transform does not know its Jacobian (or has none: an embedding into more dimensions), so H(Y) and the
    transformed density are unavailable."""


def _expected_under_normal(fn) -> float:
    """E fn(z), z ~ N(0, 1), by adaptive quadrature."""
    value, _ = integrate.quad(lambda z: fn(z) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi), -np.inf, np.inf,
                              limit=200)
    return value


class Transform:
    """Base class.  Subclasses define ``forward``/``inverse`` and, when they know it, the Jacobian."""
    name = "transform"

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"transform {self.name!r} defines no forward map")

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"transform {self.name!r} defines no inverse map")

    def log_abs_det_jacobian(self, y0: torch.Tensor) -> torch.Tensor:
        """log |det d forward / d y0| per row, at the untransformed y0."""
        raise JacobianUnavailableError(f"transform {self.name!r} ({type(self).__name__}) does not know its Jacobian: "
                                       "the transformed density and H(Y) are unavailable")

    def entropy_shift(self, dim: int) -> float:
        """H(f(Y0)) - H(Y0) = E log |det J(Y0)| for Y0 ~ N(0, I_dim)."""
        raise JacobianUnavailableError(f"transform {self.name!r} ({type(self).__name__}) does not know its Jacobian: "
                                       "H(Y) is unavailable")

    def out_dim(self, dim: int) -> int:
        """Features after the transform of a dim-feature side (an embedding may add some: the Swiss roll)."""
        return dim


class Identity(Transform):
    name = "identity"

    def forward(self, y):
        return y

    def inverse(self, y):
        return y

    def log_abs_det_jacobian(self, y0):
        return torch.zeros(y0.shape[0], dtype=y0.dtype, device=y0.device)

    def entropy_shift(self, dim):
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

    def log_abs_det_jacobian(self, y0):
        # |det Q| = 1 for an orthogonal Q
        return torch.zeros(y0.shape[0], dtype=y0.dtype, device=y0.device)

    def entropy_shift(self, dim):
        return 0.0


def _interp(values: torch.Tensor, xp: np.ndarray, fp: np.ndarray) -> torch.Tensor:
    """Piecewise-linear monotone map through the table (xp, fp): invertible, so it keeps MI exactly."""
    out = np.interp(values.detach().cpu().double().numpy(), xp, fp)
    return torch.as_tensor(out, dtype=values.dtype, device=values.device)


class NormalCDF(Transform):
    """y -> Phi(y) per coordinate (Czyz et al. 2023): uniform margins on (0, 1), so H(Y) = 0 for N(0, I) input."""
    name = "normal-cdf"

    def forward(self, y):
        return torch.special.ndtr(y)

    def inverse(self, y):
        return torch.special.ndtri(y)

    def log_abs_det_jacobian(self, y0):
        # d Phi / dy = phi(y): log phi(y) = -log(2 pi) / 2 - y^2 / 2
        return (-_HALF_LOG_2PI - 0.5 * y0 * y0).sum(-1)

    def entropy_shift(self, dim):
        # E[-log(2 pi)/2 - z^2/2] = -log(2 pi)/2 - 1/2, which cancels N(0, 1)'s entropy (1 + log 2 pi)/2 exactly
        return dim * (-_HALF_LOG_2PI - 0.5)


class Wiggly(Transform):
    """y -> y + 0.4 sin(y) + 0.2 sin(1.7 y + 1) per coordinate: strictly increasing (slope >= 0.26), wiggly."""
    name = "wiggly"
    _grid = np.linspace(-12.0, 12.0, 48001)

    @staticmethod
    def _f(y):
        return y + 0.4 * np.sin(y) + 0.2 * np.sin(1.7 * y + 1.0)

    @staticmethod
    def _log_slope(y):
        """log f'(y), f' = 1 + 0.4 cos(y) + 0.34 cos(1.7 y + 1) >= 0.26 (numpy or torch input)."""
        lib = torch if isinstance(y, torch.Tensor) else np
        return lib.log(1.0 + 0.4 * lib.cos(y) + 0.34 * lib.cos(1.7 * y + 1.0))

    def forward(self, y):
        return y + 0.4 * torch.sin(y) + 0.2 * torch.sin(1.7 * y + 1.0)

    def inverse(self, y):
        return _interp(y, self._f(self._grid), self._grid)

    def log_abs_det_jacobian(self, y0):
        # forward is the analytic map (only the inverse is tabulated), so its derivative is analytic too
        return self._log_slope(y0).sum(-1)

    def entropy_shift(self, dim):
        return dim * _expected_under_normal(lambda z: float(self._log_slope(z)))


class Bimodal(Transform):
    """y -> F^{-1}(Phi(y)) per coordinate, F the CDF of 0.5 N(-1, 0.4^2) + 0.5 N(1, 0.4^2): standard normal
    margins become bimodal.  F^{-1} o Phi is tabulated and interpolated piecewise linearly (increasing, so the
    tabulated map itself is invertible and MI is kept exactly, whatever the table's accuracy).

    The Jacobian is the interpolant's own (the map the samples go through): the slope of the table segment holding
    y0.  Outside the table (y0 < -10.07 or y0 >= 8.21, probability < 1e-15 under N(0, 1)) the interpolant is
    constant, its slope 0 and log |det J| = -inf; ``entropy_shift`` integrates over the table's range only.
    """
    name = "bimodal"
    _t = np.linspace(-5.0, 5.0, 40001)
    _z = stats.norm.ppf(np.clip(0.5 * stats.norm.cdf((_t + 1.0) / 0.4) + 0.5 * stats.norm.cdf((_t - 1.0) / 0.4),
                                1e-300, 1 - 1e-16))

    def forward(self, y):
        return _interp(y, self._z, self._t)

    def inverse(self, y):
        return _interp(y, self._t, self._z)

    @classmethod
    def _segments(cls):
        """(left z, right z, slope) of the table's segments of positive width (the upper tail repeats z values)."""
        dz, dt = np.diff(cls._z), np.diff(cls._t)
        keep = dz > 0
        return cls._z[:-1][keep], cls._z[1:][keep], dt[keep] / dz[keep]

    def log_abs_det_jacobian(self, y0):
        left, right, slope = self._segments()
        values = y0.detach().cpu().double().numpy()
        index = np.searchsorted(left, values, side="right") - 1          # the segment with left <= y0
        inside = (index >= 0) & (values < right[np.clip(index, 0, None)])
        with np.errstate(divide="ignore"):
            log_slope = np.where(inside, np.log(slope[np.clip(index, 0, None)]), -np.inf)
        return torch.as_tensor(log_slope, dtype=y0.dtype, device=y0.device).sum(-1)

    def entropy_shift(self, dim):
        # log f' is constant on each segment: E log f'(Z) = sum_i log(slope_i) P(z_i <= Z < z_{i+1}), exactly
        left, right, slope = self._segments()
        mass = np.where(right <= 0, stats.norm.cdf(right) - stats.norm.cdf(left),
                        stats.norm.sf(left) - stats.norm.sf(right))
        return dim * float(np.sum(mass * np.log(slope)))


class Spiral(Transform):
    """x -> rotation of each coordinate pair (0,1), (2,3), ... by the angle speed * |x|^2 (Czyz et al.'s spiral):
    the norm is kept, so the inverse rotates back by speed * |y|^2.  Needs dim >= 2.

    Volume-preserving: with R(theta) the block rotation and A = R^T dR/dtheta (block-diagonal [[0, -1], [1, 0]],
    skew-symmetric), J = R (I + A x grad(theta)^T) and det J = det R (1 + grad(theta)^T A x)
    = 1 + 2 speed x^T A x = 1, since x^T A x = 0 for a skew-symmetric A.  So log |det J| = 0 everywhere.
    """
    name = "spiral"

    def __init__(self, speed: float = 0.5):
        self.speed = float(speed)

    def _rotate(self, v, sign):
        if v.shape[1] < 2:
            raise ArgumentError(f"the spiral needs at least 2 features, got {v.shape[1]}")
        angle = sign * self.speed * (v * v).sum(1, keepdim=True)
        c, s_ = torch.cos(angle), torch.sin(angle)
        out = v.clone()
        pairs = v.shape[1] // 2
        a, b = v[:, 0:2 * pairs:2], v[:, 1:2 * pairs:2]
        out[:, 0:2 * pairs:2] = c * a - s_ * b
        out[:, 1:2 * pairs:2] = s_ * a + c * b
        return out

    def forward(self, y):
        return self._rotate(y, 1.0)

    def inverse(self, y):
        return self._rotate(y, -1.0)

    def log_abs_det_jacobian(self, y0):
        return torch.zeros(y0.shape[0], dtype=y0.dtype, device=y0.device)   # det J = 1 (see the class docstring)

    def entropy_shift(self, dim):
        self.out_dim(dim)
        return 0.0

    def out_dim(self, dim):
        if dim < 2:
            raise ArgumentError(f"the spiral needs at least 2 features, got {dim}")
        return dim


class SwissRoll(Transform):
    """2-D -> 3-D Swiss roll: u = Phi(x) in (0, 1)^2, t = 1.5 pi (1 + 2 u_0), out = (t cos t, 21 u_1, t sin t) / 10.
    Injective (a smooth embedding), so MI is kept; the output lies on a 2-D surface in 3-D, so it has no density on
    R^3: ``log_abs_det_jacobian`` and ``entropy_shift`` raise (H(Y) and density ratios are unavailable)."""
    name = "swiss-roll"
    _NO_DENSITY = ("the Swiss roll embeds 2 features in 3 dimensions (a 2-D surface in R^3): its output has no density "
                   "on R^3, so log |det J|, H(Y) and the transformed density (ratio) are unavailable")

    def forward(self, y):
        if y.shape[1] != 2:
            raise ArgumentError(f"the Swiss roll takes 2 features, got {y.shape[1]}")
        u = torch.special.ndtr(y)
        t = 1.5 * math.pi * (1.0 + 2.0 * u[:, 0])
        return torch.stack([t * torch.cos(t), 21.0 * u[:, 1], t * torch.sin(t)], 1) / 10.0

    def inverse(self, y):
        y = y * 10.0
        t = torch.sqrt(y[:, 0] ** 2 + y[:, 2] ** 2)   # the radius is t itself
        u0 = (t / (1.5 * math.pi) - 1.0) / 2.0
        return torch.special.ndtri(torch.stack([u0, y[:, 1] / 21.0], 1).clamp(1e-12, 1 - 1e-12))

    def log_abs_det_jacobian(self, y0):
        raise JacobianUnavailableError(self._NO_DENSITY)

    def entropy_shift(self, dim):
        raise JacobianUnavailableError(self._NO_DENSITY)

    def out_dim(self, dim):
        if dim != 2:
            raise ArgumentError(f"the Swiss roll takes 2 features, got {dim}")
        return 3


TRANSFORMS = {"identity": Identity, "cubic": Cubic, "asinh": Asinh, "half-cube": HalfCube, "rotation": RandomRotation,
              "normal-cdf": NormalCDF, "wiggly": Wiggly, "bimodal": Bimodal, "spiral": Spiral, "swiss-roll": SwissRoll}


def make_transform(name: str | Transform | None, dim: int, seed: int = 0) -> Transform:
    """A transform by name (``TRANSFORMS``; ``rotation`` is drawn for ``dim`` with ``seed``), an instance as is, or
    the identity for None."""
    if name is None:
        return Identity()
    if isinstance(name, Transform):
        return name
    if name not in TRANSFORMS:
        raise ArgumentError(f"unknown transform {name!r}; valid transforms: {', '.join(sorted(TRANSFORMS))}")
    return RandomRotation(dim, seed) if name == "rotation" else TRANSFORMS[name]()
