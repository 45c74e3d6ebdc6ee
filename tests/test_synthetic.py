"""Synthetic tasks carry their truth: check it against independent numeric answers."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from scipy import stats

from synthetic import CorrelatedGaussian, Staircase, StudentT, make_transform, student_t_mi_correction

TRANSFORM_NAMES = [None, "cubic", "asinh", "half-cube", "rotation"]


@pytest.mark.parametrize("transform", TRANSFORM_NAMES)
def test_gaussian_mi_matches_a_large_sample_plug_in(transform):
    # E[log p(y|x) - log p(y)] over many samples, with scipy's density for the untransformed part as the judge
    task = CorrelatedGaussian(3, 1.7, transform=transform, seed=4)
    x, y = task.sample(100_000, torch.Generator().manual_seed(0), dtype=torch.float64)
    y0 = make_transform(transform, 3, seed=4).inverse(y).numpy() if transform != "rotation" else (
        y @ task.transform.matrix.double()).numpy()
    cov = np.block([[np.eye(3), task.rho * np.eye(3)], [task.rho * np.eye(3), np.eye(3)]])
    log_ratio = (stats.multivariate_normal(np.zeros(6), cov).logpdf(np.concatenate([x.numpy(), y0], 1))
                 - stats.multivariate_normal(np.zeros(3)).logpdf(x.numpy())
                 - stats.multivariate_normal(np.zeros(3)).logpdf(y0))
    se = log_ratio.std() / math.sqrt(len(log_ratio))
    assert abs(log_ratio.mean() - task.mi) < 4 * se


@pytest.mark.slow
@pytest.mark.parametrize("transform", TRANSFORM_NAMES)
def test_task_densities_integrate_to_the_truth(transform):
    task = CorrelatedGaussian(2, 1.2, transform=transform)
    x, y = task.sample(40_000, torch.Generator().manual_seed(1), dtype=torch.float64)
    ratio = torch.cat([task.log_density_ratio_matrix(x[i:i + 1000], y[i:i + 1000]).diagonal()
                       for i in range(0, 40_000, 1000)])
    assert abs(ratio.mean().item() - task.mi) < 4 * ratio.std().item() / math.sqrt(len(ratio))


@pytest.mark.parametrize("transform", ["cubic", "asinh", "half-cube", "rotation"])
def test_transform_entropy_shift_matches_monte_carlo(transform):
    task = CorrelatedGaussian(2, 1.0, transform=transform)
    y0 = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    jac = task.transform.log_abs_det_jacobian(y0)
    assert task.transform.entropy_shift(2) == pytest.approx(jac.mean().item(), abs=4 * jac.std().item() / math.sqrt(len(jac)))


@pytest.mark.parametrize("transform", ["cubic", "asinh", "half-cube", "rotation"])
def test_transforms_are_invertible(transform):
    t = make_transform(transform, 4, seed=1)
    y = torch.randn(1000, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 3
    assert torch.allclose(t.inverse(t.forward(y)), y, atol=1e-6)


@given(st.integers(1, 50), st.floats(0.0, 30.0))
def test_gaussian_rho_inverts_the_closed_form(dim, mi):
    task = CorrelatedGaussian(dim, mi)
    assert -0.5 * dim * math.log1p(-task.rho ** 2) == pytest.approx(mi, abs=1e-9)


@given(st.integers(1, 3), st.floats(2.5, 30.0), st.floats(0.0, 0.9))
def test_student_t_mi_matches_scipy_plug_in(dim, dof, rho):
    task = StudentT(dim, dof, rho=rho)
    x, y = task.sample(30_000, torch.Generator().manual_seed(5), dtype=torch.float64)
    log_ratio = task.log_density_ratio(x.numpy(), y.numpy())  # scipy's multivariate_t densities
    se = log_ratio.std() / math.sqrt(len(log_ratio))
    assert abs(log_ratio.mean() - task.mi) < 5 * se + 1e-3


def test_student_t_correction_is_positive_and_vanishes_for_large_dof():
    assert student_t_mi_correction(3.0, 2, 2) > 0.05
    assert student_t_mi_correction(1e6, 2, 2) < 1e-5


def test_student_t_samples_have_the_right_marginal():
    task = StudentT(1, 4.0, rho=0.3)
    x, _ = task.sample(20_000, torch.Generator().manual_seed(6), dtype=torch.float64)
    assert stats.kstest(x[:, 0].numpy(), stats.t(df=4.0).cdf).pvalue > 1e-3


def test_student_t_target_mi_is_reached_and_too_small_targets_are_refused():
    task = StudentT(5, 5.0, mi=3.0)
    assert task.mi == pytest.approx(3.0)
    with pytest.raises(ValueError, match="heavy tail alone"):
        StudentT(5, 2.0, mi=0.01)
    with pytest.raises(ValueError, match="exactly one"):
        StudentT(5, 2.0)
    with pytest.raises(ValueError, match="dof"):
        StudentT(5, 0.0, mi=1.0)


def test_sampling_is_reproducible_with_a_generator():
    task = CorrelatedGaussian(3, 2.0, transform="cubic")
    a = task.sample(10, torch.Generator().manual_seed(9))
    b = task.sample(10, torch.Generator().manual_seed(9))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("mi", [-1.0, float("nan"), float("inf"), "2"])
def test_invalid_mi_targets_are_refused(mi):
    with pytest.raises(ValueError, match="mi must be"):
        CorrelatedGaussian(5, mi)


@pytest.mark.parametrize("dim", [0, -3, 2.5, True])
def test_invalid_dims_are_refused(dim):
    with pytest.raises(ValueError, match="dim must be"):
        CorrelatedGaussian(dim, 1.0)


def test_unknown_transform_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid transforms: .*cubic"):
        CorrelatedGaussian(2, 1.0, transform="square")


def test_staircase_schedule():
    stairs = Staircase([2, 4, 6], steps_per_level=3)
    assert stairs.total_steps == 9
    assert stairs.true_mi().tolist() == [2, 2, 2, 4, 4, 4, 6, 6, 6]
    assert [t.mi for _, t in stairs.tasks(lambda mi: CorrelatedGaussian(4, mi))] == [2, 4, 6]
    with pytest.raises(ValueError, match="steps_per_level"):
        Staircase([2], 0)
    with pytest.raises(ValueError, match="mi must be"):
        Staircase([2, -1], 10)


# ---------------------------------------------------------------------------------------------- protocol, wrapper
def test_every_task_satisfies_its_protocol():
    from synthetic import TASKS, ConditionalGaussian, ConditionalMITask, MITask, Transformed
    tasks = [CorrelatedGaussian(2, 1.0), CorrelatedGaussian(2, 1.0, transform="asinh"), StudentT(2, 4.0, mi=1.0),
             Transformed(StudentT(2, 4.0, mi=1.0), transform_y="cubic")]
    assert {type(t) for t in tasks[:3]} == set(TASKS.values())
    for task in tasks:
        assert isinstance(task, MITask) and not isinstance(task, ConditionalMITask)
        x, y = task.sample(5, torch.Generator().manual_seed(0), dtype=torch.float64)
        assert x.shape == (5, task.dim_x) and y.shape == (5, task.dim_y) and x.dtype == y.dtype == torch.float64
    conditional = ConditionalGaussian(2, 3, 1, cmi=0.5)
    assert isinstance(conditional, ConditionalMITask) and not isinstance(conditional, MITask)
    x, y, z = conditional.sample(5, torch.Generator().manual_seed(0))
    assert (x.shape, y.shape, z.shape) == ((5, 2), (5, 3), (5, 1))
    assert not isinstance(object(), MITask)


def test_a_transformed_student_t_keeps_its_mi_and_samples_the_transformed_draws():
    from synthetic import Transformed
    task = StudentT(3, 4.0, mi=1.5)
    wrapped = Transformed(task, transform_x="rotation", transform_y="cubic", seed=2)
    assert wrapped.mi == task.mi and (wrapped.dim_x, wrapped.dim_y) == (3, 3)
    assert "cubic" in wrapped.name and "rotation" in wrapped.name
    x, y = wrapped.sample(50, torch.Generator().manual_seed(7))
    x0, y0 = task.sample(50, torch.Generator().manual_seed(7))
    assert torch.equal(y, y0 ** 3)
    assert torch.equal(x, make_transform("rotation", 3, seed=2).forward(x0))
    back_x, back_y = wrapped.untransform(x, y)
    assert torch.allclose(back_x, x0, atol=1e-5) and torch.allclose(back_y, y0, rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="MITask"):
        Transformed(object())


@pytest.mark.parametrize("transform", ["cubic", "rotation"])
def test_the_gaussian_transform_argument_draws_what_the_wrapper_draws(transform):
    from synthetic import Transformed
    built_in = CorrelatedGaussian(3, 2.0, transform=transform, seed=5)
    wrapped = Transformed(CorrelatedGaussian(3, 2.0), transform_y=transform, seed=5)
    a = built_in.sample(20, torch.Generator().manual_seed(1))
    b = wrapped.sample(20, torch.Generator().manual_seed(1))
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and built_in.mi == wrapped.mi
