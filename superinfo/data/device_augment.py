"""The two-view augmentation of ``augment.augmentation`` drawn for a whole batch at once, on the batch's device.

    from superinfo.data.device_augment import DeviceAugment
    aug = DeviceAugment(preset_for("cifar10"), device)
    gen = torch.Generator(device=device).manual_seed(seed)      # one per rank; its state goes in the checkpoint
    v1, v2 = aug.two_views(images_uint8, gen)                    # [N, 3, S, S] float, normalised

Every random draw comes from the generator passed in (nothing from torch's global RNG), on the images' device, and
nothing is read back to the host: a batch costs a handful of kernels and no synchronisation.  The distributions are
those of the CPU pipeline (torchvision, SimCLR's recipe):

- random resized crop: ``RandomResizedCrop.get_params`` exactly -- area share ~ U(scale), log aspect ratio ~
  U(log 3/4, log 4/3), ``w = round(sqrt(area * r))``, ``h = round(sqrt(area / r))``, up to 10 tries, then the
  central-crop fallback; the offsets uniform over the valid positions.  The crop is resized with ``roi_align``
  (bilinear, with as many samples per output pixel as the crop is larger: an area-style antialias where PIL's
  bilinear filter widens its support); so the pixels differ slightly from PIL's, the geometry does not;
- horizontal flip with ``flip_prob``;
- with ``jitter_prob``: brightness, contrast, saturation (factors ~ U[max(0, 1 - 0.8 s), 1 + 0.8 s]) and hue
  (~ U[-0.2 s, 0.2 s]) in a random order drawn per sample, each as torchvision defines it on float images
  (``adjust_brightness``/``contrast``/``saturation``/``hue`` of ``torchvision.transforms.functional``);
- grayscale with ``grayscale_prob`` (ITU-R 601-2 luma, as torchvision);
- when ``preset.blur``: Gaussian blur with ``blur_prob``, sigma ~ U(0.1, 2), the kernel size of the CPU pipeline,
  reflect padding;
- normalisation with the preset's mean and std.

The CPU pipeline works on 8-bit PIL images between steps; this one stays in float, so values differ by rounding.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .augment import DataPreset, _blur_kernel, check_preset

__all__ = ["CROP_TRIES", "DeviceAugment", "crop_params"]

CROP_TRIES = 10
_LUMA = (0.2989, 0.587, 0.114)       # torchvision's rgb_to_grayscale weights


def _uniform(shape, lo, hi, generator, device):
    return torch.rand(shape, generator=generator, device=device) * (hi - lo) + lo


def crop_params(n: int, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), *,
                generator: torch.Generator, device=None) -> torch.Tensor:
    """``n`` crops ``[top, left, h, w]`` (int64 [n, 4]) of an image of ``height x width`` drawn as
    ``torchvision.transforms.RandomResizedCrop.get_params`` draws one: ``CROP_TRIES`` tries, then the central crop."""
    device = generator.device if device is None else device
    area = height * width
    target = area * _uniform((n, CROP_TRIES), scale[0], scale[1], generator, device)
    log_r = _uniform((n, CROP_TRIES), math.log(ratio[0]), math.log(ratio[1]), generator, device)
    aspect = torch.exp(log_r)
    # torchvision: int(round(math.sqrt(target_area * aspect_ratio))); round half to even in both
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(ok.int(), dim=1, keepdim=True)     # the first try that fits (0 when none does)
    found = ok.any(dim=1)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    # the fallback: the whole image, clipped to the ratio range, centred
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    # torch.randint(0, H - h + 1): uniform over the valid offsets
    u = torch.rand((n, 2), generator=generator, device=device)
    top = torch.floor(u[:, 0] * (height - h + 1)).long().clamp_max(height - h)
    left = torch.floor(u[:, 1] * (width - w + 1)).long().clamp_max(width - w)
    top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
    return torch.stack([top, left, h, w], dim=1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(dim=1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _blend(x, other, factor):
    return (factor * x + (1.0 - factor) * other).clamp(0.0, 1.0)


def _rgb2hsv(img):      # torchvision's, on [N, 3, H, W]
    r, g, b = img.unbind(dim=1)
    maxc, minc = img.max(dim=1).values, img.min(dim=1).values
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_divisor = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_divisor, (maxc - g) / cr_divisor, (maxc - b) / cr_divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return h, s, maxc


def _hsv2rgb(h, s, v):
    """torchvision's sector formula (v, q, p, p, t, v / t, v, v, q, p, p / p, p, t, v, v, q) in closed form: channel
    n in (5, 3, 1) is v - v s clamp(min(k, 4 - k), 0, 1) with k = (n + 6h) mod 6 -- the same values up to float
    rounding, in a few passes instead of six stacked candidates."""
    h6 = (h * 6.0).unsqueeze(1)
    # (5, 3, 1) without a host-to-device copy (torch.tensor(..., device=cuda) waits for the queue)
    n = 5.0 - 2.0 * torch.arange(3, device=h.device, dtype=h.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + h6, 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    v, s = v.unsqueeze(1), s.unsqueeze(1)
    return (v - v * s * ramp).clamp(0.0, 1.0)


def adjust_brightness(x, factor):
    return (x * factor).clamp(0.0, 1.0)


def adjust_contrast(x, factor):
    return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x, factor):
    return _blend(x, _gray(x), factor)


def adjust_hue(x, shift):
    h, s, v = _rgb2hsv(x)
    h = torch.remainder(h + shift[:, :, 0], 1.0)
    return _hsv2rgb(h, s, v)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


class DeviceAugment:
    """One SimCLR view of each image of a uint8 batch, drawn on the batch's device (see the module docstring)."""

    def __init__(self, preset: DataPreset, device=None, normalize: bool = True):
        self.preset = check_preset(preset)
        self.size = preset.image_size
        s = preset.jitter_strength
        self.brightness = self.contrast = self.saturation = (max(0.0, 1 - 0.8 * s), 1 + 0.8 * s)
        self.hue = (-0.2 * s, 0.2 * s)
        if 0.2 * s > 0.5:
            raise ValueError(f"hue jitter 0.2 * s must be <= 0.5 (torchvision's limit), got {0.2 * s}")
        self.kernel = _blur_kernel(preset.image_size)
        self.normalize = normalize
        self.device = None if device is None else torch.device(device)
        self.mean = torch.tensor(preset.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(preset.std, device=self.device).view(1, 3, 1, 1)
        self._cached = {}

    # -- the draws: every random number of a batch, in a fixed order -------------------------------------------
    def sample_params(self, n: int, height: int, width: int, generator: torch.Generator) -> dict:
        p, dev = self.preset, generator.device
        params = {"crop": crop_params(n, height, width, tuple(p.crop_scale), generator=generator)}
        u = torch.rand((n, 4), generator=generator, device=dev)     # flip, jitter, grayscale, blur: apply?
        params["flip"] = u[:, 0] < p.flip_prob
        params["jitter"] = u[:, 1] < p.jitter_prob
        params["gray"] = u[:, 2] < p.grayscale_prob
        params["blur"] = (u[:, 3] < p.blur_prob) & p.blur
        f = torch.rand((n, 4), generator=generator, device=dev)
        lo, hi = self._ranges(dev)
        params["factors"] = lo + f * (hi - lo)          # brightness, contrast, saturation, hue shift
        # a random order of the four per sample (uniform over the 24 permutations), as ColorJitter's randperm(4)
        params["order"] = torch.argsort(torch.rand((n, 4), generator=generator, device=dev), dim=1)
        params["sigma"] = _uniform((n,), 0.1, 2.0, generator, dev)
        return params

    def _ranges(self, device):
        """The four factors' (low, high) as device tensors, made once per device: a host-to-device copy on every
        batch would make the host wait for the GPU's queue."""
        key = str(device)
        if key not in self._cached:
            lo = (self.brightness[0], self.contrast[0], self.saturation[0], self.hue[0])
            hi = (self.brightness[1], self.contrast[1], self.saturation[1], self.hue[1])
            self._cached[key] = (torch.tensor(lo, device=device), torch.tensor(hi, device=device))
        return self._cached[key]

    # -- the steps -----------------------------------------------------------------------------------------------
    def crop_resize(self, images: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
        from torchvision.ops import roi_align

        x = images.float()
        top, left, h, w = crop.to(x.dtype).unbind(dim=1)
        idx = torch.arange(x.shape[0], device=x.device, dtype=x.dtype)
        boxes = torch.stack([idx, left, top, left + w, top + h], dim=1)
        # aligned=True: pixel k covers [k, k + 1), so the box [left, left + w) is exactly the crop's pixels;
        # sampling_ratio=-1: ceil(crop / output) bilinear samples per output pixel and axis, averaged
        return roi_align(x, boxes, (self.size, self.size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)

    def jitter(self, x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """The four colour operations in each sample's order.  Brightness, contrast and saturation are one blend
        ``clamp(f x + (1 - f) t)`` towards t = 0, the mean gray or the gray image, so each position is one blend with
        a per-sample target (f = 1 where that sample's operation there is hue, or not yet / no longer due); hue,
        the costly one, runs once per sample: the blends before it, hue, the blends after it."""
        n = x.shape[0]
        fac = factors.view(n, 4, 1, 1)
        hue_pos = torch.argmax((order == 3).int(), dim=1).view(n, 1, 1, 1)

        def blend_stage(x, k, due):
            op = order[:, k].view(n, 1, 1, 1)
            f = fac.gather(1, op.clamp_max(2)).view(n, 1, 1, 1)
            f = torch.where(due & (op != 3), f, torch.ones_like(f))
            gray = _gray(x)
            target = torch.where(op == 0, torch.zeros_like(gray),
                                 torch.where(op == 1, gray.mean(dim=(1, 2, 3), keepdim=True), gray))
            return _blend(x, target, f)

        for k in range(3):                          # before hue (hue at position 3: three blends first)
            x = blend_stage(x, k, hue_pos > k)
        x = adjust_hue(x, fac[:, 3:4])
        for k in range(1, 4):                       # after hue
            x = blend_stage(x, k, hue_pos < k)
        return x

    def blur(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        n, c, hgt, wid = x.shape
        k = self.kernel
        half = (k - 1) * 0.5
        pos = torch.linspace(-half, half, k, device=x.device, dtype=x.dtype)
        kern = torch.exp(-0.5 * (pos.view(1, k) / sigma.view(n, 1)) ** 2)
        kern = (kern / kern.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)      # [n*c, k]
        y = x.reshape(1, n * c, hgt, wid)
        y = F.pad(y, (k // 2, k // 2, k // 2, k // 2), mode="reflect")
        y = F.conv2d(y, kern.view(n * c, 1, 1, k), groups=n * c)
        y = F.conv2d(y, kern.view(n * c, 1, k, 1), groups=n * c)
        return y.view(n, c, hgt, wid)

    def apply(self, images: torch.Tensor, params: dict) -> torch.Tensor:
        """uint8 (or 0..255 float) [N, 3, H, W] -> the augmented view [N, 3, S, S] (normalised when asked)."""
        x = self.crop_resize(images, params["crop"]) / 255.0
        x = torch.where(params["flip"].view(-1, 1, 1, 1), x.flip(-1), x)
        x = torch.where(params["jitter"].view(-1, 1, 1, 1), self.jitter(x, params["factors"], params["order"]), x)
        x = torch.where(params["gray"].view(-1, 1, 1, 1), _gray(x).expand_as(x), x)
        if self.preset.blur:
            x = torch.where(params["blur"].view(-1, 1, 1, 1), self.blur(x, params["sigma"]), x)
        if self.normalize:
            if self.mean.device != x.device:
                self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
            x = (x - self.mean) / self.std
        return x

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
        if images.device != generator.device:
            raise ValueError(f"the generator is on {generator.device}, the images on {images.device}")
        n, _, h, w = images.shape
        return self.apply(images, self.sample_params(n, h, w, generator))

    def two_views(self, images: torch.Tensor, generator: torch.Generator):
        """Two independent views of each image, drawn in one pass over the doubled batch."""
        n = images.shape[0]
        views = self(torch.cat([images, images]), generator)
        return views[:n], views[n:]
