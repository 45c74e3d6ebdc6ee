"""The two-view augmentation of the SuperInfo trainer (SimCLR's recipe, the paper protocol) and the deterministic
evaluation transform, with one ``DataPreset`` per data set (image size, normalisation, augmentation strength)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np
from PIL import Image
from torchvision import transforms as T
from mi_toolkit.errors import ArgumentError, ArgumentTypeError

__all__ = ["BLUR_MIN_SIZE", "DataPreset", "PRESETS", "TwoViewTransform", "augmentation", "eval_transform",
           "check_preset", "preset_for", "to_rgb", "two_view_transform"]

BLUR_MIN_SIZE = 96          # the paper protocol blurs only large images (STL-10, ImageNet), not 32 px CIFAR


@dataclass(frozen=True)
class DataPreset:
    """Image size, normalisation and augmentation strength of one dataset (SimCLR's recipe, paper protocol).

    jitter_strength is SimCLR's s: ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) applied with probability jitter_prob.
    eval_resize: the shorter side before the eval center crop (None: image_size; ImageNet: 256 for 224).
    """
    image_size: int
    mean: tuple
    std: tuple
    crop_scale: tuple = (0.08, 1.0)
    blur: bool = False
    jitter_strength: float = 0.5
    eval_resize: Optional[int] = None
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    grayscale_prob: float = 0.2
    blur_prob: float = 0.5

    def __post_init__(self):
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 1:
            raise ArgumentError(f"image_size must be a positive int, got {self.image_size!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value):
                raise ArgumentError(f"{name} must be 3 finite numbers (one per RGB channel), got {value!r}")
        if min(self.std) <= 0:
            raise ArgumentError(f"std must be > 0 in every channel, got {self.std!r}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ArgumentError(f"crop_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {self.crop_scale!r}")
        if not self.jitter_strength >= 0:
            raise ArgumentError(f"jitter_strength must be >= 0, got {self.jitter_strength!r}")
        if self.eval_resize is not None and self.eval_resize < self.image_size:
            raise ArgumentError(f"eval_resize must be >= image_size ({self.image_size}), got {self.eval_resize!r}")
        for name in ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ArgumentError(f"{name} must be a probability in [0, 1], got {getattr(self, name)!r}")


_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PRESETS = {
    "cifar10": DataPreset(32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), blur=False, jitter_strength=0.5),
    "stl10": DataPreset(96, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713), blur=True, jitter_strength=1.0),
    "imagenet": DataPreset(224, _IMAGENET_MEAN, _IMAGENET_STD, blur=True, jitter_strength=1.0, eval_resize=256),
    # Any ImageFolder: ImageNet statistics at ImageNet size; preset_for(..., image_size=32) for small images.
    "imagefolder": DataPreset(224, _IMAGENET_MEAN, _IMAGENET_STD, blur=True, jitter_strength=1.0, eval_resize=256),
    # Digits are gray strokes on black: their own statistics (32 px, bilinear upsampling), CIFAR-strength jitter.
    # digits are not mirror-symmetric and an 8x8 glyph survives only mild crops (70-100 %: +2.2 points over 40-100 %)
    "digits": DataPreset(32, (0.3047,) * 3, (0.3235,) * 3, crop_scale=(0.7, 1.0), blur=False, jitter_strength=0.5,
                         flip_prob=0.0),
    # random uint8 images for throughput measurements (superinfo.data.synthetic_images): CIFAR-10's recipe
    "synthetic": DataPreset(32, (0.5,) * 3, (0.29,) * 3, blur=False, jitter_strength=0.5),
}


def preset_for(name: str, image_size: Optional[int] = None) -> DataPreset:
    """PRESETS[name], resized to image_size if given: blur follows the size (on from 96 px, as in the paper
    protocol); from 96 px the eval resize keeps the preset's resize/crop ratio (ImageNet's 256/224), below it
    images are resized whole."""
    if name not in PRESETS:
        raise ArgumentError(f"dataset must be one of {tuple(PRESETS)}, got {name!r}")
    preset = PRESETS[name]
    if image_size is None or image_size == preset.image_size:
        return preset
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ArgumentError(f"image_size must be a positive int, got {image_size!r}")
    eval_resize = None
    if preset.eval_resize is not None and image_size >= BLUR_MIN_SIZE:      # small images: resize, no crop
        eval_resize = max(image_size, round(image_size * preset.eval_resize / preset.image_size))
    return replace(preset, image_size=image_size, blur=image_size >= BLUR_MIN_SIZE, eval_resize=eval_resize)


def to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette, RGBA and 16-bit images become 8-bit RGB (models always see 3 channels)."""
    if not isinstance(image, Image.Image):
        raise ArgumentTypeError(f"image must be a PIL.Image, got {type(image).__name__}")
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # PIL's convert clips 16-bit values to 255; rescale to the 8-bit range instead.
        array = np.asarray(image, dtype=np.float64)
        peak = float(array.max()) if array.size else 0.0
        if peak > 255:
            array = array * (255.0 / peak)
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    return image.convert("RGB")


def check_preset(preset) -> DataPreset:
    if not isinstance(preset, DataPreset):
        raise ArgumentTypeError(f"preset must be a DataPreset (see PRESETS / preset_for), got {type(preset).__name__}")
    return preset


def _blur_kernel(image_size: int) -> int:
    # SimCLR: kernel 10% of the image side, odd.
    return max(3, int(0.1 * image_size) // 2 * 2 + 1)


def augmentation(preset: DataPreset) -> T.Compose:
    """One SimCLR view: random resized crop, flip, colour jitter, grayscale (and blur when preset.blur)."""
    preset = check_preset(preset)
    s = preset.jitter_strength
    steps = [
        T.Lambda(to_rgb),
        T.RandomResizedCrop(preset.image_size, scale=tuple(preset.crop_scale)),
        T.RandomHorizontalFlip(p=preset.flip_prob),
        T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=preset.jitter_prob),
        T.RandomGrayscale(p=preset.grayscale_prob),
    ]
    if preset.blur:
        steps.append(T.RandomApply([T.GaussianBlur(_blur_kernel(preset.image_size), sigma=(0.1, 2.0))],
                                   p=preset.blur_prob))
    steps += [T.ToTensor(), T.Normalize(preset.mean, preset.std)]
    return T.Compose(steps)


class TwoViewTransform:
    """image -> (view1, view2): the same random augmentation drawn twice, each a normalised float [3, H, W]."""

    def __init__(self, preset: DataPreset):
        self.preset = check_preset(preset)
        self.augment = augmentation(preset)

    def __call__(self, image):
        return self.augment(image), self.augment(image)

    def __repr__(self):
        return f"TwoViewTransform({self.augment!r})"


def two_view_transform(preset: DataPreset) -> Callable:
    """The paper protocol's pair of views of one image; see ``augmentation`` for the steps."""
    return TwoViewTransform(preset)


def eval_transform(preset: DataPreset) -> T.Compose:
    """Deterministic: RGB, resize the shorter side to eval_resize, center crop image_size, normalise."""
    preset = check_preset(preset)
    return T.Compose([
        T.Lambda(to_rgb),
        T.Resize(preset.eval_resize or preset.image_size),
        T.CenterCrop(preset.image_size),
        T.ToTensor(),
        T.Normalize(preset.mean, preset.std),
    ])

