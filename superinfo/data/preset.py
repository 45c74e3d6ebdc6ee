"""``DataPreset``: one data set's image size, normalisation and augmentation strength (each data source in
``superinfo.data.sources`` declares its own; ``superinfo.data.PRESETS`` collects them)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from mi_toolkit.errors import ArgumentError, ArgumentTypeError

__all__ = ["BLUR_MIN_SIZE", "DataPreset", "check_preset"]

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


def check_preset(preset) -> DataPreset:
    if not isinstance(preset, DataPreset):
        raise ArgumentTypeError(f"preset must be a DataPreset (see PRESETS / preset_for), got {type(preset).__name__}")
    return preset
