"""The registry, the critics and the estimator modules."""
import math

import numpy as np
import pytest
import torch

import mi_toolkit
from mi_toolkit import bounds as B
from mi_toolkit.critics import BilinearCritic, ConcatCritic, SeparableCritic, critic
from synthetic import CorrelatedGaussian

ALL = mi_toolkit.available_estimators()


def test_registry_lists_every_estimator_of_the_design():
    assert set(ALL) >= {"infonce", "nwj", "dv", "mine", "js", "smile", "ba", "doe", "club", "club_sample", "l1out"}


@pytest.mark.parametrize("name", ALL)
def test_every_estimator_runs_and_its_loss_reaches_every_parameter(name, generator):
    torch.manual_seed(0)
    est = mi_toolkit.estimator(name, 3, 2, hidden=16)
    x, y = torch.randn(8, 3, generator=generator), torch.randn(8, 2, generator=generator)
    out = est(x, y)
    assert out.mi.shape == () and torch.isfinite(out.mi) and torch.isfinite(out.loss)
    assert out.direction == est.direction in ("lower", "upper", "estimate")
    out.loss.backward()
    for pname, p in est.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ALL)
def test_the_estimate_is_differentiable_in_the_samples(name, generator):
    # SuperInfo uses out.mi as a loss term for an encoder, so gradients must reach x and y
    est = mi_toolkit.estimator(name, 3, 3, hidden=16)
    x = torch.randn(8, 3, generator=generator, requires_grad=True)
    y = torch.randn(8, 3, generator=generator, requires_grad=True)
    gx, gy = torch.autograd.grad(est(x, y).mi, (x, y))
    assert torch.isfinite(gx).all() and torch.isfinite(gy).all() and gy.abs().sum() > 0


def _bound_by_hand(name: str, scores: np.ndarray) -> float:
    """The bound written out over the score matrix: the positives S_ii, and every one of the N(N-1) off-diagonal
    entries as a negative (InfoNCE's softmax runs over the whole row, positive included)."""
    n = scores.shape[0]
    positive = sum(scores[i, i] for i in range(n)) / n
    negatives = [scores[i, j] for i in range(n) for j in range(n) if i != j]

    def log_mean_exp(values):
        top = max(values)
        return top + math.log(sum(math.exp(v - top) for v in values) / len(values))

    if name == "infonce":
        return sum(scores[i, i] - log_mean_exp(list(scores[i])) for i in range(n)) / n
    if name == "nwj":
        return positive - math.exp(log_mean_exp(negatives) - 1.0)
    if name == "dv":
        return positive - log_mean_exp(negatives)
    if name == "smile":   # the default clip tau = 5 on the partition term only
        return positive - log_mean_exp([min(max(v, -5.0), 5.0) for v in negatives])
    if name == "js":      # reported as NWJ on f + 1
        return positive + 1.0 - math.exp(log_mean_exp(negatives))
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["infonce", "nwj", "dv", "smile", "js"])
@pytest.mark.parametrize("critic_name", ["separable", "bilinear", "concat"])
def test_estimators_use_all_n_times_n_minus_1_negatives(name, critic_name, generator, monkeypatch):
    # torch-mist's one-negative defaults overshoot; ours evaluate the bound on the whole score matrix, and never
    # count a positive pair among the negatives
    est = mi_toolkit.estimator(name, 2, 2, critic=critic_name, hidden=8)
    x, y = torch.randn(16, 2, generator=generator), torch.randn(16, 2, generator=generator)
    # an untrained critic scores every pair alike, which would hide a positive counted as a negative: lift the
    # diagonal so that such a mistake moves the value far beyond the tolerance
    critic_forward = est.critic.forward
    monkeypatch.setattr(est.critic, "forward", lambda a, b: critic_forward(a, b) + 3.0 * torch.eye(16))
    scores = est.critic(x, y).detach().double().numpy()
    assert est(x, y).mi.item() == pytest.approx(_bound_by_hand(name, scores), rel=1e-5, abs=1e-5)


