"""estimate() on any data (issue 16): preprocessing, guards, classical baselines, seeds in one vectorised run.
Tiny settings throughout; the full-size figures are in benchmarks/README.md."""
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.feature_selection import mutual_info_regression

import mi_toolkit
from mi_toolkit.classical import gaussian_plugin_mi, ksg_mi
from mi_toolkit.errors import ArgumentError
from mi_toolkit.fit import EstimationFailed, MIEstimateWarning, MIResult, check_bounds
from mi_toolkit.preprocess import copula_bound, copula_normal_scores, preprocess
from synthetic import Multinormal, StudentT, Transformed
from synthetic.suite import HEAVIEST_TAILED, standard_suite

TINY = dict(steps=150, batch_size=64, hidden=32, eval_every=50, patience=2, eval_batches=20)
ALL_NAMES = mi_toolkit.available_estimators() + sorted(mi_toolkit.CLASSICAL)


def sample(task, n, seed=0):
    return task.sample(n, torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ preprocessing
def test_copula_keeps_mi_and_bounds_heavy_tails():
    task = Multinormal(2, 2, 1.0)
    x, y = sample(Transformed(task, "cubic", "half-cube"), 20_000)
    x0, y0 = sample(task, 20_000)
    cx, cy = copula_normal_scores(x), copula_normal_scores(y)
    # an increasing map per coordinate: the copula of the transformed data is that of the Gaussian data
    assert torch.allclose(cx, copula_normal_scores(x0), atol=1e-5) and torch.allclose(cy, copula_normal_scores(y0), atol=1e-5)
    assert gaussian_plugin_mi(cx.numpy(), cy.numpy()) == pytest.approx(task.mi, abs=0.03)
    assert abs(gaussian_plugin_mi(x.numpy(), y.numpy()) - task.mi) > 0.1   # the raw cubes break the plug-in
    heavy_x, _ = sample(StudentT(2, 1.0, rho=0.0), 5000)
    scores = copula_normal_scores(heavy_x)
    assert heavy_x.abs().max() > 100 and scores.abs().max() <= copula_bound(5000) + 1e-6
    assert torch.allclose(scores.mean(0), torch.zeros(2), atol=1e-3) and torch.allclose(scores.std(0), torch.ones(2), atol=0.02)


def test_copula_ties_get_average_ranks_and_standardize_is_affine():
    t = torch.tensor([[1.0], [1.0], [2.0], [0.0]])
    scores = copula_normal_scores(t)
    assert scores[0] == scores[1] and scores[3] < scores[0] < scores[2]
    z = preprocess(torch.tensor([[1.0, 5.0], [3.0, 5.0]]), "standardize")
    assert torch.allclose(z[:, 0], torch.tensor([-1 / math.sqrt(2), 1 / math.sqrt(2)])) and torch.all(z[:, 1] == 0)
    with pytest.raises(ValueError, match="preprocess"):
        mi_toolkit.estimate(np.zeros((10, 1)), np.zeros((10, 1)), "smile", preprocess="rank")


# ------------------------------------------------------------------------------------------ fixes
def test_inputs_that_require_grad_are_measured_not_trained():
    x, y = sample(Multinormal(2, 2, 1.0), 800)
    x = x.clone().requires_grad_(True)
    result = mi_toolkit.estimate(x, y, "infonce", warn=False, **TINY)
    assert math.isfinite(result.mi) and x.grad is None


def test_eval_batches_must_be_positive():
    x, y = sample(Multinormal(1, 1, 0.5), 800)
    with pytest.raises(ValueError, match="eval_batches"):
        mi_toolkit.estimate(x, y, "smile", eval_batches=0, batch_size=64)
    with pytest.raises(ValueError, match="on_failure"):
        mi_toolkit.estimate(x, y, "smile", on_failure="ignore")
    with pytest.raises(ValueError, match="entropy_y"):
        mi_toolkit.estimate(x, y, "ba", entropy_y=1.0, batch_size=64)   # H(Y) of raw y, preprocessing on


# ------------------------------------------------------------------------------------------ guards
def _result(**overrides):
    base = dict(estimator="smile", mi=1.0, stderr=0.01, std=0.1, direction="lower", cap=None, batch_size=64, steps=10,
                train_mi=1.0, train_stderr=0.01, heldout_mi=1.0, heldout_stderr=0.01, n_eval_batches=10,
                history=np.zeros(10))
    base.update(overrides)
    return MIResult(**base)


def test_guards_name_what_happened_and_what_to_try():
    assert check_bounds(_result(), 10_000) is None
    assert check_bounds(_result(mi=-0.05), 10_000) is None        # at 0 within the noise: allowed
    assert "not finite" in check_bounds(_result(mi=float("nan")), 10_000)
    message = check_bounds(_result(estimator="infonce", mi=-134.5, cap=math.log(64)), 10_000)
    assert "outside its range [-log N, log N]" in message and "Try" in message
    assert "far below 0" in check_bounds(_result(estimator="mine", mi=-2.7e7), 10_000)
    assert "far below 0" in check_bounds(_result(estimator="doe", direction="estimate", mi=-1.0), 10_000)
    assert "more than 10000 samples can resolve" in check_bounds(_result(mi=8525.0), 10_000)
    # noise widens the allowance below 0, but never past 1 nat: JS on the 5+5 Student-t (seed 2) once gave
    # -189.7 +- 191.1 from one wild held-out batch of seven, and three standard errors had let it through
    assert check_bounds(_result(mi=-0.5, stderr=0.2), 10_000) is None
    message = check_bounds(_result(estimator="js", mi=-189.7, stderr=191.1, train_mi=1.387), 10_000)
    assert "far below 0" in message and "disagree" in message
    assert "far below 0" in check_bounds(_result(mi=-1.2, stderr=0.5), 10_000)


def test_a_failed_fit_is_nan_with_a_warning_or_an_error():
    # 120 rows, a wide conditional and no early stopping: DoE memorises its training rows
    x, y = sample(Multinormal(2, 2, 1.0), 120)
    kwargs = dict(steps=600, batch_size=20, lr=3e-3, hidden=256, early_stopping=False, preprocess=None)
    with pytest.warns(MIEstimateWarning, match="no estimate: .*far below 0.*Try"):
        result = mi_toolkit.estimate(x, y, "doe", **kwargs)
    assert result.failed and math.isnan(result.mi) and result.heldout_mi < 0 < result.train_mi
    assert "FAILED" in str(result)
    with pytest.raises(EstimationFailed, match="far below 0"):
        mi_toolkit.estimate(x, y, "doe", on_failure="raise", **kwargs)


@pytest.mark.parametrize("preprocessing", ["copula", None])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_heaviest_tailed_task_gives_a_value_in_range_or_the_documented_failure(name, preprocessing):
    family, task = standard_suite()[HEAVIEST_TAILED]
    x, y = sample(task, 1500)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MIEstimateWarning)
        result = mi_toolkit.estimate(x, y, name, preprocess=preprocessing, **({} if name in mi_toolkit.CLASSICAL else TINY))
    if result.failed:
        assert math.isnan(result.mi) and any("no estimate" in str(w.message) for w in caught)
        return
    assert math.isfinite(result.mi)
    assert -max(0.1, min(3 * result.stderr, 1.0)) <= result.mi <= 2 * math.log(1500)
    if name == "infonce":
        assert -math.log(64) <= result.mi <= math.log(64)
    if preprocessing == "copula" and name in ("smile", "infonce", "ksg", "doe"):
        assert abs(result.mi - task.mi) < 0.3     # and with the default preprocessing, near the truth (0.43)


