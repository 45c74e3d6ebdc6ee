"""The multi-view world and the conditional Gaussian carry exact information: check every closed form against
independent numeric answers (sample covariances, Monte Carlo with scipy's densities), and the inequalities the
SuperInfo bounds rest on (KL and CLUB above the exact conditional MI) as property tests over random encoders."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from scipy import stats

from mi_toolkit.bounds import gaussian_kl_diag
from synthetic import (
    ConditionalGaussian,
    LinearGaussianEncoder,
    MultiViewWorld,
    NonlinearMultiViewWorld,
    gaussian_conditional_mi,
    gaussian_kl,
    gaussian_mi,
)
from synthetic.gaussian import expected_gaussian_kl


def _random_encoder(rng, k, d, scale=None, noise=None):
    scale = rng.uniform(0.05, 1.5) if scale is None else scale
    noise = rng.uniform(0.1, 2.0, size=k) if noise is None else noise
    return LinearGaussianEncoder.make(scale * rng.standard_normal((k, d)), rng.standard_normal(k), noise_std=noise)


def _plug_in(samples: dict, a, b, c=()):
    """I(A;B|C) from the sample covariance of named blocks (the Gaussian plug-in estimate)."""
    names = list(dict.fromkeys([*a, *b, *c]))
    data = np.concatenate([samples[n] for n in names], 1)
    offsets, start = {}, 0
    for n in names:
        offsets[n] = np.arange(start, start + samples[n].shape[1])
        start += samples[n].shape[1]
    idx = lambda group: np.concatenate([offsets[n] for n in group]) if group else np.array([], dtype=int)  # noqa: E731
    return gaussian_conditional_mi(np.cov(data.T), idx(a), idx(b), idx(c))


# ---------------------------------------------------------------------------------------------- closed forms
def test_conditional_mi_obeys_the_chain_rule_and_symmetry():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((9, 9))
    cov = m @ m.T + 0.1 * np.eye(9)
    a, b, c = [0, 1], [2, 3, 4], [5, 6, 7, 8]
    cmi = gaussian_conditional_mi(cov, a, b, c)
    assert cmi == pytest.approx(gaussian_mi(cov, a, b + c) - gaussian_mi(cov, a, c), abs=1e-10)
    assert cmi == pytest.approx(gaussian_conditional_mi(cov, b, a, c), abs=1e-12)
    assert gaussian_mi(cov, a, b) == pytest.approx(gaussian_conditional_mi(cov, a, b), abs=1e-12)


def test_conditional_mi_of_a_correlated_pair_is_the_textbook_value():
    rho = 0.8
    cov = np.array([[1, rho], [rho, 1.0]])
    assert gaussian_mi(cov, [0], [1]) == pytest.approx(-0.5 * math.log(1 - rho ** 2))
    assert gaussian_mi(np.eye(2), [0], [1]) == 0.0
    assert gaussian_mi(np.ones((2, 2)), [0], [1]) == math.inf   # deterministic relation


def test_gaussian_kl_agrees_with_the_diagonal_kl_of_the_toolkit():
    rng = np.random.default_rng(1)
    m1, m2 = rng.standard_normal(5), rng.standard_normal(5)
    lv1, lv2 = rng.standard_normal(5), rng.standard_normal(5)
    ours = gaussian_kl(m1, np.diag(np.exp(lv1)), m2, np.diag(np.exp(lv2)))
    theirs = gaussian_kl_diag(*(torch.as_tensor(t)[None] for t in (m1, lv1, m2, lv2)))
    assert ours == pytest.approx(float(theirs), rel=1e-10)


def test_closed_form_helpers_reject_bad_arguments():
    cov = np.eye(4)
    with pytest.raises(ValueError, match="disjoint"):
        gaussian_conditional_mi(cov, [0, 1], [1, 2])
    with pytest.raises(ValueError, match="outside"):
        gaussian_conditional_mi(cov, [0], [7])
    with pytest.raises(ValueError, match="square"):
        gaussian_mi(np.ones((2, 3)), [0], [1])
    with pytest.raises(ValueError, match="symmetric"):
        gaussian_mi(np.array([[1.0, 0.5], [0.0, 1.0]]), [0], [1])
    with pytest.raises(ValueError, match="at least one"):
        gaussian_mi(cov, [], [1])
    with pytest.raises(ValueError, match="noise_std"):
        LinearGaussianEncoder.make(np.ones((2, 3)), noise_std=-1.0)
    with pytest.raises(ValueError, match="exactly one"):
        LinearGaussianEncoder.make(np.ones((2, 3)))
    with pytest.raises(ValueError, match="t1_dim"):
        MultiViewWorld(nuisance_dim=2, t1_dim=3)
    with pytest.raises(ValueError, match="noise_std"):
        MultiViewWorld(noise_std=-0.1)
    with pytest.raises(ValueError, match="inputs"):
        MultiViewWorld().exact_information(LinearGaussianEncoder.make(np.ones((2, 3)), noise_std=1.0))
    with pytest.raises(TypeError, match="LinearGaussianEncoder"):
        MultiViewWorld().exact_information(np.ones((2, 10)))
    with pytest.raises(ValueError, match="cmi|mi"):
        ConditionalGaussian(2, 2, 2, -1.0)


# ------------------------------------------------------------------------------- the world against large samples
@pytest.mark.slow
def test_world_closed_forms_match_large_sample_plug_in_estimates():
    world = MultiViewWorld(seed=3)
    rng = np.random.default_rng(3)
    enc1, enc2 = _random_encoder(rng, 8, world.view_dim, 0.5), _random_encoder(rng, 8, world.view_dim, 0.5)
    exact = world.exact_information(enc1, enc2)

    n = 200_000
    batch = world.sample(n, torch.Generator().manual_seed(0), dtype=torch.float64)
    noise = np.random.default_rng(4)
    z1 = batch.v1.numpy() @ enc1.weight.T + enc1.bias + noise.standard_normal((n, 8)) @ enc1.noise_factor().T
    z2 = batch.v2.numpy() @ enc2.weight.T + enc2.bias + noise.standard_normal((n, 8)) @ enc2.noise_factor().T
    samples = {"z1": z1, "z2": z2, "v1": batch.v1.numpy(), "v2": batch.v2.numpy(), "s": batch.s.numpy(),
               "t1": batch.t1.numpy(), "n1": batch.n1.numpy()}
    # plug-in bias is O(d^2 / n) ~ 1e-3 nats here; sampling error is similar
    tol = 0.02
    assert _plug_in(samples, ["z1"], ["z2"]) == pytest.approx(exact["i_z1_z2"], abs=tol)
    assert _plug_in(samples, ["z1"], ["v1"], ["v2"]) == pytest.approx(exact["superfluous_1"], abs=tol)
    assert _plug_in(samples, ["z2"], ["v2"], ["v1"]) == pytest.approx(exact["superfluous_2"], abs=tol)
    assert _plug_in(samples, ["z1"], ["s"]) == pytest.approx(exact["i_z1_s"], abs=tol)
    assert _plug_in(samples, ["z1"], ["t1"]) == pytest.approx(exact["i_z1_t1"], abs=tol)
    assert _plug_in(samples, ["z1"], ["n1"]) == pytest.approx(exact["i_z1_n1"], abs=tol)
    view = world.view_information()
    assert _plug_in(samples, ["v1"], ["v2"]) == pytest.approx(view["i_v1_v2"], abs=tol)
    assert _plug_in(samples, ["v1"], ["s"]) == pytest.approx(view["i_v1_s"], abs=tol)
    assert exact["superfluous_1"] > 0.1 and exact["i_z1_t1"] > 0.01   # the checks are not vacuous


def test_superfluous_information_matches_monte_carlo_with_exact_densities():
    # I(z1;v1|v2) = E[log p(z1|v1) - log p(z1|v2)], densities from scipy: independent of the log-det formula
    world = MultiViewWorld(seed=5, noise_std=0.5)
    rng = np.random.default_rng(5)
    enc = _random_encoder(rng, 3, world.view_dim, 0.4, np.full(3, 0.7))
    given_v2 = world.true_conditional_given_v2(enc)
    n = 100_000
    batch = world.sample(n, torch.Generator().manual_seed(1), dtype=torch.float64)
    v1, v2 = batch.v1.numpy(), batch.v2.numpy()
    z1 = v1 @ enc.weight.T + enc.bias + rng.standard_normal((n, 3)) @ enc.noise_factor().T
    log_p_v1 = stats.multivariate_normal(np.zeros(3), enc.noise_cov).logpdf(z1 - v1 @ enc.weight.T - enc.bias)
    log_p_v2 = stats.multivariate_normal(np.zeros(3), given_v2.noise_cov).logpdf(
        z1 - v2 @ given_v2.weight.T - given_v2.bias)
    ratio = log_p_v1 - log_p_v2
    exact = world.exact_information(enc)["superfluous_1"]
    assert abs(ratio.mean() - exact) < 4 * ratio.std() / math.sqrt(n)


def test_bayes_accuracy_matches_the_empirical_best_linear_rule():
    world = MultiViewWorld(seed=2)
    enc = _random_encoder(np.random.default_rng(2), 8, world.view_dim, 0.6, np.full(8, 0.5))
    n = 100_000
    batch = world.sample(n, torch.Generator().manual_seed(2), dtype=torch.float64)
    z = batch.v1.numpy() @ enc.weight.T + enc.bias + np.random.default_rng(9).standard_normal((n, 8)) * 0.5
    for task, score_name in (("shared", "shared_score"), ("t1", "t1_score")):
        label = getattr(batch, f"{task}_label").numpy()
        # the Bayes rule is sign(E[score | z]): the population regression, taken from the closed-form covariance
        cov, b = world.joint_covariance(enc)
        coef = np.linalg.solve(cov[np.ix_(b["z1"], b["z1"])], cov[np.ix_(b["z1"], b[score_name])])[:, 0]
        acc = ((z - enc.bias) @ coef > 0).astype(int) == label
        expected = world.bayes_accuracy(enc, task)
        assert abs(acc.mean() - expected) < 4 * math.sqrt(expected * (1 - expected) / n)


# ----------------------------------------------------------------------- the inequalities, over random encoders
encoders = st.builds(lambda seed, k, scale, noise_std: (seed, k, scale, noise_std), st.integers(0, 10_000),
                     st.integers(1, 8), st.floats(0.01, 3.0), st.floats(0.0, 1.0))


@given(encoders)
def test_kl_bound_is_at_least_the_exact_superfluous_information(case):
    # Theorem: E_{v1,v2} KL(p(z1|v1) || q(.|v2)) = I(z1;v1|v2) + E_{v2} KL(p(z1|v2) || q(.|v2)) for ANY q that
    # sees v2 only; here q is a second, independent linear-Gaussian encoder (no weight sharing needed).
    seed, k, scale, noise_std = case
    world = MultiViewWorld(noise_std=noise_std, seed=seed % 7)
    rng = np.random.default_rng(seed)
    enc1, enc2 = _random_encoder(rng, k, world.view_dim, scale), _random_encoder(rng, k, world.view_dim)
    cmi = world.exact_information(enc1)["superfluous_1"]
    kl = world.expected_kl(enc1, enc2)
    assert kl >= cmi - 1e-9
    # ... with equality for the true conditional, and the gap is exactly E KL(p(z1|v2) || q)
    truth = world.true_conditional_given_v2(enc1)
    assert world.expected_kl(enc1, truth) == pytest.approx(cmi, rel=1e-6, abs=1e-9)
    delta = (truth.weight - enc2.weight) @ world.loadings("v2")
    gap = expected_gaussian_kl(truth.noise_cov, enc2.noise_cov, delta @ delta.T, truth.bias - enc2.bias)
    assert kl - cmi == pytest.approx(gap, rel=1e-6, abs=1e-8)


@given(encoders)
def test_club_variant_is_at_least_the_exact_superfluous_information(case):
    # CLUB(v1 -> z1) with the encoder's own density >= I(v1;z1), and I(z1;z2) <= I(z1;v2): so
    # CLUB - I(z1;z2) >= I(v1;z1) - I(z1;v2) = I(z1;v1|v2).  (Any lower bound I_hat <= I(z1;z2) only adds slack.)
    seed, k, scale, noise_std = case
    world = MultiViewWorld(noise_std=noise_std, seed=seed % 5)
    rng = np.random.default_rng(seed + 1)
    enc1, enc2 = _random_encoder(rng, k, world.view_dim, scale), _random_encoder(rng, k, world.view_dim)
    info = world.exact_information(enc1, enc2)
    club = world.club_value(enc1, 1)
    assert club >= info["i_z1_v1"] - 1e-9
    assert info["i_z1_v2"] >= info["i_z1_z2"] - 1e-9
    assert club - info["i_z1_z2"] >= info["superfluous_1"] - 1e-9
    assert info["superfluous_1"] == pytest.approx(info["i_z1_v1"] - info["i_z1_v2"], abs=1e-8)


def test_deterministic_encoders_have_infinite_superfluous_information():
    world = MultiViewWorld()
    enc = LinearGaussianEncoder.make(np.random.default_rng(0).standard_normal((3, world.view_dim)), noise_std=0.0)
    assert world.exact_information(enc)["superfluous_1"] == math.inf


def test_a_minimal_encoder_of_the_shared_part_still_keeps_view_noise():
    # z1 reads only the shared block of v1 (s + e1): it knows nothing of n1/t1, yet e1 makes it superfluous > 0;
    # without view noise (e1 = e2 = 0) the same encoder has no superfluous information at all.
    for noise_std, positive in ((0.3, True), (0.0, False)):
        world = MultiViewWorld(noise_std=noise_std, seed=1)
        read_s = np.linalg.inv(world.mixing1)[: world.shared_dim]
        enc = LinearGaussianEncoder.make(2.0 * read_s, noise_std=1.0)
        info = world.exact_information(enc)
        assert info["i_z1_t1"] == pytest.approx(0.0, abs=1e-9)
        assert (info["superfluous_1"] > 0.1) == positive
        if not positive:
            assert info["superfluous_1"] == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------------------------- non-linear world
def test_nonlinear_world_is_an_invertible_map_of_the_linear_one():
    linear, nonlinear = MultiViewWorld(seed=4), NonlinearMultiViewWorld(seed=4)
    assert nonlinear.view_information() == linear.view_information()   # invariance: same truth
    gen_a, gen_b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = linear.sample(50_000, gen_a, torch.float64), nonlinear.sample(50_000, gen_b, torch.float64)
    assert torch.allclose(a.s, b.s) and torch.equal(a.t1_label, b.t1_label)
    for view in (1, 2):
        va, vb = getattr(a, f"v{view}"), getattr(b, f"v{view}")
        assert torch.allclose(nonlinear.linearize(vb, view), va, atol=1e-8)
        # the observed views are far from Gaussian (asinh squashes the tails): excess kurtosis well below 0
        assert stats.kurtosis(vb.numpy(), axis=0).mean() < -0.3
        assert abs(stats.kurtosis(va.numpy(), axis=0).mean()) < 0.1
    with pytest.raises(ValueError, match="nonlinearity"):
        NonlinearMultiViewWorld(nonlinearity="relu")


# ------------------------------------------------------------------------------------------ conditional Gaussian
@pytest.mark.parametrize("dims, cmi", [((1, 1, 1), 0.5), ((3, 2, 4), 1.5), ((2, 5, 1), 3.0), ((4, 4, 3), 0.0)])
def test_conditional_gaussian_truth_matches_monte_carlo_and_plug_in(dims, cmi):
    task = ConditionalGaussian(*dims, cmi=cmi, seed=sum(dims))
    assert task.cmi_closed_form == pytest.approx(cmi, abs=1e-9)
    x, y, z = task.sample(100_000, torch.Generator().manual_seed(3), dtype=torch.float64)
    ratio = task.log_density_ratio(x, y, z)
    assert abs(ratio.mean() - cmi) < 4 * ratio.std() / math.sqrt(len(ratio)) + 1e-9
    plug = _plug_in({"x": x.numpy(), "y": y.numpy(), "z": z.numpy()}, ["x"], ["y"], ["z"])
    assert plug == pytest.approx(cmi, abs=0.01)


def test_conditional_gaussian_separates_conditional_from_plain_dependence():
    task = ConditionalGaussian(2, 2, 3, cmi=0.0, z_strength=2.0, seed=1)
    assert task.cmi_closed_form == pytest.approx(0.0, abs=1e-9)
    assert task.mi_xy > 0.1      # X and Y are dependent through Z, yet independent given Z


@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.floats(0.0, 3.0))
def test_kl_to_any_q_of_z_bounds_the_conditional_mi(seed, dx, dy, dz, cmi):
    # E KL(p(y|x,z) || q(y|z)) >= I(X;Y|Z) for any linear-Gaussian q(y|z): the KL-type conditional bound, checked
    # against an exact answer on a general task (equality when q is the true p(y|z)).
    task = ConditionalGaussian(dx, dy, dz, cmi=cmi, seed=seed)
    gain_xz, cov_xz = task.conditional("y", ("x", "z"))
    gain_z, cov_z = task.conditional("y", ("z",))
    rng = np.random.default_rng(seed)
    q_gain = gain_z + rng.standard_normal(gain_z.shape) * rng.uniform(0, 1)
    q_cov = np.diag(rng.uniform(0.2, 3.0, dy))
    xz = np.concatenate([task.blocks["x"], task.blocks["z"]])
    load = task.loadings
    for gain, cov in ((gain_z, cov_z), (q_gain, q_cov)):
        delta = gain_xz @ load[xz] - gain @ load[task.blocks["z"]]
        value = expected_gaussian_kl(cov_xz, cov, delta @ delta.T, np.zeros(dy))
        assert value >= task.cmi - 1e-7
        if gain is gain_z:
            assert value == pytest.approx(task.cmi, abs=1e-7)