def test_concat_critic_scores_every_pair(generator):
    c = ConcatCritic(2, 3, hidden=8, layers=1)
    x, y = torch.randn(5, 2, generator=generator), torch.randn(5, 3, generator=generator)
    brute = torch.stack([torch.stack([c.net(torch.cat([x[i], y[j]])).squeeze() for j in range(5)]) for i in range(5)])
    assert torch.allclose(c(x, y), brute, atol=1e-6)


def test_separable_and_bilinear_critics_have_the_right_form(generator):
    x, y = torch.randn(4, 3, generator=generator), torch.randn(4, 2, generator=generator)
    s = SeparableCritic(3, 2, hidden=8, layers=1, embed_dim=5)
    assert torch.allclose(s(x, y), s.g(x) @ s.h(y).T, atol=1e-6)
    # g is an ordinary MLP on x alone: rebuild it by hand from the stacked weights
    w0, b0, w1, b1 = s.weights[0][0], s.biases[0][0], s.weights[1][0], s.biases[1][0]
    assert torch.allclose(s.g(x), torch.relu(x @ w0[:3] + b0) @ w1 + b1, atol=1e-6)
    assert s.weights[0].shape == (2, 3, 8) and torch.all(s.weights[0][1, 2:] == 0)  # y's padding row
    b = BilinearCritic(3, 2)
    assert torch.allclose(b(x, y), x @ b.weight @ y.T)
    with pytest.raises(ValueError, match="valid critics: bilinear, concat, quadratic, separable"):
        critic("mlp", 2, 2)


def test_infonce_cap_and_bound_directions():
    assert mi_toolkit.estimator("infonce", 2, 2).cap(64) == pytest.approx(math.log(64))
    assert mi_toolkit.estimator("smile", 2, 2).cap(64) is None
    assert mi_toolkit.estimator("club", 2, 2).direction == "upper"
    assert mi_toolkit.estimator("ba", 2, 2, entropy_y=1.0).direction == "lower"
    assert mi_toolkit.estimator("ba", 2, 2).direction == "estimate"  # H(Y) fitted, so no longer a bound
    assert mi_toolkit.estimator("doe", 2, 2).direction == "estimate"


def test_mine_moving_average_updates_only_in_training(generator):
    est = mi_toolkit.estimator("mine", 2, 2, hidden=8, ema_rate=0.5)
    x, y = torch.randn(8, 2, generator=generator), torch.randn(8, 2, generator=generator)
    est(x, y)
    first = est.log_running_mean.clone()
    assert torch.isfinite(first)
    est.eval()
    est(x * 2, y)
    assert torch.equal(est.log_running_mean, first)
    est.train()
    est(x * 2, y)
    lme = B.logmeanexp_offdiag(est.critic(x * 2, y)).detach()
    expected = torch.logaddexp(first + math.log(0.5), lme + math.log(0.5))
    assert est.log_running_mean.item() == pytest.approx(expected.item(), rel=1e-5)


def test_ba_without_entropy_uses_the_gaussian_entropy_of_the_data(generator):
    task = CorrelatedGaussian(3, 1.0)
    est = mi_toolkit.estimator("ba", 3, 3, hidden=8)
    for _ in range(200):
        est(*task.sample(256, generator))
    assert est.gaussian_entropy_estimate() == pytest.approx(task.entropy_y, abs=0.02)


def test_club_sample_never_pairs_a_row_with_itself(generator, monkeypatch):
    seen = []
    original = B.club_sample_upper_bound
    est = mi_toolkit.estimator("club_sample", 2, 2, hidden=8)
    y = torch.arange(10, dtype=torch.float32).repeat(2, 1).T
    x = torch.zeros(10, 2)

    def spy(log_q_joint, log_q_shuffled):
        seen.append((log_q_joint.detach(), log_q_shuffled.detach()))
        return original(log_q_joint, log_q_shuffled)

    monkeypatch.setattr(B, "club_sample_upper_bound", spy)
    for _ in range(20):
        est(x, y)
    # with x constant, log q depends on y only: equal joint and shuffled values would mean a self-pairing
    assert all((a != b).all() for a, b in seen)