# ------------------------------------------------------------------------------------------ classical
@pytest.mark.parametrize("dim, mi", [(1, 0.5), (2, 1.0), (5, 2.0)])
def test_ksg_against_gaussian_closed_forms(dim, mi):
    x, y = sample(Multinormal(dim, dim, mi, "sparse", pairs=dim), 3000)
    for variant in (1, 2):
        value = ksg_mi(x, y, k=3, variant=variant)
        if dim == 1:
            assert value == pytest.approx(mi, abs=0.06)
        else:
            # the known small-sample bias: downwards, growing with the dimension and the MI
            assert mi - 0.6 < value < mi + 0.03
    assert ksg_mi(x, y) == pytest.approx(mi, abs=0.06 if dim == 1 else 0.6)
    assert gaussian_plugin_mi(x, y) == pytest.approx(mi, abs=0.06)


def test_ksg_bias_grows_with_dimension():
    errors = [ksg_mi(*sample(Multinormal(d, d, 1.0, "sparse", pairs=d), 2000)) - 1.0 for d in (1, 4, 8)]
    assert errors[2] < errors[1] < errors[0] + 0.05 and errors[2] < -0.1


def test_ksg_matches_scikit_learn_in_one_dimension():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(2000)
    y = np.sin(2 * x) + 0.5 * rng.standard_normal(2000)
    # scikit-learn scales to unit variance and adds 1e-10 noise, then KSG-1 with k neighbours
    for k in (3, 6):
        ours = ksg_mi(x / x.std(), y / y.std(), k=k, variant=1)
        theirs = mutual_info_regression(x[:, None], y, n_neighbors=k, random_state=0)[0]
        assert ours == pytest.approx(theirs, abs=1e-4)


