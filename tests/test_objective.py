"""The SuperInfo objective: lambda = 0 is plain NT-Xent bit for bit, the batch bounds estimate the quantities the
closed forms prove >= the exact superfluous information, gradients reach every parameter, bad input is named."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from mi_toolkit.bounds import infonce_lower_bound
from superinfo import (
    GaussianPosterior,
    GaussianPosteriorHead,
    SuperInfoLoss,
    club_conditional_bound,
    cosine_similarity_scores,
    kl_conditional_bound,
    ntxent_loss,
)
from superinfo.objective import ntxent_mi_estimate, pairwise_infonce_loss
from superinfo.world import linear_encoder
from synthetic import MultiViewWorld


def _posteriors(n=32, d=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [GaussianPosterior(torch.randn(n, d, generator=g, dtype=dtype),
                              0.3 * torch.randn(n, d, generator=g, dtype=dtype)) for _ in range(2)]


def _heads_on_world(seed, scale=0.5, sigma=1.0, z_dim=4):
    world = MultiViewWorld(seed=seed % 4)
    torch.manual_seed(seed)
    heads = [GaussianPosteriorHead(world.view_dim, z_dim, sigma=sigma).double() for _ in range(2)]
    with torch.no_grad():
        for h in heads:
            h.net[0].weight.mul_(scale / 0.3)
            h.net[0].bias.normal_()
    return world, heads


# ----------------------------------------------------------------------------------------- lambda = 0 is SimCLR
def simclr_reference(z1, z2, temperature):
    """NT-Xent written out from the SimCLR paper (Chen et al. 2020, eq. 1 and the loss over all 2N positives):
    l(i, j) = -log exp(sim(u_i, u_j)/t) / sum_{k != i} exp(sim(u_i, u_k)/t) over u = [z1; z2], averaged over the 2N
    ordered positive pairs (i, j) = (k, k + N) and (k + N, k).  A plain loop: no shared code with the kernels."""
    u = torch.cat([z1, z2])
    n2 = u.shape[0]
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        sims = [torch.dot(u[i], u[k]) / (u[i].norm() * u[k].norm()) / temperature for k in range(n2)]
        denominator = sum(torch.exp(sims[k]) for k in range(n2) if k != i)
        total = total - torch.log(torch.exp(sims[j]) / denominator)
    return total / n2


@pytest.mark.parametrize("n", [2, 5, 16])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_ntxent_is_simclrs_loss_in_value_and_gradient(n, temperature):
    g = torch.Generator().manual_seed(n)
    z1, z2 = (torch.randn(n, 6, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    ref = simclr_reference(z1, z2, temperature)
    ref_grads = torch.autograd.grad(ref, (z1, z2))
    for backend in ("matrix", "chunked"):
        got = ntxent_loss(z1, z2, temperature, backend=backend)
        torch.testing.assert_close(got, ref)
        for a, b in zip(torch.autograd.grad(got, (z1, z2)), ref_grads):   # both views get their gradient
            torch.testing.assert_close(a, b)
    # symmetric in the views, unlike the one-direction pairwise InfoNCE
    torch.testing.assert_close(ntxent_loss(z2, z1, temperature), ref)
    assert not torch.allclose(pairwise_infonce_loss(z1, z2, temperature) + math.log(n),
                              pairwise_infonce_loss(z2, z1, temperature) + math.log(n))
    assert ntxent_mi_estimate(ref, n) <= math.log(2 * n - 1)


@pytest.mark.parametrize("conditional", ["kl", "club"])
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_lambda_zero_is_exactly_the_plain_contrastive_loss(conditional, temperature):
    p1, p2 = _posteriors(dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    z1, z2 = p1.rsample(g), p2.rsample(g)
    terms = SuperInfoLoss(8, 0.0, conditional=conditional, temperature=temperature)(p1, p2, z1, z2)
    assert torch.equal(terms.total, ntxent_loss(z1, z2, temperature))
    torch.testing.assert_close(terms.total, simclr_reference(z1, z2, temperature))
    assert torch.equal(terms.mi_lower, ntxent_mi_estimate(terms.total, 32))
    # the pairwise contrastive term is the InfoNCE bound on I(z1;z2) itself
    pairwise = SuperInfoLoss(8, 0.0, lower_bound="pairwise", conditional=conditional, temperature=temperature)
    terms = pairwise(p1, p2, z1, z2)
    plain = -infonce_lower_bound(torch.nn.functional.normalize(z1, dim=1) @ torch.nn.functional.normalize(z2, dim=1).T
                                 / temperature)
    assert torch.equal(terms.total, plain) and torch.equal(terms.mi_lower, -plain)
    assert terms.superfluous_a.item() != 0.0   # the terms are still computed for the logs


def test_lambda_zero_gives_the_plain_contrastive_gradient():
    world, heads = _heads_on_world(0)
    batch = world.sample(64, torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = []
    for use_superinfo in (True, False):
        for h in heads:
            h.zero_grad()
        g = torch.Generator().manual_seed(5)
        p1, p2 = heads[0](batch.v1), heads[1](batch.v2)
        z1, z2 = p1.rsample(g), p2.rsample(g)
        loss = SuperInfoLoss(4, 0.0)(p1, p2, z1, z2).total if use_superinfo else ntxent_loss(z1, z2)
        loss.backward()
        grads.append([p.grad.clone() for h in heads for p in h.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_pairwise_infonce_value_is_a_lower_bound_capped_at_log_n():
    p1, p2 = _posteriors(n=16)
    for z1, z2 in ((p1.mean, p2.mean), (p1.mean, p1.mean)):
        value = -pairwise_infonce_loss(z1, z2, 0.01)
        assert value <= math.log(16) + 1e-9
    assert -pairwise_infonce_loss(p1.mean, p1.mean, 0.01) > math.log(16) - 0.01   # identical views: at the cap
    s = cosine_similarity_scores(p1.mean, p2.mean, 0.5)
    assert s.abs().max() <= 2.0 + 1e-9


def test_total_adds_the_weighted_terms():
    p1, p2 = _posteriors()
    g = torch.Generator().manual_seed(1)
    z1, z2 = p1.rsample(g), p2.rsample(g)
    for conditional in ("kl", "club"):
        terms = SuperInfoLoss(8, 0.3, 0.7, conditional=conditional)(p1, p2, z1, z2)
        expected = terms.contrastive + 0.3 * terms.superfluous_a + 0.7 * terms.superfluous_b
        assert torch.allclose(terms.total, expected)
        logs = terms.as_dict()
        assert set(logs) >= {"total", "contrastive", "mi_lower", "superfluous_a", "superfluous_b", "lambda_a"}
        assert all(isinstance(v, float) for v in logs.values())
    kl = kl_conditional_bound(p1.mean, p1.logvar, p2.mean, p2.logvar)
    assert torch.allclose(SuperInfoLoss(8, 1.0)(p1, p2, z1, z2).superfluous_a, kl)
    club = club_conditional_bound(p1.mean, p1.logvar, z1, ntxent_mi_estimate(ntxent_loss(z1, z2), 32))
    assert torch.allclose(SuperInfoLoss(8, 1.0, conditional="club")(p1, p2, z1, z2).superfluous_a, club)


# ---------------------------------------------------------------- the batch bounds against the exact quantities
@settings(max_examples=6)
@given(st.integers(0, 1000), st.floats(0.05, 1.0), st.floats(0.3, 2.0))
def test_kl_term_estimates_the_closed_form_bound_which_is_above_the_truth(seed, scale, sigma):
    world, heads = _heads_on_world(seed, scale, sigma)
    enc1, enc2 = linear_encoder(heads[0]), linear_encoder(heads[1])
    exact_bound, cmi = world.expected_kl(enc1, enc2), world.exact_information(enc1)["superfluous_1"]
    with torch.no_grad():
        batch = world.sample(20_000, torch.Generator().manual_seed(seed), dtype=torch.float64)
        p1, p2 = heads[0](batch.v1), heads[1](batch.v2)
        per_row = torch.distributions.kl_divergence(torch.distributions.Normal(p1.mean, p1.std),
                                                    torch.distributions.Normal(p2.mean, p2.std)).sum(1)
        value = kl_conditional_bound(p1.mean, p1.logvar, p2.mean, p2.logvar).item()
        # the loss module's term is this function on its batch (a small one: NT-Xent is N x N)
        small = [GaussianPosterior(p.mean[:256], p.logvar[:256]) for p in (p1, p2)]
        assert SuperInfoLoss(4, 1.0)(*small).superfluous_a.item() == pytest.approx(
            per_row[:256].mean().item(), rel=1e-9)
    assert value == pytest.approx(per_row.mean().item(), rel=1e-9)
    assert abs(value - exact_bound) < 5 * per_row.std().item() / math.sqrt(len(per_row))
    assert exact_bound >= cmi


@pytest.mark.parametrize("seed", [0, 1])
def test_club_term_is_above_the_exact_superfluous_information(seed):
    world, heads = _heads_on_world(seed, 0.4, 1.0)
    enc1, enc2 = linear_encoder(heads[0]), linear_encoder(heads[1])
    info = world.exact_information(enc1, enc2)
    loss = SuperInfoLoss(4, 1.0, conditional="club", temperature=0.5)
    values = []
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(30):
            batch = world.sample(256, gen, dtype=torch.float64)
            values.append(loss(heads[0](batch.v1), heads[1](batch.v2), generator=gen).superfluous_a.item())
    values = np.asarray(values)
    se = values.std(ddof=1) / math.sqrt(len(values))
    assert values.mean() >= info["superfluous_1"] - 4 * se
    # and it sits between the truth and its own population value with the exact I(z1;z2) subtracted
    assert values.mean() >= world.club_value(enc1) - info["i_z1_z2"] - 4 * se


# ------------------------------------------------------------------------------------------- gradients flow
@pytest.mark.parametrize("conditional", ["kl", "club"])
@pytest.mark.parametrize("sigma,layers,lower_bound", [(1.0, 0, "ntxent"), ("learned", 0, "ntxent"),
                                                      ("amortized", 1, "ntxent"), (0.5, 1, "smile"),
                                                      ("learned", 0, "infonce")])
def test_gradients_reach_every_parameter(conditional, sigma, layers, lower_bound):
    torch.manual_seed(0)
    heads = [GaussianPosteriorHead(10, 6, hidden=16, layers=layers, sigma=sigma) for _ in range(2)]
    kw = {"hidden": 16, "layers": 1, "embed_dim": 8} if lower_bound != "ntxent" else {}
    loss = SuperInfoLoss(6, 0.5, 0.2, lower_bound=lower_bound, conditional=conditional, **kw)
    v1, v2 = torch.randn(32, 10), torch.randn(32, 10)
    loss(heads[0](v1), heads[1](v2)).total.backward()
    params = [(n, p) for m in (*heads, loss) for n, p in m.named_parameters()]
    assert params
    for name, p in params:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------------------ the head
def test_head_samples_in_training_and_returns_the_mean_in_evaluation():
    head = GaussianPosteriorHead(5, 3, sigma=0.5)
    v = torch.randn(8, 5)
    assert not torch.equal(head.sample(v), head.encode(v))
    head.eval()
    assert torch.equal(head.sample(v), head.encode(v))
    assert torch.allclose(head(v).std, torch.full((8, 3), 0.5))


@pytest.mark.parametrize("mode", ["learned", "amortized"])
def test_learned_sigma_stays_inside_its_bounds(mode):
    head = GaussianPosteriorHead(5, 3, layers=1, hidden=8, sigma=mode, sigma_min=0.1, sigma_max=2.0)
    with torch.no_grad():
        for p in head.parameters():
            p.mul_(0).add_(1e4)   # push every raw value to the extreme
    std = head(torch.randn(4, 5) * 1e3).std
    assert (std >= 0.1 - 1e-6).all() and (std <= 2.0 + 1e-6).all()


def test_linear_parameters_describe_the_head():
    head = GaussianPosteriorHead(5, 3, sigma="learned")
    w, b, s = head.linear_parameters()
    v = torch.randn(4, 5)
    assert torch.allclose(head.encode(v), v @ w.T + b)
    assert torch.allclose(head(v).std[0], s)
    with pytest.raises(ValueError, match="layers=0"):
        GaussianPosteriorHead(5, 3, layers=1).linear_parameters()


# ------------------------------------------------------------------------------------------ bad arguments
def test_negative_lambda_needs_the_explicit_flag():
    with pytest.raises(ValueError, match="lambda_a.*allow_negative_lambda"):
        SuperInfoLoss(8, -0.1)
    with pytest.raises(ValueError, match="lambda_b"):
        SuperInfoLoss(8, 0.1, -0.5)
    loss = SuperInfoLoss(8, -0.1, allow_negative_lambda=True)
    assert loss.lambda_a == loss.lambda_b == -0.1


@pytest.mark.parametrize("kwargs, error, match", [
    ({"conditional": "mutual"}, ValueError, "unknown conditional bound 'mutual'.*kl, club"),
    ({"lower_bound": "infonse"}, ValueError, "unknown lower bound 'infonse'.*ntxent"),
    ({"lower_bound": "club"}, ValueError, "upper bound.*not a lower bound"),
    ({"lower_bound": 3}, TypeError, "lower_bound"),
    ({"lower_bound": "nwj", "temperature": 0.1}, ValueError, "temperature"),
    ({"temperature": 0.0}, ValueError, "temperature must be > 0"),
    ({"temperature": -1.0}, ValueError, "temperature must be > 0"),
    ({"lambda_a": float("nan")}, ValueError, "lambda_a must be finite"),
    ({"lambda_a": "0.1"}, TypeError, "lambda_a must be a real number"),
    ({"hidden": 3}, TypeError, "ntxent.*takes no estimator arguments"),
])
def test_bad_loss_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        SuperInfoLoss(8, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"sigma": 0.0}, "sigma must be > 0"),
    ({"sigma": -1.0}, "sigma must be > 0"),
    ({"sigma": "free"}, "sigma must be a number > 0, 'learned' or 'amortized'"),
    ({"sigma": "learned", "sigma_min": 0.0}, "sigma_min must be > 0"),
    ({"sigma": "learned", "sigma_min": 2.0, "sigma_max": 1.0}, "sigma_max must be > sigma_min"),
    ({"layers": -1}, "layers"),
])
def test_bad_head_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianPosteriorHead(5, 3, **kwargs)


def test_shape_mismatches_are_named():
    loss = SuperInfoLoss(8, 0.1)
    p1, p2 = _posteriors(n=16)
    q1, _ = _posteriors(n=12)
    with pytest.raises(ValueError, match="posterior1.mean and posterior2.mean must have the same shape"):
        loss(p1, GaussianPosterior(q1.mean, q1.logvar))
    with pytest.raises(ValueError, match="posterior1.mean must have 8 features"):
        SuperInfoLoss(8)(GaussianPosterior(p1.mean[:, :4], p1.logvar[:, :4]), p2)
    with pytest.raises(ValueError, match="posterior1.mean and posterior1.logvar"):
        loss(GaussianPosterior(p1.mean, p1.logvar[:, :4]), p2)
    with pytest.raises(ValueError, match="posterior1.mean and z1"):
        loss(p1, p2, z1=p1.mean[:8])
    with pytest.raises(TypeError, match="posterior1 must be a GaussianPosterior"):
        loss(p1.mean, p2)
    with pytest.raises(ValueError, match="at least 2 rows"):
        loss(GaussianPosterior(p1.mean[:1], p1.logvar[:1]), GaussianPosterior(p2.mean[:1], p2.logvar[:1]))
    with pytest.raises(ValueError, match="z1 and z2 must have the same shape"):
        ntxent_loss(p1.mean, p2.mean[:, :3])
    with pytest.raises(ValueError, match="v must have 5 features"):
        GaussianPosteriorHead(5, 3)(torch.randn(4, 6))
    with pytest.raises(TypeError, match="v must be a floating tensor"):
        GaussianPosteriorHead(5, 3)(torch.ones(4, 5, dtype=torch.long))


@pytest.mark.parametrize("backend", ["naive", "chunked"])
def test_ntxent_through_the_fused_kernel_equals_the_matrix_path(backend):
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(50, 6, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(50, 6, generator=g, dtype=torch.float64, requires_grad=True)
    fused, plain = ntxent_loss(z1, z2, 0.2, backend=backend), ntxent_loss(z1, z2, 0.2, backend="matrix")
    assert fused.item() == pytest.approx(plain.item(), abs=1e-10)
    g_fused, g_plain = torch.autograd.grad(fused, (z1, z2)), torch.autograd.grad(plain, (z1, z2))
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(g_fused, g_plain))
    with pytest.raises(ValueError, match="backend must be one of"):
        ntxent_loss(z1, z2, 0.2, backend="gpu")


def test_mean_on_sphere_bounds_the_kl_term():
    from superinfo.objective import kl_conditional_bound
    torch.manual_seed(0)
    free = GaussianPosteriorHead(16, 8, sigma=0.05)
    sphere = GaussianPosteriorHead(16, 8, sigma=0.05, mean_on_sphere=True)
    sphere.load_state_dict(free.state_dict())           # the same network, only the mean's placement differs
    v1, v2 = 100 * torch.randn(256, 16), 100 * torch.randn(256, 16)   # far-apart, large inputs
    p1, p2 = sphere(v1), sphere(v2)
    assert torch.allclose(p1.mean.norm(dim=1), torch.ones(256), atol=1e-5)
    kl = float(kl_conditional_bound(p1.mean, p1.logvar, p2.mean, p2.logvar))
    assert 0 < kl <= 2 / 0.05 ** 2 * 1.001              # |m1 - m2|^2 / (2 sigma^2) with |m1 - m2| <= 2
    f1, f2 = free(v1), free(v2)
    assert float(kl_conditional_bound(f1.mean, f1.logvar, f2.mean, f2.logvar)) > 10 * kl
    assert "mean_on_sphere=True" in repr(sphere)
    amortized = GaussianPosteriorHead(16, 8, sigma="amortized", mean_on_sphere=True)(v1)
    assert torch.allclose(amortized.mean.norm(dim=1), torch.ones(256), atol=1e-5)
