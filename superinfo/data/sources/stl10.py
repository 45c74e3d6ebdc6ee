"""STL-10: the official binary release, read by torchvision's STL10 after our checks.

    stl10   ROOT/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin, class_names.txt}
            splits: unlabeled, train, test, train+unlabeled (unlabeled images have label -1)

verify=True checks every file against torchvision's md5 list; verify=False checks sizes and label ranges instead.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets

from ..integrity import CorruptDataError, DataError
from ..preset import DataPreset
from .base import Source, md5_check_files, raise_md5_mismatch, require_files

__all__ = ["STL10"]

_IMAGE_BYTES = 3 * 96 * 96
_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


class _STL10(tv_datasets.STL10):
    """torchvision's STL10; verify=False replaces the md5 checks by presence checks (sizes are checked first)."""

    def __init__(self, root, split: str, download: bool, verify: bool):
        self._verify = verify
        super().__init__(str(root), split=split, download=download)
        if not hasattr(self, "classes"):      # class_names.txt is optional in torchvision
            self.classes = list(_CLASSES)

    def _check_integrity(self) -> bool:
        return md5_check_files(self, super()._check_integrity)


def _check_stl_files(folder: Path, split: str) -> None:
    """Image files hold whole 3x96x96 images; label files hold one label in 1..10 per image."""
    parts = {"train": [("train_X.bin", "train_y.bin")], "test": [("test_X.bin", "test_y.bin")],
             "unlabeled": [("unlabeled_X.bin", None)],
             "train+unlabeled": [("train_X.bin", "train_y.bin"), ("unlabeled_X.bin", None)]}[split]
    for images, labels in parts:
        size = (folder / images).stat().st_size
        if size == 0 or size % _IMAGE_BYTES:
            raise CorruptDataError(f"{folder / images} has {size} bytes, not a whole number of 3x96x96 uint8 images "
                                   f"({_IMAGE_BYTES} bytes each); the file is truncated or not STL-10")
        if labels is None:
            continue
        y = np.fromfile(folder / labels, dtype=np.uint8)
        if len(y) != size // _IMAGE_BYTES:
            raise CorruptDataError(f"{folder / labels} has {len(y)} labels for {size // _IMAGE_BYTES} images "
                                   f"in {images}")
        if len(y) and (y.min() < 1 or y.max() > 10):
            raise CorruptDataError(f"{folder / labels}: labels must be 1..10 (STL-10 is 1-based), "
                                   f"found {int(y.min())}..{int(y.max())}")


class Stl10Source(Source):
    name = "stl10"
    splits = ("unlabeled", "train", "test", "train+unlabeled")
    pretrain_split = "unlabeled"
    eval_splits = ("train", "test")
    folder = tv_datasets.STL10.base_folder
    files = [f for f, _ in tv_datasets.STL10.train_list + tv_datasets.STL10.test_list]
    layout = ("ROOT/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin, "
              "class_names.txt}")
    preset = DataPreset(96, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713), blur=True, jitter_strength=1.0)

    @property
    def how_to_get(self) -> str:
        return ("pass --download (download=True) to fetch it (2.6 GB), or put the official binary release there: "
                f"{self.layout}")

    @property
    def md5(self) -> dict:
        return {f"{self.folder}/{f}": md5 for f, md5 in tv_datasets.STL10.train_list + tv_datasets.STL10.test_list}

    def required_files(self, root: Path) -> list:
        return [root / self.folder / f for f in self.files]

    def download(self, root: Path) -> None:
        tv_datasets.STL10(str(root), split="train", download=True)

    def load(self, root, split, *, download=False, verify=True, image_size=None) -> Dataset:
        folder = root / self.folder
        if not download:
            require_files(folder, self.files, self, root)
        if not verify and not download:
            _check_stl_files(folder, split)      # before torchvision's reshape, which would fail obscurely
        try:
            dataset = _STL10(root, split=split, download=download, verify=verify)
        except DataError:
            raise
        except RuntimeError as exc:
            require_files(folder, self.files, self, root)
            if verify:
                raise_md5_mismatch(folder, dict(tv_datasets.STL10.train_list + tv_datasets.STL10.test_list),
                                   "STL-10")
            raise CorruptDataError(f"could not load STL-10 from {folder}: {exc}") from exc
        except (ValueError, OSError) as exc:
            _check_stl_files(folder, split)
            raise CorruptDataError(f"could not load STL-10 from {folder}: {type(exc).__name__}: {exc}") from exc
        return dataset


STL10 = Stl10Source()
