"""The two-view augmentation with its random draws recorded beside each view.

``RecordedAugmentation(preset)`` draws from torch's global RNG exactly what ``augmentation(preset)`` draws, in the
same order (torchvision's own ``get_params``), so for one RNG state both give the same pixels; it also returns what
it drew.  ``replay(image, params)`` applies recorded parameters again (the test that they are what was applied).
``parameter_vector`` turns them into numbers for an MI estimate between a representation and its own view's
augmentation parameters (``superinfo.tools.probe``: a lower bound on the superfluous information).
"""
from __future__ import annotations

import itertools

import torch
from torchvision import transforms as T
from torchvision.transforms import functional as F

from .augment import DataPreset, _blur_kernel, check_preset, to_rgb

__all__ = ["PARAMETERS", "RecordedAugmentation", "parameter_vector"]

# the numbers each view records: crop box as fractions of the image, flip, whether colour jitter ran, its four
# factors (neutral when it did not run) and its order (an index into the 24 orders), grayscale, blur sigma (0: none)
PARAMETERS = ("crop_top", "crop_left", "crop_height", "crop_width", "flip", "jitter", "brightness", "contrast",
              "saturation", "hue", "jitter_order", "grayscale", "blur_sigma")
BINARY = ("flip", "jitter", "grayscale")
_ORDERS = {order: i for i, order in enumerate(itertools.permutations(range(4)))}
_BLUR_SIGMA = (0.1, 2.0)        # SimCLR's, as in augmentation()


class RecordedAugmentation:
    """One SimCLR view and the parameters drawn for it: ``view, params = aug(image)``."""

    def __init__(self, preset: DataPreset):
        self.preset = check_preset(preset)
        s = preset.jitter_strength
        self.crop = T.RandomResizedCrop(preset.image_size, scale=tuple(preset.crop_scale))
        self.jitter = T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)
        self.blur_kernel = _blur_kernel(preset.image_size) if preset.blur else None
        self.finish = T.Compose([T.ToTensor(), T.Normalize(preset.mean, preset.std)])

    def __call__(self, image):
        image = to_rgb(image)
        p = self.preset
        params = {"size": (image.height, image.width)}
        params["crop"] = T.RandomResizedCrop.get_params(image, self.crop.scale, self.crop.ratio)
        params["flip"] = bool(torch.rand(1) < p.flip_prob)
        params["jitter"] = None
        if not p.jitter_prob < torch.rand(1):           # RandomApply's test, as torchvision writes it
            order, b, c, s, h = self.jitter.get_params(self.jitter.brightness, self.jitter.contrast,
                                                       self.jitter.saturation, self.jitter.hue)
            params["jitter"] = {"order": tuple(int(i) for i in order), "brightness": b, "contrast": c,
                                "saturation": s, "hue": h}
        params["grayscale"] = bool(torch.rand(1) < p.grayscale_prob)
        params["blur_sigma"] = None
        if self.blur_kernel is not None and not p.blur_prob < torch.rand(1):
            params["blur_sigma"] = T.GaussianBlur.get_params(*_BLUR_SIGMA)
        return self.replay(image, params), params

    def replay(self, image, params: dict) -> torch.Tensor:
        """The view that ``params`` describe, deterministically."""
        image = to_rgb(image)
        image = F.resized_crop(image, *params["crop"], self.crop.size, self.crop.interpolation,
                               antialias=self.crop.antialias)
        if params["flip"]:
            image = F.hflip(image)
        jitter = params["jitter"]
        if jitter is not None:
            adjust = {0: ("brightness", F.adjust_brightness), 1: ("contrast", F.adjust_contrast),
                      2: ("saturation", F.adjust_saturation), 3: ("hue", F.adjust_hue)}
            for index in jitter["order"]:
                name, fn = adjust[index]
                if jitter[name] is not None:
                    image = fn(image, jitter[name])
        if params["grayscale"]:
            image = F.rgb_to_grayscale(image, num_output_channels=3)
        if params["blur_sigma"] is not None:
            image = F.gaussian_blur(image, self.blur_kernel, [params["blur_sigma"], params["blur_sigma"]])
        return self.finish(image)


def parameter_vector(params: dict) -> torch.Tensor:
    """The recorded parameters of one view as ``len(PARAMETERS)`` float32 numbers (order of ``PARAMETERS``)."""
    height, width = params["size"]
    top, left, h, w = params["crop"]
    jitter = params["jitter"] or {}
    neutral = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}
    factors = [neutral[k] if jitter.get(k) is None else jitter[k] for k in ("brightness", "contrast", "saturation",
                                                                          "hue")]
    order = _ORDERS[jitter["order"]] if jitter else 0
    values = [top / height, left / width, h / height, w / width, float(params["flip"]), float(bool(jitter)),
              *factors, float(order), float(params["grayscale"]), params["blur_sigma"] or 0.0]
    return torch.tensor(values, dtype=torch.float32)
