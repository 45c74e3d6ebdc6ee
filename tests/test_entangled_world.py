"""The entangled world (t1 on the shared directions) and the noisy backbone: the truth they report against samples."""
import numpy as np
import pytest
import torch

from superinfo.world import NoisyLinearBackbone, linear_encoder, through_backbone, run_world
from superinfo import GaussianPosteriorHead
from synthetic import EntangledMultiViewWorld, MultiViewWorld


def test_t1_is_view_ones_own_deviation_on_the_shared_directions():
    world = EntangledMultiViewWorld(seed=3, t1_std=0.6)
    x = world.sample(20_000, torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(x.t1, x.e1[:, :2] / 0.6)              # t1 is e1 first coordinates
    assert abs(float(x.e1[:, 2:].std()) - 0.3) < 0.01 and abs(float(x.t1.std()) - 1.0) < 0.02
    info = world.view_information()
    assert info["i_v2_t1"] == 0.0 and 0 < info["i_v1_t1"] < np.inf  # non-shared, and mixed with s in v1
    # a probe that reads only v1's shared coordinates (s + e1) still decodes t1: the two are entangled
    unmix = np.linalg.inv(world.mixing1)[:world.shared_dim]
    from synthetic import LinearGaussianEncoder
    shared_reader = LinearGaussianEncoder.make(unmix, noise_std=0.0)
    assert world.bayes_accuracy(shared_reader, "t1") > 0.6
    assert MultiViewWorld(seed=3).bayes_accuracy(
        LinearGaussianEncoder.make(np.linalg.inv(MultiViewWorld(seed=3).mixing1)[:4], noise_std=0.0), "t1") == 0.5


def test_a_head_on_a_noisy_backbone_is_the_encoder_the_truth_uses():
    torch.manual_seed(0)
    backbone, head = NoisyLinearBackbone(10, 6, 0.5).double(), GaussianPosteriorHead(6, 3, sigma=0.7).double()
    enc = through_backbone(backbone, linear_encoder(head))
    v = torch.randn(200_000, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = head(backbone(v, torch.Generator().manual_seed(2))).rsample(torch.Generator().manual_seed(3))
    expected = enc.weight @ enc.weight.T + enc.noise_cov                # Cov(v) = I
    np.testing.assert_allclose(np.cov(z.numpy().T), expected, rtol=0.03, atol=0.03)
    np.testing.assert_allclose(z.mean(0).numpy(), enc.bias, atol=0.02)


def test_entangled_run_reports_backbone_and_conditional_t1_information():
    r = run_world(0.1, bound="kl", seed=0, world="entangled", backbone_dim=8, steps=150, batch_size=128,
                  probe_samples=1000, probe_steps=30)
    bb = r["backbone"]
    assert r["t1_given_v2_nats"] >= 0 and bb["i_h_t1_given_v2"] >= r["t1_given_v2_nats"] - 1e-9   # z is h's function
    assert bb["superfluous"] >= r["superfluous_nats"] - 1e-9                                       # data processing
    assert r["shared_bayes_acc"] == bb["shared_bayes_acc"]           # the probes read h
    assert 0.55 <= r["shared_probe_acc"] <= bb["shared_bayes_acc"] + 0.06
    with pytest.raises(ValueError, match="t1_dim must be <= shared_dim"):
        EntangledMultiViewWorld(shared_dim=2, t1_dim=3)