def test_classical_estimators_share_the_result_object():
    x, y = sample(Multinormal(2, 3, 1.0), 1000)
    for name, kwargs in (("ksg", dict(k=5, variant=2)), ("gaussian", {})):
        result = mi_toolkit.estimate(x, y, name, subsamples=6, **kwargs)
        assert result.direction == "estimate" and result.estimator == name and result.cap is None
        assert 0 < result.stderr < 0.2 and abs(result.mi - 1.0) < 0.25 and result.n_eval_batches == 6
        assert isinstance(result.to_dict(), dict) and "estimate (no bound)" in str(result)
    with pytest.raises(TypeError, match="unsupported argument"):
        mi_toolkit.estimate(x, y, "ksg", hidden=3)
    with pytest.raises(ValueError, match="variant"):
        mi_toolkit.estimate(x, y, "ksg", variant=3)


# ------------------------------------------------------------------------------------------ seeds
@pytest.mark.parametrize("name", ["smile", "doe"])
def test_seeds_in_one_vectorised_run_equal_the_per_seed_runs(name):
    x, y = sample(Multinormal(2, 2, 1.0), 1500)
    combined = mi_toolkit.estimate(x, y, name, seeds=2, warn=False, **TINY)
    singles = [mi_toolkit.estimate(x, y, name, seed=s, warn=False, **TINY) for s in (0, 1)]
    assert [p["seed"] for p in combined.per_seed] == [0, 1]
    for per_seed, single in zip(combined.per_seed, singles):
        assert per_seed["best_step"] == single.best_step and per_seed["steps_run"] == single.steps_run
        assert per_seed["mi"] == pytest.approx(single.mi, abs=2e-4)
    assert combined.mi == pytest.approx(np.mean([s.mi for s in singles]), abs=2e-4)
    assert combined.stderr == pytest.approx(np.std([s.mi for s in singles], ddof=1) / math.sqrt(2), abs=2e-4)


def test_seeds_fall_back_to_a_loop_where_the_forward_has_state():
    x, y = sample(Multinormal(1, 1, 0.5), 1000)
    result = mi_toolkit.estimate(x, y, "mine", seeds=2, warn=False, **TINY)
    single = mi_toolkit.estimate(x, y, "mine", seed=1, warn=False, **TINY)
    assert result.per_seed[1]["mi"] == single.mi


