"""Methods by name: SimCLR is deterministic (NT-Xent on the head's means, checked against the written-out reference),
the alignment control adds the same term on the means, MIB's loss is its paper's formula, beta ramps exponentially,
and club is refused beside a contrastive term that is no lower bound."""
from __future__ import annotations

import pytest
import torch

from fixtures_state import TwoViews, tiny_config
from superinfo.lambdas import EXPONENTIAL_START, LambdaSchedule
from superinfo.methods import METHODS
from superinfo.objective import GaussianPosterior, gaussian_kl_diag, ntxent_loss
from superinfo.trainer import build_training, forward_backward, preset_config


def _step_inputs(method, **kw):
    cfg = tiny_config(None, method=method, lambda_warmup_epochs=0.0, lambda_ramp_epochs=0.0, sigma=0.5,
                      mean_on_sphere=True, **kw)
    t = build_training(cfg, TwoViews(), num_classes=3)
    torch.manual_seed(0)
    batch = next(iter(t.loader))
    state = {k: v.clone() for k, v in t.model.state_dict().items()}
    terms = forward_backward(t, batch)[0]
    t.model.load_state_dict(state)      # BatchNorm's running statistics: the same forward again
    x = torch.cat([batch[0], batch[1]])
    t.model.train()
    _, post = t.model(x)
    n = batch[0].shape[0]
    p1 = GaussianPosterior(post.mean[:n], post.logvar[:n])
    p2 = GaussianPosterior(post.mean[n:], post.logvar[n:])
    return cfg, terms, p1, p2


def test_simclr_is_ntxent_on_the_means_and_noisy_superinfo_is_not():
    cfg, terms, p1, p2 = _step_inputs("simclr", lambda_a=0.0)
    reference = ntxent_loss(p1.mean, p2.mean, temperature=cfg.temperature)
    assert torch.allclose(terms.contrastive, reference, atol=1e-6) and torch.allclose(terms.total, reference, atol=1e-6)
    _, noisy, q1, q2 = _step_inputs("superinfo", lambda_a=0.0)
    assert not torch.allclose(noisy.contrastive, ntxent_loss(q1.mean, q2.mean, temperature=cfg.temperature))


def test_align_adds_the_same_term_on_the_means():
    cfg, terms, p1, p2 = _step_inputs("align", lambda_a=0.3)
    kl = gaussian_kl_diag(p1.mean, p1.logvar, p2.mean, p2.logvar).mean()
    kl_back = gaussian_kl_diag(p2.mean, p2.logvar, p1.mean, p1.logvar).mean()
    expected = ntxent_loss(p1.mean, p2.mean, temperature=cfg.temperature) + 0.3 * kl + 0.3 * kl_back
    assert torch.allclose(terms.total, expected, atol=1e-5)


def test_mib_is_its_paper_formula():
    """Federici et al. 2020: L = -I(z1;z2) + beta * D_SKL(p(z|v1) || p(z|v2)), D_SKL the mean of both KLs, written
    here from the diagonal-Gaussian closed form."""
    beta = 0.4
    cfg, terms, p1, p2 = _step_inputs("mib", lambda_a=beta)
    s1, s2 = (0.5 * p1.logvar).exp(), (0.5 * p2.logvar).exp()

    def kl(ma, sa, mb, sb):
        return ((sb / sa).log() + (sa ** 2 + (ma - mb) ** 2) / (2 * sb ** 2) - 0.5).sum(1).mean()
    skl = 0.5 * (kl(p1.mean, s1, p2.mean, s2) + kl(p2.mean, s2, p1.mean, s1))
    assert torch.allclose(terms.total, terms.contrastive + beta * skl, atol=1e-5)
    with pytest.raises(ValueError, match="takes one beta"):
        preset_config("digits", method="mib", lambda_a="auto")
    with pytest.raises(ValueError, match="takes conditional kl"):
        preset_config("digits", method="mib", lambda_a=0.1, conditional="club", lower_bound="pairwise")


def test_mib_beta_ramps_exponentially_and_the_others_linearly():
    schedule = LambdaSchedule(1.0, warmup_steps=10, ramp_steps=100, shape="exponential")
    assert schedule(9) == 0 and schedule(10) == pytest.approx(EXPONENTIAL_START ** (1 - 1 / 100))
    assert schedule(59) == pytest.approx(EXPONENTIAL_START ** 0.5) and schedule(109) == 1.0
    assert preset_config("digits", method="mib", lambda_a=0.1).resolve().lambda_ramp_shape == "exponential"
    assert preset_config("digits", lambda_a=0.1).resolve().lambda_ramp_shape == "linear"


def test_every_method_is_one_registry_entry_with_its_help():
    from superinfo.cli import build_parser
    text = build_parser().parse_known_args(["train"])[0]    # builds the parser (choices come from the registry)
    assert text is not None and set(METHODS) == {"simclr", "superinfo", "align", "mib"}
    assert all(m.help for m in METHODS.values())


@pytest.mark.parametrize("lower_bound", ["ntxent", "dv", "mine", "smile", "js"])
def test_club_is_refused_beside_a_term_that_is_no_lower_bound(lower_bound):
    with pytest.raises(ValueError, match="club.*only beside a true lower bound"):
        preset_config("digits", conditional="club", lower_bound=lower_bound, temperature=None, lambda_a=0.1)
    preset_config("digits", conditional="club", lower_bound="pairwise", lambda_a=0.1)      # valid


def test_world_refuses_club_beside_ntxent():
    from superinfo.world import run_world
    with pytest.raises(ValueError, match="club"):
        run_world(0.1, bound="club", lower_bound="ntxent", steps=1)
