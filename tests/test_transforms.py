"""The transforms' Jacobians and entropy shifts, checked against numbers that never use their formulas: autograd (or
finite differences) of ``forward``, Monte-Carlo and quadrature under N(0, I), and densities that must integrate to 1."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from synthetic import (TRANSFORMS, CorrelatedGaussian, JacobianUnavailableError, Multinormal, Transform, Transformed,
                       make_transform)

DIFFERENTIABLE = ["identity", "cubic", "asinh", "half-cube", "rotation", "normal-cdf", "wiggly", "spiral"]
TABULATED = ["bimodal"]                    # forward is np.interp: finite differences instead of autograd
WITH_JACOBIAN = DIFFERENTIABLE + TABULATED
COORDINATEWISE = ["cubic", "asinh", "half-cube", "normal-cdf", "wiggly", "bimodal"]
ONE_D = ["identity", "rotation", *COORDINATEWISE]
assert sorted(WITH_JACOBIAN + ["swiss-roll"]) == sorted(TRANSFORMS)      # all ten are covered


def numeric_log_det(t: Transform, y0: torch.Tensor) -> torch.Tensor:
    """log |det d forward / d y0| per row from forward alone: autograd, or central differences for a table map."""
    d = y0.shape[1]
    if t.name in TABULATED:
        h = 1e-7
        cols = [(t.forward(y0 + h * e) - t.forward(y0 - h * e)) / (2 * h) for e in torch.eye(d, dtype=y0.dtype)]
        jac = torch.stack(cols, -1)
    else:
        y = y0.clone().requires_grad_(True)
        out = t.forward(y)
        rows = [torch.autograd.grad(out[:, k].sum(), y, retain_graph=True)[0] for k in range(out.shape[1])]
        jac = torch.stack(rows, 1)                           # [n, out, in]: rows are independent
    return torch.linalg.slogdet(jac)[1]


def _normal(n, d, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name", WITH_JACOBIAN)
def test_log_abs_det_jacobian_matches_the_numeric_jacobian_of_forward(name):
    t = make_transform(name, 3, seed=1)
    y0 = _normal(20_000, 3, 0)
    err = (t.log_abs_det_jacobian(y0) - numeric_log_det(t, y0)).abs()
    # measured: autograd agrees to ~1e-10 (the rotation to 4e-8: its matrix is stored in float32, so
    # |det| = 1 +- 1e-7); the bimodal table's neighbouring segments differ by up to ~1e-3 in log-slope, and a
    # finite difference straddling a knot averages the two
    assert err.max().item() < (2e-3 if name in TABULATED else 1e-6)


@pytest.mark.parametrize("name", WITH_JACOBIAN)
def test_entropy_shift_matches_monte_carlo_of_the_numeric_jacobian(name):
    t = make_transform(name, 3, seed=1)
    log_det = numeric_log_det(t, _normal(100_000, 3, 2))
    se = log_det.std().item() / math.sqrt(len(log_det))
    assert t.entropy_shift(3) == pytest.approx(log_det.mean().item(), abs=4 * se + 1e-6)   # 1e-6: the rotation's


@pytest.mark.parametrize("name", COORDINATEWISE)
def test_coordinatewise_entropy_shift_matches_quadrature(name):
    # E log f'(z), z ~ N(0, 1), f' by finite differences of forward, on a fine grid (trapezoid; no grid point at
    # 0, where cubic / half-cube have an integrable log singularity): far tighter than the Monte-Carlo check.
    # |z| > 6 (mass 2e-9) is left out: there Phi's finite differences fall below float64's resolution
    t = make_transform(name, 1)
    z = torch.linspace(-6.0, 6.0, 2_000_000, dtype=torch.float64)[:, None]
    h = 1e-7
    slope = ((t.forward(z + h) - t.forward(z - h)) / (2 * h))[:, 0].numpy()
    integrand = np.log(slope) * stats.norm.pdf(z[:, 0].numpy())
    expected = np.trapezoid(integrand, z[:, 0].numpy())
    # measured |error| of the grid: <= 3.3e-6 (cubic, beside the log singularity at 0), < 1e-7 for smooth maps
    assert t.entropy_shift(1) == pytest.approx(expected, abs=3e-5)
    assert t.entropy_shift(2) == pytest.approx(2 * t.entropy_shift(1), abs=1e-12)


def test_spiral_preserves_volume_away_from_the_samples_too():
    t = make_transform("spiral", 4)
    y0 = _normal(2000, 4, 3) * 4.0                          # large radii: the angle turns fast
    assert numeric_log_det(t, y0).abs().max().item() < 1e-8
    assert t.entropy_shift(4) == 0.0


def test_swiss_roll_and_transforms_without_a_jacobian_raise():
    roll = make_transform("swiss-roll", 2)
    with pytest.raises(JacobianUnavailableError, match="no density"):
        roll.log_abs_det_jacobian(_normal(5, 2, 0))
    with pytest.raises(JacobianUnavailableError, match="no density"):
        roll.entropy_shift(2)

    class Shift(Transform):                                # a user's transform that says nothing of its Jacobian
        name = "shift"

        def forward(self, y):
            return y + 1.0

        def inverse(self, y):
            return y - 1.0

    for t in (Shift(), Transform()):
        with pytest.raises(JacobianUnavailableError, match="does not know its Jacobian"):
            t.entropy_shift(2)
        with pytest.raises(NotImplementedError, match="does not know its Jacobian"):
            t.log_abs_det_jacobian(_normal(5, 2, 0))


def test_a_task_raises_rather_than_report_an_entropy_it_does_not_know():
    class Shift(Transform):
        name = "shift"

        def forward(self, y):
            return y + 1.0

        def inverse(self, y):
            return y - 1.0

    task = CorrelatedGaussian(2, 1.0, transform=Shift())
    x, y = task.sample(10, torch.Generator().manual_seed(0))
    with pytest.raises(JacobianUnavailableError, match="'shift'"):
        task.entropy_y
    with pytest.raises(JacobianUnavailableError):
        task.conditional_log_density_matrix(x, y)
    roll = CorrelatedGaussian(2, 1.0, transform="swiss-roll")
    x, y = roll.sample(10, torch.Generator().manual_seed(0))
    for call in (lambda: roll.entropy_y, lambda: roll.conditional_log_density_matrix(x, y),
                 lambda: roll.log_density_ratio_matrix(x, y)):
        with pytest.raises(JacobianUnavailableError, match="Swiss roll"):
            call()


def test_normal_cdf_entropy_is_that_of_the_uniform_cube():
    # Y = Phi(Y0) is uniform on (0, 1)^2, whose differential entropy is 0
    assert CorrelatedGaussian(2, 1.0, transform="normal-cdf").entropy_y == pytest.approx(0.0, abs=1e-12)
    assert CorrelatedGaussian(5, 1.0, transform="normal-cdf").entropy_y == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", ONE_D)
def test_conditional_density_integrates_to_one_over_the_transformed_y(name):
    # a wrong (or missing) Jacobian makes the integral of p(y | x) over the transformed y differ from 1
    task = CorrelatedGaussian(1, 0.8, transform=name)
    x = torch.tensor([[-1.2], [0.4], [2.0]], dtype=torch.float64)
    # an even count keeps y = 0 (where cubic / half-cube have an integrable density singularity) off the grid
    y = task.transform.forward(torch.linspace(-8.0, 8.0, 400_000, dtype=torch.float64)[:, None])  # increasing
    density = task.conditional_log_density_matrix(x, y).exp()
    integral = torch.trapezoid(density, y[:, 0], dim=1)
    # measured |integral - 1|: 9e-5 for cubic (beside its singularity at 0), <= 6e-7 for the others; a zero
    # Jacobian gives integrals of 0.10-0.35 (normal-cdf), 0.76-1.35 (wiggly), 0.47-1.34 (bimodal)
    assert torch.allclose(integral, torch.ones(3, dtype=torch.float64), atol=5e-4), integral


def test_spiral_conditional_density_integrates_to_one_in_2d():
    task = CorrelatedGaussian(2, 0.8, transform="spiral")
    x = torch.tensor([[0.3, -0.2], [1.0, 0.5]], dtype=torch.float64)
    axis = torch.linspace(-6.0, 6.0, 1201, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    density = task.conditional_log_density_matrix(x, grid).exp().reshape(2, len(axis), len(axis))
    integral = torch.trapezoid(torch.trapezoid(density, axis, dim=2), axis, dim=1)
    assert torch.allclose(integral, torch.ones(2, dtype=torch.float64), atol=1e-6), integral   # measured 4e-15


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_task_dims_match_the_samples(name):
    task = CorrelatedGaussian(2, 1.0, transform=name)
    x, y = task.sample(7, torch.Generator().manual_seed(0))
    assert (x.shape, y.shape) == ((7, task.dim_x), (7, task.dim_y))
    assert task.dim_y == (3 if name == "swiss-roll" else 2)
    wrapped = Transformed(Multinormal(2, 2, 1.0), name, name)
    x, y = wrapped.sample(7, torch.Generator().manual_seed(0))
    assert (x.shape, y.shape) == ((7, wrapped.dim_x), (7, wrapped.dim_y))
