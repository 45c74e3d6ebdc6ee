"""The two-view augmentation of the SuperInfo trainer (SimCLR's recipe, the paper protocol) and the deterministic
evaluation transform, with one ``DataPreset`` per data set (image size, normalisation, augmentation strength;
each declared by its source in ``superinfo.data.sources``)."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional

from torchvision import transforms as T
from mi_toolkit.errors import ArgumentError

from .images import to_rgb
from .preset import BLUR_MIN_SIZE, DataPreset, check_preset
from .sources import SOURCES

__all__ = ["BLUR_MIN_SIZE", "DataPreset", "PRESETS", "TwoViewTransform", "augmentation", "eval_transform",
           "check_preset", "preset_for", "to_rgb", "two_view_transform"]

# one preset per pre-training data set, declared by its source (superinfo.data.sources)
PRESETS = {name: source.preset for name, source in SOURCES.items()
           if source.pretrain_split is not None and source.preset is not None}


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

