"""Every bound against a known truth: inequalities that must hold for any input, the analytic optimum for Gaussians,
Monte-Carlo for the KL formula, and finite differences for the gradients."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from mi_toolkit import bounds as B
from mi_toolkit.critics import gaussian_log_density, gaussian_log_density_matrix
from synthetic import CorrelatedGaussian

score_matrices = st.integers(2, 24).flatmap(
    lambda n: arrays(np.float64, (n, n), elements=st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)))


# ---------------------------------------------------------------------------------------------- deterministic laws
@given(score_matrices)
def test_infonce_never_exceeds_log_n(scores):
    s = torch.as_tensor(scores)
    value = B.infonce_lower_bound(s)
    assert torch.isfinite(value)
    assert value <= math.log(len(scores)) + 1e-9


@given(score_matrices)
def test_dv_is_at_least_nwj_on_any_scores(scores):
    # log u <= u / e for every u > 0, so DV >= NWJ term by term
    s = torch.as_tensor(scores).clamp(-50, 50)  # NWJ's e^S must stay representable for the comparison
    assert B.dv_lower_bound(s) >= B.nwj_lower_bound(s) - 1e-9


@given(score_matrices, st.floats(0.1, 20))
def test_smile_is_finite_and_between_clipped_extremes(scores, tau):
    s = torch.as_tensor(scores)
    value = B.smile_lower_bound(s, tau)
    assert torch.isfinite(value)
    # the clipped partition lies in [-tau, tau], so value - mean(diag) does too
    assert abs(float(value - s.diagonal().mean())) <= tau + 1e-9


def test_smile_with_huge_clip_equals_dv():
    s = torch.randn(16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.allclose(B.smile_lower_bound(s, 1e6), B.dv_lower_bound(s))
    assert torch.allclose(B.smile_lower_bound(s, None), B.dv_lower_bound(s))


@pytest.mark.parametrize("n", [2, 8, 64])
def test_positive_pair_never_counts_as_a_negative(n):
    # diagonal a, off-diagonal 0: with the positive excluded the partition is exactly 0 and DV = SMILE = a.
    # A partition that included the diagonal would give about a - log(e^a / n) -> log n instead.
    a = 20.0
    s = torch.full((n, n), 0.0, dtype=torch.float64).fill_diagonal_(a)
    assert B.dv_lower_bound(s).item() == pytest.approx(a)
    assert B.smile_lower_bound(s, 5.0).item() == pytest.approx(a)
    assert B.nwj_lower_bound(s + 1).item() == pytest.approx(a + 1 - 1.0)
    assert B.mine_lower_bound(s, None)[0].item() == pytest.approx(a)
    assert B.infonce_lower_bound(s).item() == pytest.approx(math.log(n) - math.log1p((n - 1) * math.exp(-a)))


def test_no_overflow_at_20_nats_with_optimal_critic(generator):
    task = CorrelatedGaussian(20, 20.0)
    x, y = task.sample(64, generator)
    s = task.log_density_ratio_matrix(x, y)  # float32, scores in the hundreds
    log_q = task.conditional_log_density_matrix(x, y)
    for value in (B.infonce_lower_bound(s), B.nwj_lower_bound(s + 1), B.dv_lower_bound(s), B.js_lower_bound(s),
                  B.smile_lower_bound(s), B.mine_lower_bound(s, None)[0], B.club_upper_bound(log_q),
                  B.l1out_upper_bound(log_q)):
        assert torch.isfinite(value), value


# ---------------------------------------------------------------- the optimal critic for Gaussians (truth is known)
def _batch_values(task, n, batches, fn, generator):
    values = []
    for _ in range(batches):
        x, y = task.sample(n, generator, dtype=torch.float64)
        values.append(float(fn(task, x, y)))
    values = np.asarray(values)
    return values.mean(), values.std(ddof=1) / math.sqrt(batches)


OPTIMAL = {
    "infonce": lambda t, x, y: B.infonce_lower_bound(t.log_density_ratio_matrix(x, y)),
    "nwj": lambda t, x, y: B.nwj_lower_bound(t.log_density_ratio_matrix(x, y) + 1.0),  # NWJ's optimum is 1 + log r
    "js": lambda t, x, y: B.js_lower_bound(t.log_density_ratio_matrix(x, y)),
    "ba": lambda t, x, y: B.ba_lower_bound(t.conditional_log_density_matrix(x, y).diagonal(), t.entropy_y),
}
gaussians = st.builds(lambda d, mi, n, tr: (CorrelatedGaussian(d, mi, transform=tr), n),
                      st.integers(1, 4), st.floats(0.1, 2.0), st.sampled_from([16, 32, 64]),
                      st.sampled_from([None, "cubic", "asinh", "rotation"]))


@pytest.mark.parametrize("name", sorted(OPTIMAL))
@given(case=gaussians)
def test_lower_bounds_at_most_truth_with_optimal_critic(name, case):
    task, n = case
    mean, se = _batch_values(task, n, 150, OPTIMAL[name], torch.Generator().manual_seed(7))
    assert mean <= task.mi + 4 * se + 1e-6
    if name == "infonce":
        assert mean <= math.log(n)
    else:  # NWJ, JS(read with NWJ) and BA are tight at the optimum: the test can fail from below too
        assert mean >= task.mi - 4 * se - 1e-6


@given(case=gaussians)
def test_dv_and_smile_with_optimal_critic_match_truth_at_low_mi(case):
    # DV/MINE/SMILE are not finite-sample lower bounds (Jensen makes E log-mean-exp <= 0 at the optimum, so they
    # sit slightly above the truth); at low MI that excess is within a few standard errors plus O(1/N^2).
    task, n = case
    for fn in (lambda t, x, y: B.dv_lower_bound(t.log_density_ratio_matrix(x, y)),
               lambda t, x, y: B.smile_lower_bound(t.log_density_ratio_matrix(x, y), 5.0)):
        mean, se = _batch_values(task, n, 150, fn, torch.Generator().manual_seed(11))
        assert task.mi - 4 * se - 1e-6 <= mean <= task.mi + 4 * se + 0.05


@given(case=gaussians)
def test_club_with_true_conditional_is_its_closed_form_and_above_truth(case):
    task, n = case
    mean, se = _batch_values(task, n, 150, lambda t, x, y: B.club_upper_bound(t.conditional_log_density_matrix(x, y)),
                             torch.Generator().manual_seed(3))
    assert abs(mean - task.club_with_true_conditional) <= 4 * se + 1e-6
    assert mean >= task.mi - 4 * se


@given(case=gaussians)
def test_l1out_with_true_conditional_is_above_truth(case):
    task, n = case
    mean, se = _batch_values(task, n, 150, lambda t, x, y: B.l1out_upper_bound(t.conditional_log_density_matrix(x, y)),
                             torch.Generator().manual_seed(5))
    assert mean >= task.mi - 4 * se - 1e-6


def test_club_sample_is_unbiased_for_club(generator):
    task = CorrelatedGaussian(3, 1.5)
    values = []
    for _ in range(400):
        x, y = task.sample(32, generator, dtype=torch.float64)
        log_q = task.conditional_log_density_matrix(x, y)
        perm = torch.roll(torch.arange(32), 1)
        values.append(float(B.club_sample_upper_bound(log_q.diagonal(), log_q[torch.arange(32), perm])))
    assert abs(np.mean(values) - task.club_with_true_conditional) < 4 * np.std(values) / math.sqrt(len(values))


def test_ba_with_a_worse_conditional_is_strictly_lower(generator):
    task = CorrelatedGaussian(3, 1.5)
    x, y = task.sample(20000, generator, dtype=torch.float64)
    true = B.ba_lower_bound(task.conditional_log_density_matrix(x[:2000], y[:2000]).diagonal(), task.entropy_y)
    # q(y|x) = N(0.5 * rho x, I): a wrong mean and variance lose information
    mu = 0.5 * task.rho * x
    worse = B.ba_lower_bound(gaussian_log_density(mu, torch.zeros_like(mu), y), task.entropy_y)
    assert worse < true - 0.2


def test_doe_with_true_densities_is_the_truth(generator):
    task = CorrelatedGaussian(4, 2.0)
    x, y = task.sample(40000, generator, dtype=torch.float64)
    mu = task.rho * x
    logvar = torch.full_like(x, math.log(1 - task.rho ** 2))
    value = B.doe_estimate(gaussian_log_density(mu, logvar, y), gaussian_log_density(torch.zeros_like(y), torch.zeros_like(y), y))
    assert value.item() == pytest.approx(task.mi, abs=0.05)


# ---------------------------------------------------------------------------------------------- Gaussian KL, VIB
@given(st.integers(1, 6), st.integers(0, 10_000))
def test_gaussian_kl_matches_monte_carlo(dim, seed):
    g = torch.Generator().manual_seed(seed)
    mu1, mu2 = torch.randn(1, dim, generator=g, dtype=torch.float64), torch.randn(1, dim, generator=g, dtype=torch.float64)
    lv1, lv2 = torch.randn(1, dim, generator=g, dtype=torch.float64) * 0.7, torch.randn(1, dim, generator=g, dtype=torch.float64) * 0.7
    closed = B.gaussian_kl_diag(mu1, lv1, mu2, lv2).item()
    z = mu1 + torch.exp(0.5 * lv1) * torch.randn(200_000, dim, generator=g, dtype=torch.float64)
    log_ratio = gaussian_log_density(mu1.expand_as(z), lv1.expand_as(z), z) - gaussian_log_density(mu2.expand_as(z), lv2.expand_as(z), z)
    se = log_ratio.std().item() / math.sqrt(len(z))
    assert closed >= 0
    assert abs(log_ratio.mean().item() - closed) <= 5 * se + 1e-9


def test_gaussian_kl_is_zero_for_equal_arguments_and_rejects_bad_shapes():
    mu, lv = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.allclose(B.gaussian_kl_diag(mu, lv, mu, lv), torch.zeros(5), atol=1e-6)
    with pytest.raises(ValueError, match="share one shape"):
        B.gaussian_kl_diag(mu, lv, mu[:4], lv)
    with pytest.raises(ValueError, match="logvar2"):
        B.gaussian_kl_diag(mu, lv, mu, lv.clone().fill_(float("nan")))


@given(st.integers(1, 4), st.integers(1, 4), st.floats(0.2, 2.0), st.integers(0, 1000))
def test_vib_kl_bounds_the_information_of_a_linear_gaussian_encoder(dx, dz, sigma, seed):
    # X ~ N(0, I), Z = A X + sigma eps: I(X;Z) = 1/2 log det(I + A A^T / sigma^2) <= E KL(p(z|x) || N(0, I))
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dz, dx, generator=g, dtype=torch.float64)
    exact = 0.5 * torch.logdet(torch.eye(dz, dtype=torch.float64) + a @ a.T / sigma ** 2).item()
    x = torch.randn(20000, dx, generator=g, dtype=torch.float64)
    mu = x @ a.T
    logvar = torch.full_like(mu, 2 * math.log(sigma))
    # with the optimal prior r = the true marginal N(0, A A^T + sigma^2 I) restricted to a diagonal, still >=
    assert B.vib_kl_upper_bound(mu, logvar).item() >= exact - 0.02


def test_vib_prior_follows_the_input_device_and_dtype():
    # a numeric prior used to be built on the CPU, which fails for CUDA inputs; 'meta' tensors stand in for them
    # (value checks off: a meta tensor has no values to scan)
    from mi_toolkit.validation import value_checks
    mu = torch.zeros(4, 3, device="meta", dtype=torch.float64)
    with value_checks(False):
        out = B.vib_kl_upper_bound(mu, mu, prior_mu=np.full(3, 0.5), prior_logvar=0.1)
    assert out.device.type == "meta" and out.dtype == torch.float64
    mu, logvar = torch.randn(6, 3), torch.randn(6, 3)
    value = B.vib_kl_upper_bound(mu, logvar, prior_mu=np.full(3, 0.5), prior_logvar=0.1)
    assert value.dtype == torch.float32
    expected = B.gaussian_kl_diag(mu, logvar, torch.full_like(mu, 0.5), torch.full_like(logvar, 0.1)).mean()
    assert value.item() == pytest.approx(expected.item())


def test_the_masked_entries_are_the_diagonal_ones():
    # the mask names what it marks: the positives, which masked_fill(-inf) removes from the negatives' average
    assert torch.equal(B.diagonal_mask(4, "cpu"), torch.eye(4, dtype=torch.bool))
    s = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    off = [s[i, j].item() for i in range(5) for j in range(5) if i != j]
    assert B.logmeanexp_offdiag(s).item() == pytest.approx(math.log(np.mean(np.exp(off))), rel=1e-12)


# -------------------------------------------------------------------------------------------- gradients
def _random_scores(n=6, seed=0):
    return torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed), requires_grad=True)


@pytest.mark.parametrize("fn", [B.infonce_lower_bound, B.nwj_lower_bound, B.dv_lower_bound, B.js_fgan_objective,
                                B.club_upper_bound, B.l1out_upper_bound], ids=lambda f: f.__name__)
def test_finite_difference_gradients(fn):
    assert torch.autograd.gradcheck(fn, (_random_scores(),))


def test_gaussian_kl_finite_difference_gradients():
    g = torch.Generator().manual_seed(0)
    args = tuple(torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(4))
    assert torch.autograd.gradcheck(B.gaussian_kl_diag, args)


def test_js_and_smile_report_their_value_but_train_with_the_js_gradient():
    s = _random_scores(8, 1)
    (g_js,) = torch.autograd.grad(B.js_fgan_objective(s), s)
    for fn, value in ((B.js_lower_bound, B.nwj_lower_bound(s.detach() + 1)),
                      (lambda t: B.smile_lower_bound(t, 1.0), B.dv_lower_bound(s.detach().clamp(-1, 1)) + (s.detach().diagonal().mean() - s.detach().clamp(-1, 1).diagonal().mean()))):
        out = fn(s)
        (g,) = torch.autograd.grad(out, s)
        assert torch.allclose(g, g_js)
        assert out.item() == pytest.approx(value.item())


def test_mine_gradient_uses_the_running_mean():
    s = _random_scores(8, 2)
    lme = B.logmeanexp_offdiag(s).detach()
    # with the running mean equal to the batch mean, MINE's gradient is the DV gradient
    (g_dv,) = torch.autograd.grad(B.dv_lower_bound(s), s)
    (g_same,) = torch.autograd.grad(B.mine_lower_bound(s, lme)[1], s)
    assert torch.allclose(g_dv, g_same)
    # a running mean twice as large halves the partition term's gradient
    (g_half,) = torch.autograd.grad(B.mine_lower_bound(s, lme + math.log(2.0))[1], s)
    diag = torch.eye(8, dtype=torch.bool)
    assert torch.allclose(g_half[~diag], g_dv[~diag] / 2)
    assert torch.allclose(g_half[diag], g_dv[diag])


def test_log_density_matrix_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    mu, lv, y = (torch.randn(7, 5, dtype=torch.float64, generator=g) for _ in range(3))
    brute = gaussian_log_density(mu[:, None, :].expand(7, 7, 5), lv[:, None, :].expand(7, 7, 5), y[None].expand(7, 7, 5))
    assert torch.allclose(gaussian_log_density_matrix(mu, lv, y), brute)


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("fn", [B.infonce_lower_bound, B.nwj_lower_bound, B.dv_lower_bound, B.js_lower_bound,
                                B.smile_lower_bound, B.club_upper_bound, B.l1out_upper_bound],
                         ids=lambda f: f.__name__)
def test_bounds_reject_bad_score_matrices(fn):
    with pytest.raises(ValueError, match="square"):
        fn(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="N >= 2"):
        fn(torch.zeros(1, 1))
    with pytest.raises(ValueError, match="NaN/inf"):
        fn(torch.tensor([[0.0, float("nan")], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="NaN/inf"):
        fn(torch.tensor([[0.0, float("inf")], [0.0, 0.0]]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn(np.zeros((3, 3)))
    with pytest.raises(TypeError, match="floating"):
        fn(torch.zeros(3, 3, dtype=torch.long))


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf"), "5"])
def test_smile_rejects_invalid_tau(tau):
    with pytest.raises(ValueError, match="clip"):
        B.smile_lower_bound(torch.zeros(4, 4), tau)


def test_vector_bounds_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="log_q_marginal must have length 4"):
        B.doe_estimate(torch.zeros(4), torch.zeros(5))
    with pytest.raises(ValueError, match="log_q_shuffled"):
        B.club_sample_upper_bound(torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="entropy_y"):
        B.ba_lower_bound(torch.zeros(4), float("nan"))
