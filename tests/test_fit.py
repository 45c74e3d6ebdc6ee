"""estimate(): convergence against the truth, the trust signals, and bad input."""
import math
import warnings

import numpy as np
import pytest
import torch

import mi_toolkit
from mi_toolkit.fit import MIEstimateWarning, MIResult, diagnose
from synthetic import CorrelatedGaussian

# Measured spread of estimate() on CorrelatedGaussian(2, 1.0) (truth 1 nat; CLUB's closed form 3.44), 3000 samples,
# 400 steps, batch 64, lr 1e-3, hidden 64, data seeds 100..105 with fit seeds 0..5: name -> (mean, std over seeds).
# Reproduce: python benchmarks/measure_convergence_spread.py
MEASURED = {
    "ba": (1.001, 0.052), "club": (3.206, 0.242), "club_sample": (3.222, 0.297), "doe": (0.988, 0.029), "dv":
    (0.933, 0.031), "infonce": (0.948, 0.029), "js": (0.961, 0.047), "l1out": (1.031, 0.038), "mine": (0.958,
    0.037), "nwj": (0.944, 0.031), "smile": (0.971, 0.041),
}
CONVERGENCE_TASK = CorrelatedGaussian(2, 1.0)


def fit_convergence_case(name, seed=0):
    x, y = CONVERGENCE_TASK.sample(3000, torch.Generator().manual_seed(100 + seed))
    # H(Y) is the raw y's: no preprocessing with it
    kwargs = {"entropy_y": CONVERGENCE_TASK.entropy_y, "preprocess": None} if name == "ba" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MIEstimateWarning)
        return mi_toolkit.estimate(x, y, name, steps=400, batch_size=64, lr=1e-3, hidden=64, seed=seed, **kwargs)


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_estimate_converges_to_the_truth_within_measured_spread(name):
    result = fit_convergence_case(name)
    mean, std = MEASURED[name]
    assert abs(result.mi - mean) <= 4 * std
    truth = CONVERGENCE_TASK.mi
    if result.direction == "lower":
        assert result.mi <= truth + 4 * std
    if result.direction == "upper":
        assert result.mi >= truth
    if name in ("ba", "doe", "smile", "nwj", "infonce", "mine", "dv", "js", "l1out"):
        assert abs(result.mi - truth) <= 0.25  # close to the truth at 1 nat, not merely reproducible
    if name == "club":
        assert result.mi <= CONVERGENCE_TASK.club_with_true_conditional + 4 * std


def test_result_carries_direction_cap_stderr_and_both_values():
    result = fit_convergence_case("infonce")
    assert result.direction == "lower" and result.cap == pytest.approx(math.log(64))
    assert result.heldout_mi == result.mi and result.train_mi is not None
    assert 0 < result.stderr < 0.1 and result.std > 0
    assert result.n_eval_batches == 300 // 64   # 600 held out: 300 pick the checkpoint, 300 report
    assert len(result.history) == result.steps_run <= 400 and np.all(np.isfinite(result.history))
    assert result.best_step is not None and result.best_step <= result.steps_run
    d = result.to_dict()
    assert d["direction"] == "lower" and len(d["history"]) == result.steps_run
    assert "lower bound" in str(result) and "cap" in str(result)


def test_same_seed_same_result():
    a, b = fit_convergence_case("smile"), fit_convergence_case("smile")
    assert a.mi == b.mi and np.array_equal(a.history, b.history)


def test_saturation_near_log_n_is_flagged_and_the_cap_lifts_with_batch_size():
    task = CorrelatedGaussian(5, 8.0)
    x, y = task.sample(6000, torch.Generator().manual_seed(0))
    with pytest.warns(MIEstimateWarning, match="cap log N"):
        small = mi_toolkit.estimate(x, y, "infonce", steps=300, batch_size=16, lr=1e-3, hidden=64)
    assert small.cap - 0.25 < small.mi <= small.cap
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MIEstimateWarning)
        large = mi_toolkit.estimate(x, y, "infonce", steps=300, batch_size=128, lr=1e-3, hidden=64)
    assert large.mi > small.cap + 0.8  # more negatives let InfoNCE see past log 16


def _result(**overrides):
    base = dict(estimator="nwj", mi=2.0, stderr=0.01, std=0.1, direction="lower", cap=None, batch_size=64, steps=10,
                train_mi=2.0, train_stderr=0.01, heldout_mi=2.0, heldout_stderr=0.01, n_eval_batches=10,
                history=np.zeros(10))
    base.update(overrides)
    return MIResult(**base)


def test_diagnose_is_quiet_on_a_healthy_estimate():
    assert diagnose(_result()) == []


def test_diagnose_flags_variance_blow_up():
    assert any("variance blow-up" in w for w in diagnose(_result(std=3.0)))


def test_diagnose_flags_a_train_heldout_gap():
    found = diagnose(_result(train_mi=2.6))
    assert any("overfitted" in w for w in found)
    assert diagnose(_result(train_mi=2.6, train_stderr=0.3, heldout_stderr=0.3)) == []  # within the noise


def test_diagnose_flags_divergence():
    found = diagnose(_result(history=np.array([1.0, float("nan"), 2.0])))
    assert any("diverged" in w for w in found)


