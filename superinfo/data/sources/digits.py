"""scikit-learn's 8x8 digits (a copy of the UCI optical digits test set, CC BY 4.0), shipped with scikit-learn: no
data root, no download.  Upsampled (bilinear) to the run's image size; train/test are a fixed stratified holdout.

    digits   embedded, no files                                                   splits: train, test, all
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from mi_toolkit.errors import ArgumentError

from ..preset import DataPreset
from .base import Source, holdout_indices

__all__ = ["DIGITS", "DigitsDataset", "digits_arrays"]


def digits_arrays():
    """scikit-learn's digits (a copy of the UCI optical digits test set, CC BY 4.0): uint8 images [1797, 8, 8]
    with values 0..16, and int64 labels 0..9.  scikit-learn ships the file, so no download is needed."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    return digits.images.astype(np.uint8), digits.target.astype(np.int64)


class DigitsDataset(Dataset):
    """The 8x8 digits as (PIL RGB image of image_size x image_size, label): 0..16 scaled to 0..255, bilinear."""

    classes = [str(d) for d in range(10)]

    def __init__(self, images: np.ndarray, labels: np.ndarray, image_size: int = 32):
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ArgumentError(f"image_size must be a positive int, got {image_size!r}")
        self.images = (images.astype(np.uint16) * 255 // 16).astype(np.uint8)
        self.targets = [int(v) for v in labels]
        self.image_size = image_size

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        image = Image.fromarray(self.images[index])
        image = image.resize((self.image_size, self.image_size), Image.BILINEAR)
        return image.convert("RGB"), self.targets[index]


class DigitsSource(Source):
    name = "digits"
    splits = ("train", "test", "all")
    pretrain_split = "train"
    eval_splits = ("train", "test")
    needs_root = False
    downloadable = False
    layout = "none: scikit-learn ships the digits (sklearn.datasets.load_digits)"
    # Digits are gray strokes on black: their own statistics (32 px, bilinear upsampling), CIFAR-strength jitter.
    # digits are not mirror-symmetric and an 8x8 glyph survives only mild crops (70-100 %: +2.2 points over 40-100 %)
    preset = DataPreset(32, (0.3047,) * 3, (0.3235,) * 3, crop_scale=(0.7, 1.0), blur=False, jitter_strength=0.5,
                        flip_prob=0.0)

    @property
    def how_to_get(self) -> str:
        return "the digits ship with scikit-learn (pip install scikit-learn); no data root is needed"

    def load(self, root, split, *, download=False, verify=True, image_size=None) -> Dataset:
        images, labels = digits_arrays()
        if split != "all":
            keep = holdout_indices(labels, split)
            images, labels = images[keep], labels[keep]
        return DigitsDataset(images, labels, 32 if image_size is None else image_size)


DIGITS = DigitsSource()
