"""Oxford Flowers-102, torchvision's layout, read by torchvision's Flowers102 after our checks.

    flowers102   ROOT/flowers-102/jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat
                 splits: train, val, test; transfer: train+val / test

verify=True checks torchvision's md5 of the two .mat files and of the image archive it keeps
(ROOT/flowers-102/102flowers.tgz: the extracted images are covered only through it).  Both modes check that the
.mat files parse, labels are 1..102 and every listed image exists.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets

from ..images import load_rgb
from .base import ArchiveSource, corrupt

__all__ = ["FLOWERS102"]


class _Flowers102(tv_datasets.Flowers102):
    """torchvision's Flowers102 after our checks: its own md5 re-check of the .mat files is replaced by them."""

    def _check_integrity(self) -> bool:
        return self._images_folder.is_dir()


def _loadmat(path: Path, keys) -> dict:
    from scipy.io import loadmat

    try:
        content = loadmat(path, squeeze_me=True)
    except Exception as exc:        # scipy raises several types for a file that is not a .mat
        raise corrupt("flowers102", path, f"not a readable MATLAB file ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in keys if k not in content]
    if missing:
        raise corrupt("flowers102", path, f"has no {', '.join(missing)} array")
    return content


class Flowers102Source(ArchiveSource):
    name = "flowers102"
    splits = ("train", "val", "test")
    transfer_splits = (("train", "val"), "test")
    layout = ("ROOT/flowers-102/jpg/image_00001.jpg..., ROOT/flowers-102/imagelabels.mat, "
              "ROOT/flowers-102/setid.mat; verify also needs ROOT/flowers-102/102flowers.tgz")
    md5 = {f"flowers-102/{f}": md5 for f, md5 in tv_datasets.Flowers102._file_dict.values()}

    def required_files(self, root: Path) -> list:
        base = root / "flowers-102"
        return [base / "jpg", base / "imagelabels.mat", base / "setid.mat"]

    def download(self, root: Path) -> None:
        tv_datasets.Flowers102(str(root), download=True)

    def load(self, root, split, *, download=False, verify=True, image_size=None) -> Dataset:
        self.checked_root(root, download, verify)
        base = root / "flowers-102"
        labels = np.atleast_1d(_loadmat(base / "imagelabels.mat", ["labels"])["labels"])
        if len(labels) and not 1 <= labels.min() <= labels.max() <= 102:
            raise corrupt("flowers102", base / "imagelabels.mat", "labels must be 1..102 (1-based)")
        ids_of = _loadmat(base / "setid.mat", list(tv_datasets.Flowers102._splits_map.values()))
        for key in tv_datasets.Flowers102._splits_map.values():
            ids = np.atleast_1d(ids_of[key])
            if len(ids) == 0 or ids.min() < 1 or ids.max() > len(labels):
                raise corrupt("flowers102", base / "setid.mat", f"{key!r} must hold image ids in 1..{len(labels)}")
            for image_id in ids:
                if not (base / "jpg" / f"image_{int(image_id):05d}.jpg").is_file():
                    raise corrupt("flowers102", base / "jpg", f"image_{int(image_id):05d}.jpg (listed in setid.mat "
                                                              f"{key!r}) does not exist")
        return _Flowers102(str(root), split=split, loader=load_rgb)


FLOWERS102 = Flowers102Source()
