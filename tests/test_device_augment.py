"""The batched device augmentation draws what the CPU (torchvision) pipeline draws: crop geometry, flip, jitter,
grayscale and blur rates and ranges, compared on a few thousand draws with tolerances from sampling error; each
colour operation equals torchvision's on float images; a seed replays the same batch."""
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import transforms as T

from superinfo.data.augment import augmentation, preset_for
from superinfo.data.device_augment import (DeviceAugment, adjust_brightness, adjust_contrast, adjust_hue,
                                           adjust_saturation, crop_params)

N = 4000
Z = 4.5         # tolerance in standard errors (many comparisons per test; a false alarm stays below 1e-4 overall)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _rate_close(rate, p, n):
    se = math.sqrt(max(p * (1 - p), 1e-4) / n)
    assert abs(rate - p) <= Z * se, (rate, p, n)


def _same_distribution(a, b, probs=(0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)):
    """a's quantiles sit at the same ranks of b, within the sampling error of two samples (mid-ranks for ties)."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    for p in probs:
        q = np.quantile(a, p, method="inverted_cdf")
        rank = (np.searchsorted(b, q, "left") + np.searchsorted(b, q, "right")) / 2 / len(b)
        tie = (np.searchsorted(b, q, "right") - np.searchsorted(b, q, "left")) / len(b)
        se = math.sqrt(p * (1 - p) * (1 / len(a) + 1 / len(b)))
        assert abs(rank - p) <= Z * se + tie / 2 + 1 / len(a), (p, q, rank)


@pytest.mark.parametrize("height, width, scale", [(32, 32, (0.08, 1.0)), (32, 32, (0.4, 1.0)), (12, 80, (0.08, 1.0)),
                                                  (96, 96, (0.08, 1.0))])
def test_crop_geometry_matches_torchvision_get_params(height, width, scale):
    ratio = (3 / 4, 4 / 3)
    crops = crop_params(N, height, width, scale, ratio, generator=_gen()).numpy()
    torch.manual_seed(0)
    img = torch.zeros(1, height, width)
    ref = np.array([T.RandomResizedCrop.get_params(img, list(scale), list(ratio)) for _ in range(N)])
    for c in (crops, ref):
        top, left, h, w = c.T
        assert (h >= 1).all() and (w >= 1).all() and (top >= 0).all() and (left >= 0).all()
        assert (top + h <= height).all() and (left + w <= width).all()
    area = lambda c: c[:, 2] * c[:, 3] / (height * width)           # noqa: E731
    aspect = lambda c: np.log(c[:, 3] / c[:, 2])                      # noqa: E731
    _same_distribution(area(crops), area(ref))
    _same_distribution(aspect(crops), aspect(ref))
    # the offsets: relative position of the crop in its free range
    rel = lambda c: (c[:, 0] + 0.5) / (height - c[:, 2] + 1)           # noqa: E731
    _same_distribution(rel(crops), rel(ref))
    # how often the central fallback is taken (a full-height crop of the 12x80 image, else rare)
    full = lambda c: np.mean((c[:, 2] == height) & (c[:, 0] == 0))     # noqa: E731
    _rate_close(full(crops), full(ref), N)


def test_flip_jitter_grayscale_blur_rates_and_ranges():
    preset = preset_for("stl10")            # s = 1, blur on
    aug = DeviceAugment(preset)
    p = aug.sample_params(N, 96, 96, _gen(1))
    _rate_close(p["flip"].float().mean().item(), preset.flip_prob, N)
    _rate_close(p["jitter"].float().mean().item(), preset.jitter_prob, N)
    _rate_close(p["gray"].float().mean().item(), preset.grayscale_prob, N)
    _rate_close(p["blur"].float().mean().item(), preset.blur_prob, N)
    # torchvision's ColorJitter(0.8s, 0.8s, 0.8s, 0.2s).get_params, drawn as many times
    cj = T.ColorJitter(0.8, 0.8, 0.8, 0.2)
    torch.manual_seed(0)
    ref = [cj.get_params(cj.brightness, cj.contrast, cj.saturation, cj.hue) for _ in range(N)]
    ref_factors = np.array([r[1:] for r in ref])
    factors = p["factors"].numpy()
    for j, (lo, hi) in enumerate([cj.brightness, cj.contrast, cj.saturation, cj.hue]):
        assert lo <= factors[:, j].min() and factors[:, j].max() <= hi
        assert factors[:, j].min() < lo + 0.01 * (hi - lo) and factors[:, j].max() > hi - 0.01 * (hi - lo)
        _same_distribution(factors[:, j], ref_factors[:, j])
    # the order: each op in each position a quarter of the time, as torch.randperm(4)
    order = p["order"].numpy()
    ref_order = np.array([r[0].numpy() for r in ref])
    for k in range(4):
        for j in range(4):
            _rate_close(np.mean(order[:, k] == j), np.mean(ref_order[:, k] == j), N // 2)
    sigma = p["sigma"].numpy()
    assert 0.1 <= sigma.min() and sigma.max() <= 2.0
    _same_distribution(sigma, np.random.default_rng(0).uniform(0.1, 2.0, N))
    assert not DeviceAugment(preset_for("cifar10")).sample_params(100, 32, 32, _gen())["blur"].any()


def _is_gray(x, atol=1e-5):
    return (x - x.mean(dim=-3, keepdim=True)).abs().amax(dim=(-3, -2, -1)) <= atol


def test_grayscale_rate_matches_the_cpu_pipeline():
    preset = preset_for("cifar10", image_size=8)        # small images: the rate does not depend on the size
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    cpu = augmentation(preset)
    mean, std = torch.tensor(preset.mean).view(3, 1, 1), torch.tensor(preset.std).view(3, 1, 1)
    torch.manual_seed(0)
    n_cpu = 1500
    cpu_rate = np.mean([bool(_is_gray(cpu(img) * std + mean, 1e-4)) for _ in range(n_cpu)])
    images = torch.from_numpy(np.array(img)).permute(2, 0, 1).unsqueeze(0).expand(N, -1, -1, -1)
    views = DeviceAugment(preset, normalize=False)(images, _gen(2))
    dev_rate = _is_gray(views).float().mean().item()
    _rate_close(dev_rate, preset.grayscale_prob, N)
    _rate_close(cpu_rate, preset.grayscale_prob, n_cpu)
    se = math.sqrt(0.16 * (1 / N + 1 / n_cpu))
    assert abs(dev_rate - cpu_rate) <= Z * se


def test_each_operation_is_torchvisions_on_float_images():
    x = torch.rand(4, 3, 12, 12, generator=_gen(3))
    for fn, ref, v in [(adjust_brightness, TF.adjust_brightness, 1.3), (adjust_contrast, TF.adjust_contrast, 0.6),
                       (adjust_saturation, TF.adjust_saturation, 1.5), (adjust_hue, TF.adjust_hue, -0.15),
                       (adjust_hue, TF.adjust_hue, 0.4)]:
        got = fn(x, torch.full((4, 1, 1, 1), v))
        torch.testing.assert_close(got, torch.stack([ref(xi, v) for xi in x]), atol=1e-6, rtol=0)
    # the four in each sample's own order, as ColorJitter.forward applies them
    aug = DeviceAugment(preset_for("stl10"), normalize=False)
    params = aug.sample_params(24, 12, 12, _gen(9))
    got = aug.jitter(torch.rand(24, 3, 12, 12, generator=_gen(10)), params["factors"], params["order"])
    fns = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i, xi in enumerate(torch.rand(24, 3, 12, 12, generator=_gen(10))):
        for j in params["order"][i].tolist():
            xi = fns[j](xi, float(params["factors"][i, j]))
        torch.testing.assert_close(got[i], xi, atol=1e-5, rtol=0)
    img = torch.rand(2, 3, 20, 20, generator=_gen(4))
    sig = torch.tensor([0.5, 1.7])
    want = torch.stack([TF.gaussian_blur(img[i], [aug.kernel] * 2, [float(sig[i])] * 2) for i in range(2)])
    torch.testing.assert_close(aug.blur(img, sig), want, atol=1e-5, rtol=0)
    # the crop: the whole image at its own size is the identity; a crop is torchvision's resized_crop up to the
    # interpolation filter
    u8 = (torch.rand(1, 3, 32, 32, generator=_gen(5)) * 255).to(torch.uint8)
    cifar = DeviceAugment(preset_for("cifar10"))
    torch.testing.assert_close(cifar.crop_resize(u8, torch.tensor([[0, 0, 32, 32]])), u8.float())
    smooth = TF.gaussian_blur(u8.float(), [5, 5], [2.0, 2.0])
    got = cifar.crop_resize(smooth, torch.tensor([[4, 6, 16, 12]]))
    want = TF.resized_crop(smooth, 4, 6, 16, 12, [32, 32], antialias=True)
    assert (got - want).abs().mean() < 1.0


def test_a_seed_replays_the_same_batch():
    aug = DeviceAugment(preset_for("stl10"))
    images = (torch.rand(16, 3, 40, 40, generator=_gen(6)) * 255).to(torch.uint8)
    a1, a2 = aug.two_views(images, _gen(7))
    b1, b2 = aug.two_views(images, _gen(7))
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.equal(a1, a2)
    c1, _ = aug.two_views(images, _gen(8))
    assert not torch.equal(a1, c1)
    g = _gen(7)
    state = g.get_state()
    first = aug(images, g)
    g.set_state(state)
    assert torch.equal(aug(images, g), first)
    assert first.shape == (16, 3, 96, 96) and first.dtype == torch.float32 and torch.isfinite(first).all()
