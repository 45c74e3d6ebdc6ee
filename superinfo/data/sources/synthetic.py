"""Random uint8 images with random labels (``superinfo.data.synthetic_images``): throughput runs anywhere, no data
root, nothing to download or verify.

    synthetic   generated: 50000 images to train on (seed 0), 10000 to test (seed 1)   splits: train, test
                (a run: cfg.synthetic_size to pre-train on, a fifth of it for each evaluation split)
"""
from __future__ import annotations

from torch.utils.data import Dataset

from ..preset import DataPreset
from ..synthetic_images import SyntheticImages
from .base import Source

__all__ = ["SYNTHETIC"]


class SyntheticSource(Source):
    name = "synthetic"
    splits = ("train", "test")
    pretrain_split = "train"
    eval_splits = ("train", "test")
    needs_root = False
    downloadable = False
    layout = "none: the images are generated (--synthetic-size N --image-size S)"
    # random uint8 images for throughput measurements: CIFAR-10's recipe
    preset = DataPreset(32, (0.5,) * 3, (0.29,) * 3, blur=False, jitter_strength=0.5)

    @property
    def how_to_get(self) -> str:
        return "the synthetic images are generated; no data root is needed"

    def load(self, root, split, *, download=False, verify=True, image_size=None) -> Dataset:
        train = split == "train"
        return SyntheticImages(50_000 if train else 10_000, 32 if image_size is None else image_size,
                               seed=0 if train else 1)

    def run_bases(self, cfg, image_size: int):
        # cfg.synthetic_size images to pre-train on, a fifth of it for each evaluation split
        n = getattr(cfg, "synthetic_size", 50_000)
        return (SyntheticImages(n, image_size, seed=0), SyntheticImages(max(1, n // 5), image_size, seed=1),
                SyntheticImages(max(1, n // 5), image_size, seed=2))

SYNTHETIC = SyntheticSource()