# ------------------------------------------------------------------------------------------ flexible conditionals
def test_mixture_conditional_is_a_normalised_density_with_a_consistent_matrix():
    from mi_toolkit.critics import MixtureConditional, MixtureMarginal
    torch.manual_seed(0)
    q = MixtureConditional(2, 1, hidden=16, components=3)
    x, grid = torch.randn(4, 2), torch.linspace(-30, 30, 60001)[:, None]
    assert torch.allclose(q.log_prob_matrix(x, x[:, :1]).diagonal(), q.log_prob(x, x[:, :1]), atol=1e-5)
    for row in x:
        density = q.log_prob(row.expand(len(grid), 2), grid).exp()
        assert float(torch.trapezoid(density, grid[:, 0])) == pytest.approx(1.0, abs=1e-3)
    marginal = MixtureMarginal(1, 3)
    assert float(torch.trapezoid(marginal.log_prob(grid).exp(), grid[:, 0])) == pytest.approx(1.0, abs=1e-3)


def test_a_mixture_conditional_fits_a_bimodal_conditional_that_a_gaussian_cannot():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 1, generator=g)
    sign = torch.randint(0, 2, (4000, 1), generator=g) * 2.0 - 1.0
    y = sign * x + 0.1 * torch.randn(4000, 1, generator=g)          # y | x: two modes at +x and -x
    nll = {}
    for kind in ("gaussian", "mixture"):
        torch.manual_seed(0)
        est = mi_toolkit.estimator("ba", 1, 1, hidden=32, conditional=kind, components=2)
        opt = torch.optim.Adam(est.parameters(), lr=3e-3)
        for step in range(300):
            idx = torch.randint(0, 4000, (128,), generator=g)
            loss = est(x[idx], y[idx]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            nll[kind] = float(-est.conditional.log_prob(x, y).mean())
    assert nll["mixture"] < nll["gaussian"] - 0.3


@pytest.mark.parametrize("name", ["ba", "doe", "club", "club_sample", "l1out"])
def test_every_conditional_estimator_takes_the_mixture(name):
    x, y = sample(Multinormal(2, 2, 1.0), 800)
    result = mi_toolkit.estimate(x, y, name, conditional="mixture", components=3, warn=False, **TINY)
    assert math.isfinite(result.mi) or result.failed
    with pytest.raises(ValueError, match="conditional must be one of"):
        mi_toolkit.estimator(name, 2, 2, conditional="flow")


def test_whitening_gives_identity_covariance_and_survives_rank_deficiency():
    from mi_toolkit.preprocess import whiten
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2000, 6, generator=g) @ torch.randn(6, 6, generator=g) + 3.0
    w = whiten(t)
    assert torch.allclose(w.mean(0), torch.zeros(6), atol=1e-4)
    assert torch.allclose(torch.cov(w.T), torch.eye(6), atol=1e-3)
    collinear = torch.cat([t, t[:, :1] * 2.0], dim=1)     # rank 6 of 7 columns: finite, no blow-up
    assert torch.isfinite(whiten(collinear)).all() and whiten(collinear).abs().max() < 1e4


@pytest.mark.slow
def test_wide_inputs_walk_the_ridge_path_with_sgd_from_zero():
    """Wide inputs (min dim > 32): whitened, quadratic critic from W = 0, SGD + early stopping.  On a 48+48 Gaussian
    with 3,000 rows (2,300 for training: d^2/n ~ 1) Adam fits noise first; the ridge path gives a positive bound,
    and the same figure when y is mixed by a dense matrix (the default does not use the diagonal structure)."""
    from synthetic import CorrelatedGaussian
    x, y = sample(CorrelatedGaussian(48, 1.5), 3000)
    fast = {"steps": 300, "eval_batches": 20, "warn": False}
    ridge = mi_toolkit.estimate(x, y, "infonce", lr=6e-4, **fast)   # the wide default's path, twice as fast
    assert not ridge.failed and 0.2 < ridge.mi < 1.5
    assert float(ridge.estimator_module.critic.weight.abs().max()) < 1.0
    adam = mi_toolkit.estimate(x, y, "infonce", optimizer="adam", lr=1e-3, whiten=False, **fast)
    assert adam.failed or adam.mi < ridge.mi
    mixed = y @ (torch.randn(48, 48, generator=torch.Generator().manual_seed(1)) / 48 ** 0.5)
    assert mi_toolkit.estimate(x, mixed, "infonce", lr=6e-4, **fast).mi == pytest.approx(ridge.mi, abs=0.15)
    with pytest.raises(ArgumentError, match="optimizer must be"):
        mi_toolkit.estimate(x, y, "infonce", optimizer="lbfgs")


