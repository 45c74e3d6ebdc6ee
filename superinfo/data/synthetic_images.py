"""Random uint8 images with random labels: ``--dataset synthetic --synthetic-size N --image-size S`` measures the
trainer's throughput anywhere, with no data set on disk (what it learns means nothing)."""
from __future__ import annotations

import torch
from PIL import Image
from torch.utils.data import Dataset

from mi_toolkit.errors import ArgumentError

__all__ = ["SYNTHETIC_CLASSES", "SyntheticImages"]

SYNTHETIC_CLASSES = 10


class SyntheticImages(Dataset):
    """``n`` random RGB images of ``image_size`` px (uniform uint8, from ``seed``) with random labels 0..9, as
    ``(PIL image, label)`` for the DataLoader pipeline and as ``images_uint8`` / ``labels`` for the device one."""

    classes = [str(c) for c in range(SYNTHETIC_CLASSES)]

    def __init__(self, n: int, image_size: int = 32, seed: int = 0):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ArgumentError(f"the synthetic data set's size must be a positive int, got {n!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ArgumentError(f"image_size must be a positive int, got {image_size!r}")
        g = torch.Generator().manual_seed(seed)
        self.images_uint8 = torch.randint(0, 256, (n, 3, image_size, image_size), generator=g, dtype=torch.uint8)
        self.labels = torch.randint(0, SYNTHETIC_CLASSES, (n,), generator=g)
        self.image_size = image_size

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return Image.fromarray(self.images_uint8[index].permute(1, 2, 0).numpy()), int(self.labels[index])