# ---------------------------------------------------------------------------------------------- bad input
def test_unknown_estimator_lists_the_valid_names():
    with pytest.raises(ValueError, match="valid estimators: ba, club, club_sample, doe, dv"):
        mi_toolkit.estimator("mutual", 2, 2)


def test_unsupported_options_name_the_estimator():
    with pytest.raises(TypeError, match="'infonce' got an unsupported argument.*clip"):
        mi_toolkit.estimator("infonce", 2, 2, clip=5.0)


@pytest.mark.parametrize("clip", [0, -2.0, float("nan"), float("inf")])
def test_invalid_tau_is_refused(clip):
    with pytest.raises(ValueError, match="clip"):
        mi_toolkit.estimator("smile", 2, 2, clip=clip)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3"])
def test_invalid_dims_are_refused(bad):
    with pytest.raises(ValueError, match="x_dim"):
        mi_toolkit.estimator("infonce", bad, 2)


@pytest.mark.parametrize("name", ["infonce", "club", "ba"])
def test_estimators_reject_bad_batches(name):
    est = mi_toolkit.estimator(name, 3, 2, hidden=8)
    with pytest.raises(ValueError, match="same batch size, got 8 and 7"):
        est(torch.zeros(8, 3), torch.zeros(7, 2))
    with pytest.raises(ValueError, match="batch size must be at least 2"):
        est(torch.zeros(1, 3), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="x contains 1 NaN/inf"):
        est(torch.zeros(4, 3).index_put_((torch.tensor([0]), torch.tensor([0])), torch.tensor(float("nan"))),
            torch.zeros(4, 2))
    with pytest.raises(ValueError, match="y contains .* NaN/inf"):
        est(torch.zeros(4, 3), torch.full((4, 2), float("inf")))
    with pytest.raises(ValueError, match=r"y must have shape \[n, d\] \(2 dims\), got 3 dims"):
        est(torch.zeros(4, 3), torch.zeros(4, 2, 1))
    with pytest.raises(ValueError, match="x has 4 features but the .* estimator was built for 3"):
        est(torch.zeros(4, 4), torch.zeros(4, 2))
    with pytest.raises(TypeError, match="x must be a torch.Tensor or numpy array"):
        est("abc", torch.zeros(4, 2))


def test_estimators_accept_numpy_arrays():
    est = mi_toolkit.estimator("infonce", 2, 2, hidden=8)
    out = est(np.zeros((4, 2)), np.ones((4, 2)))
    assert torch.isfinite(out.mi)


@pytest.mark.parametrize("backend", ["naive", "chunked"])
def test_infonce_through_the_fused_kernel_equals_the_score_matrix_path(backend, generator):
    torch.manual_seed(0)
    fused = mi_toolkit.estimator("infonce", 3, 3, hidden=16, backend=backend)
    plain = mi_toolkit.estimator("infonce", 3, 3, hidden=16, backend="matrix")
    plain.load_state_dict(fused.state_dict())
    x, y = torch.randn(40, 3, generator=generator), torch.randn(40, 3, generator=generator)
    a, b = fused(x, y), plain(x, y)
    assert a.mi.item() == pytest.approx(b.mi.item(), abs=1e-5)
    a.loss.backward()
    b.loss.backward()
    for p, q in zip(fused.parameters(), plain.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5)


def test_infonce_backend_is_checked():
    with pytest.raises(ValueError, match="backend must be one of auto, matrix"):
        mi_toolkit.estimator("infonce", 2, 2, backend="cuda")