def test_representation_sized_inputs_default_to_the_quadratic_critic():
    from mi_toolkit.critics import QuadraticCritic
    x, y = sample(Multinormal(40, 40, 2.0, "sparse", pairs=40), 3000)
    result = mi_toolkit.estimate(x, y, "infonce", steps=20, eval_every=10, warn=False)
    assert isinstance(result.estimator_module.critic, QuadraticCritic) and result.batch_size == 512
    kept = mi_toolkit.estimate(x, y, "infonce", steps=20, batch_size=64, critic="separable", hidden=16, warn=False)
    assert not isinstance(kept.estimator_module.critic, QuadraticCritic) and kept.batch_size == 64
    # the quadratic critic is the Gaussian log-ratio family: at the optimum it is the exact log density ratio
    critic = QuadraticCritic(1, 1)
    rho = 0.6
    with torch.no_grad():
        critic.weight.fill_(rho / (1 - rho ** 2))
        critic.quad_x.fill_(-rho ** 2 / (2 * (1 - rho ** 2)))
        critic.quad_y.fill_(-rho ** 2 / (2 * (1 - rho ** 2)))
    a, b = torch.randn(5, 1), torch.randn(5, 1)
    log_ratio = (-0.5 * math.log(1 - rho ** 2) - (a ** 2 - 2 * rho * a * b.T + b.T ** 2) / (2 * (1 - rho ** 2))
                 + 0.5 * (a ** 2 + b.T ** 2))
    assert torch.allclose(critic(a, b) - 0.5 * math.log(1 - rho ** 2), log_ratio, atol=1e-5)


def test_the_estimate_cli_leaves_batch_and_lr_to_estimate(tmp_path, monkeypatch, capsys):
    """``mi-toolkit estimate`` without --batch-size / --lr passes None, so estimate() picks its (wide-input)
    defaults; given flags pass through; the too-few-rows check uses the batch estimate() would pick."""
    import mi_toolkit.fit
    from mi_toolkit.fit import REPRESENTATION_DEFAULTS, training_defaults
    from synthetic.cli import main

    seen = []

    def fake_estimate(x, y, name, **kwargs):
        seen.append(kwargs)
        return "fake result"

    monkeypatch.setattr(mi_toolkit.fit, "estimate", fake_estimate)
    rng = np.random.default_rng(0)
    for name, dim in (("x", 40), ("y", 40)):
        np.save(tmp_path / f"{name}.npy", rng.normal(size=(3000, dim)).astype(np.float32))
    args = ["estimate", "--x", str(tmp_path / "x.npy"), "--y", str(tmp_path / "y.npy"), "--no-progress"]
    assert main(args) == 0
    assert seen[-1]["batch_size"] is None and seen[-1]["lr"] is None
    assert main(args + ["--batch-size", "64", "--lr", "1e-3"]) == 0
    assert seen[-1]["batch_size"] == 64 and seen[-1]["lr"] == 1e-3
    wide = training_defaults("smile", 40, 40)
    assert wide["batch_size"] == REPRESENTATION_DEFAULTS["batch_size"] and wide["optimizer"] == "sgd"
    assert training_defaults("smile", 40, 40, critic="separable")["optimizer"] == "adam"
    assert training_defaults("doe", 40, 40)["batch_size"] == 128     # conditional bounds keep the defaults
    # 600 rows: 480 for training, fewer than the wide default batch of 512 -> refused before any training
    np.save(tmp_path / "short.npy", rng.normal(size=(600, 40)).astype(np.float32))
    short = ["estimate", "--x", str(tmp_path / "short.npy"), "--y", str(tmp_path / "short.npy")]
    assert main(short) == 2
    assert "default batch size 512 (--batch-size)" in capsys.readouterr().err
