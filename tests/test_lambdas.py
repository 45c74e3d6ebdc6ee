"""Lambda's schedule and automatic lambda: the shape of the schedule, the multiplier moving the right way with the
slack, scale invariance, bit-identical resume mid-warm-up and mid-ramp, and lambda = 0 left as plain SimCLR."""
import math

import pytest
import torch

import superinfo.objective as objective
from fixtures_state import TwoViews, assert_same_state, log_rows, tiny_config
from superinfo.lambdas import AutoLambda, LambdaSchedule
from superinfo.trainer import load_checkpoint, resume, train
from superinfo.world import run_world


def test_schedule_holds_at_zero_then_ramps_linearly():
    s = LambdaSchedule(0.3, warmup_steps=4, ramp_steps=3)
    assert [s(i) for i in range(9)] == pytest.approx([0, 0, 0, 0, 0.1, 0.2, 0.3, 0.3, 0.3])
    assert [LambdaSchedule(0.3, 2, 0)(i) for i in range(4)] == [0, 0, 0.3, 0.3]
    assert all(LambdaSchedule(0.0, 0, 0)(i) == 0.0 for i in range(3))


def _drive(auto: AutoLambda, mi_after_warmup, steps=60, sup=2.0):
    """Feed a constant contrastive estimate of 1.0 through the warm-up, then ``mi_after_warmup(step)``."""
    values = []
    for step in range(steps):
        mi = 1.0 if step < auto.warmup_steps else mi_after_warmup(step)
        auto.update(step, torch.tensor(mi), torch.tensor(sup))
        values.append(auto.value(step + 1))
    return values


def test_auto_lambda_starts_from_the_runs_own_scale_and_moves_with_the_slack():
    auto = AutoLambda(warmup_steps=10, total_steps=60, slack=0.05)
    kept = _drive(auto, lambda step: 1.0)          # the estimate holds: 5% of slack left, so lambda grows
    assert float(kept[9]) == pytest.approx(0.01 * 1.0 / 2.0)          # lambda_0 = 1% of I_ref / U_ref
    assert float(kept[-1]) > 2 * float(kept[9])
    auto = AutoLambda(warmup_steps=10, total_steps=60, slack=0.05)
    lost = _drive(auto, lambda step: 0.9)          # 10% lost (> the 5% slack, < 3x): lambda shrinks
    assert float(lost[-1]) < float(lost[9])
    auto = AutoLambda(warmup_steps=10, total_steps=60, slack=0.05)
    collapsing = _drive(auto, lambda step: 0.5)    # collapse guard: at least 10% down per step
    assert float(collapsing[20]) <= float(collapsing[9]) * 0.9 ** 10 * 1.001
    assert auto.value(5) == 0.0                    # warm-up: exactly 0, a float (the step stays plain NT-Xent)


def test_a_still_climbing_estimate_raises_lambda_no_faster_than_one_that_holds():
    # a stale reference (the estimate still climbs after the warm-up) must not drive lambda into a collapse
    holds = _drive(AutoLambda(warmup_steps=10, total_steps=60, slack=0.05), lambda step: 1.0)
    climbs = _drive(AutoLambda(warmup_steps=10, total_steps=60, slack=0.05), lambda step: 1.0 + 0.2 * (step - 9))
    assert float(climbs[-1]) == pytest.approx(float(holds[-1]))
    growth = math.log(float(holds[-1]) / float(holds[9]))
    assert growth == pytest.approx(100 * 0.05, rel=0.05)     # at most rate x slack over the run


def test_auto_lambda_accepts_a_one_step_run():
    from superinfo.lambdas import lambda_weights
    _, controller = lambda_weights(0.0, 0.0, True, warmup_steps=0, ramp_steps=0, total_steps=1)
    assert controller.warmup_steps == 1 and controller.value(0) == 0.0


def test_a_wider_slack_lets_lambda_grow_faster():
    finals = []
    for slack in (0.02, 0.1):
        auto = AutoLambda(warmup_steps=5, total_steps=40, slack=slack)
        finals.append(float(_drive(auto, lambda step: 1.0, steps=40)[-1]))
    assert finals[1] > finals[0]


