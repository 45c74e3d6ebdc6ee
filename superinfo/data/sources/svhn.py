"""SVHN (Street View House Numbers), cropped digits: torchvision's files, MATLAB ``.mat`` read with scipy.io.

    svhn   ROOT/{train,test}_32x32.mat ('X' uint8 [32, 32, 3, N], 'y' [N, 1] labels 1..10, 10 meaning the digit 0)
           splits: train, test (labels 0..9: 10 becomes 0, as torchvision does)

verify=True checks each file against torchvision's md5; both modes check that 'X' holds uint8 32 x 32 RGB images
and 'y' one label in 1..10 per image.  ``download=True`` fetches the files through torchvision's ``download_url``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets

from ..integrity import MissingDataError
from ..preset import DataPreset
from .base import Source, corrupt, verify_md5

__all__ = ["SVHN", "SvhnImages"]


class SvhnImages(Dataset):
    """(PIL RGB image, label 0..9); ``data`` uint8 [N, 3, 32, 32] (``uint8_layout``), ``targets``."""

    uint8_layout = "NCHW"
    classes = [str(d) for d in range(10)]

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.data = images
        self.targets = [int(v) for v in labels]

    @property
    def labels(self):       # torchvision's SVHN calls them labels
        return self.targets

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return Image.fromarray(np.ascontiguousarray(self.data[index].transpose(1, 2, 0))), self.targets[index]


class SvhnSource(Source):
    name = "svhn"
    splits = ("train", "test")
    pretrain_split = "train"
    eval_splits = ("train", "test")
    layout = "ROOT/train_32x32.mat and ROOT/test_32x32.mat (torchvision's SVHN files, cropped digits)"
    # house numbers are not mirror-symmetric: no flips
    preset = DataPreset(32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), crop_scale=(0.2, 1.0), blur=False,
                        jitter_strength=0.5, flip_prob=0.0)

    def __init__(self):
        lists = tv_datasets.SVHN.split_list
        self.urls = {split: lists[split][0] for split in self.splits}
        self.md5 = {lists[split][1]: lists[split][2] for split in self.splits}

    @staticmethod
    def filename(split: str) -> str:
        return f"{split}_32x32.mat"

    def required_files(self, root: Path) -> list:
        return [root / self.filename(s) for s in self.splits]

    def download(self, root: Path, splits=None) -> None:
        from torchvision.datasets.utils import download_url
        for split in splits or self.splits:
            download_url(self.urls[split], str(root), self.filename(split), self.md5[self.filename(split)])

    def load(self, root, split, *, download=False, verify=True, image_size=None) -> Dataset:
        from scipy.io import loadmat

        path = root / self.filename(split)
        if download and not path.is_file():
            root.mkdir(parents=True, exist_ok=True)
            self.download(root, [split])
        if not path.is_file():
            raise MissingDataError(f"svhn data not found: missing {path}; {self.how(root)}")
        if verify:
            verify_md5(self.name, root, {path.name: self.md5[path.name]})
        try:
            content = loadmat(path)
        except Exception as exc:        # scipy raises several types for a file that is not a .mat, or a cut one
            raise corrupt(self.name, path, f"not a readable MATLAB file ({type(exc).__name__}: {exc}); the file is "
                                           f"truncated or corrupt, re-download it with --download") from exc
        missing = [k for k in ("X", "y") if k not in content]
        if missing:
            raise corrupt(self.name, path, f"has no {' or '.join(repr(k) for k in missing)} array "
                                           f"(keys: {sorted(k for k in content if not k.startswith('__'))})")
        x, y = content["X"], np.asarray(content["y"])
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
            raise corrupt(self.name, path, f"'X' must be uint8 [32, 32, 3, N] (N RGB images of 32 x 32), got "
                                           f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
        y = y.reshape(-1).astype(np.int64) if y.ndim < 2 or (y.ndim == 2 and 1 in y.shape) else None
        if y is None or len(y) != x.shape[3]:
            raise corrupt(self.name, path, f"'y' must hold one label per image ({x.shape[3]}), got shape "
                                           f"{np.shape(content['y'])}")
        if len(y) and (y.min() < 1 or y.max() > 10):
            raise corrupt(self.name, path, f"labels must be 1..10 (10 is the digit 0), found "
                                           f"{int(y.min())}..{int(y.max())}")
        y[y == 10] = 0
        return SvhnImages(np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y)


SVHN = SvhnSource()