@pytest.mark.slow
def test_overfitting_on_few_samples_is_caught_on_real_data():
    task = CorrelatedGaussian(2, 1.0)
    x, y = task.sample(200, torch.Generator().manual_seed(0))
    with pytest.warns(MIEstimateWarning, match="overfitted"):
        result = mi_toolkit.estimate(x, y, "doe", steps=1500, batch_size=40, lr=3e-3, hidden=256)
    assert result.train_mi > result.heldout_mi


# ---------------------------------------------------------------------------------------------- bad input
def test_estimate_rejects_bad_arguments():
    x, y = np.zeros((100, 2)), np.zeros((100, 2))
    with pytest.raises(ValueError, match="batch_size=64 needs at least 64 training and 64 held-out rows"):
        mi_toolkit.estimate(x, y, "infonce", batch_size=64)
    with pytest.raises(ValueError, match="heldout_fraction"):
        mi_toolkit.estimate(x, y, "infonce", batch_size=8, heldout_fraction=1.0)
    with pytest.raises(ValueError, match="steps"):
        mi_toolkit.estimate(x, y, "infonce", steps=0, batch_size=8)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 2"):
        mi_toolkit.estimate(x, y, "infonce", batch_size=1)
    with pytest.raises(ValueError, match="lr"):
        mi_toolkit.estimate(x, y, "infonce", batch_size=8, lr=-1.0)
    with pytest.raises(ValueError, match="same batch size, got 100 and 99"):
        mi_toolkit.estimate(x, y[:99], "infonce", batch_size=8)
    with pytest.raises(ValueError, match="valid estimators"):
        mi_toolkit.estimate(x, y, "kraskov", batch_size=8)
    with pytest.raises(ValueError, match="NaN/inf"):
        mi_toolkit.estimate(np.full((100, 2), np.nan), y, "infonce", batch_size=8)


def test_estimate_checks_the_arguments_before_the_data_size():
    # 10 rows are too few for batch_size 64, but a misspelt name is the first thing to report
    x, y = np.zeros((10, 2)), np.zeros((10, 2))
    with pytest.raises(ValueError, match="unknown estimator 'smiel'; valid estimators"):
        mi_toolkit.estimate(x, y, "smiel")
    with pytest.raises(TypeError, match="'smile' got an unsupported argument"):
        mi_toolkit.estimate(x, y, "smile", ema_rate=0.1)
    with pytest.raises(ValueError, match="lr"):
        mi_toolkit.estimate(x, y, "smile", lr=0.0)
    with pytest.raises(ValueError, match="batch_size=128 needs at least 128 training"):
        mi_toolkit.estimate(x, y, "smile")


def test_early_stopping_keeps_the_best_check_and_stops_after_patience():
    from mi_toolkit.fit import EarlyStopping

    record = EarlyStopping(patience=2)
    assert record.check(1.0, 10, state=lambda: "at 10") and record.best_state == "at 10"
    assert not record.check(1.5, 20) and not record.stopped
    assert record.check(0.5, 30, state=lambda: "at 30") and record.checks_without_improvement == 0
    assert not record.check(0.5, 40) and not record.check(0.7, 50)    # a tie is no improvement
    assert record.stopped and (record.best_loss, record.best_step, record.best_state) == (0.5, 30, "at 30")
    diverged = EarlyStopping(patience=5)
    diverged.stop()
    assert diverged.stopped and diverged.best_step is None and diverged.best_state is None


def test_input_checks_come_back_on_even_when_the_vectorised_fit_fails():
    from mi_toolkit.fit import input_checks_off

    ests = [mi_toolkit.estimator("smile", 2, 2, hidden=8) for _ in range(2)]
    with pytest.raises(RuntimeError, match="boom"), input_checks_off(ests):
        assert not any(e.validate for e in ests)
        raise RuntimeError("boom")
    assert all(e.validate for e in ests)


def test_the_fitted_modules_are_declared_but_not_figures():
    x, y = CONVERGENCE_TASK.sample(400, torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MIEstimateWarning)
        one = mi_toolkit.estimate(x, y, "smile", steps=20, batch_size=32, hidden=8)
        two = mi_toolkit.estimate(x, y, "smile", steps=20, batch_size=32, hidden=8, seeds=2)
    assert isinstance(one.estimator_module, torch.nn.Module) and one.estimator_modules == []
    assert two.estimator_module is None and all(isinstance(m, torch.nn.Module) for m in two.estimator_modules)
    for result in (one, two):
        assert not {"estimator_module", "estimator_modules"} & set(result.to_dict())
        assert "estimator_module" not in repr(result)


def test_training_defaults_report_the_fit_settings_defaults():
    from mi_toolkit.fit import DEFAULTED_SETTINGS, FitSettings, training_defaults

    assert training_defaults("doe", 2, 2) == {key: getattr(FitSettings(), key) for key in DEFAULTED_SETTINGS}
    assert list(training_defaults("smile", 40, 40)) == list(DEFAULTED_SETTINGS)
    with pytest.raises(AttributeError):
        FitSettings().lr = 1.0   # frozen: one resolved set of settings per fit