def test_auto_lambda_is_invariant_to_the_scale_of_the_superfluous_term(monkeypatch):
    options = dict(steps=240, batch_size=64, probe_samples=200, probe_steps=5, log_every=0)
    plain = run_world("auto", bound="kl", seed=0, **options)
    original = objective.kl_conditional_bound
    monkeypatch.setattr(objective, "kl_conditional_bound", lambda *a: 100 * original(*a))
    scaled = run_world("auto", bound="kl", seed=0, **options)
    assert plain["lambda_final"] > 0
    assert scaled["lambda_final"] == pytest.approx(plain["lambda_final"] / 100, rel=1e-3)
    # the same trained encoder: its exact information agrees (float rounding aside)
    for key in ("superfluous_1", "i_z1_s", "i_z1_z2"):
        assert scaled["after"][key] == pytest.approx(plain["after"][key], rel=1e-3, abs=1e-4), key


def test_world_auto_reports_lambda_final():
    r = run_world("auto", bound="kl", seed=1, steps=120, batch_size=64, probe_samples=200, probe_steps=5)
    assert r["lambda"] == "auto" and r["lambda_final"] > 0 and math.isfinite(r["superfluous_nats"])
    with pytest.raises(ValueError, match="lambda_b must be left out"):
        run_world("auto", 0.1, steps=2)


@pytest.mark.parametrize("name, overrides", [
    ("mid-warm-up", dict(epochs=4, lambda_warmup_epochs=2, lambda_ramp_epochs=1)),   # stops inside the warm-up
    ("mid-ramp", dict(epochs=3, lambda_warmup_epochs=0.5, lambda_ramp_epochs=2)),    # stops inside the ramp
    ("auto", dict(epochs=3, lambda_a="auto", lambda_warmup_epochs=0.5)),             # stops with lambda moving
])
def test_resume_is_bit_identical_inside_the_schedule(tmp_path, name, overrides):
    train(tiny_config(tmp_path / "a", **overrides), pretrain_data=TwoViews())
    train(tiny_config(tmp_path / "b", stop_after_epochs=1, **overrides), pretrain_data=TwoViews())
    resume(tmp_path / "b", pretrain_data=TwoViews(), progress=False)
    a, b = load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert_same_state(a, b)
    rows = log_rows(tmp_path / "a")
    assert rows == log_rows(tmp_path / "b")
    lambdas = [float(r["lambda_a"]) for r in rows]
    assert lambdas[0] == 0.0 and lambdas[-1] > 0            # held at 0 first, then on
    if name == "auto":
        assert a["auto_lambda"]["log_lambda"] == b["auto_lambda"]["log_lambda"]
    else:
        assert max(lambdas) == pytest.approx(0.1)


def test_lambda_zero_leaves_the_contrastive_loss_bit_for_bit(tmp_path):
    """At lambda = 0 the penalty machinery is inert: align is then SimCLR (deterministic) and MIB is noisy SimCLR
    (superinfo at lambda = 0), bit for bit."""
    for a, b in ((dict(method="simclr"), dict(method="align")), (dict(method="superinfo"), dict(method="mib"))):
        train(tiny_config(tmp_path / a["method"], lambda_a=0.0, **a), pretrain_data=TwoViews())
        train(tiny_config(tmp_path / b["method"], lambda_a=0.0, **b), pretrain_data=TwoViews())
        assert_same_state(load_checkpoint(tmp_path / a["method"] / "checkpoint.pt"),
                          load_checkpoint(tmp_path / b["method"] / "checkpoint.pt"))
    with pytest.raises(ValueError, match="method 'simclr' is NT-Xent alone"):
        tiny_config(tmp_path / "x", method="simclr", lambda_a=0.1).validate()


def test_lambda_a_and_lambda_b_differ_only_with_amortized_sigma():
    from superinfo import GaussianPosteriorHead, SuperInfoLoss

    torch.manual_seed(0)
    v1, v2 = torch.randn(32, 6), torch.randn(32, 6)
    for sigma, differ in ((1.0, False), ("learned", False), ("amortized", True)):
        head = GaussianPosteriorHead(6, 4, hidden=8, layers=1, sigma=sigma)
        terms = SuperInfoLoss(4, 0.1)(head(v1), head(v2))
        assert (not torch.allclose(terms.superfluous_a, terms.superfluous_b)) == differ, sigma
