"""Datasets in their official on-disk formats (paper protocol, DESIGN.md section 4), through the registry of
``superinfo.data.sources`` (one module per format; the transfer suite reads the same registry).

    from superinfo.data import PRESETS, preset_for, pretrain_dataset, eval_datasets, num_classes
    preset = preset_for("stl10")                                      # 96 px, blur on
    views = pretrain_dataset("stl10", "data/", preset)                # stl10_binary/unlabeled_X.bin, label -1
    v1, v2, label = views[0]                                          # two augmented [3, 96, 96] float tensors
    train, test = eval_datasets("stl10", "data/", preset)            # (tensor, label) with the eval transform

Datasets (``build_dataset(name, root, split)`` gives (PIL image, int label) pairs):

    cifar10      root/cifar-10-batches-py/ (the official python pickles)         splits: train, test
    stl10        root/stl10_binary/ (the official binary files)                  splits: unlabeled, train, test,
                                                                                 train+unlabeled (unlabeled label -1)
    imagenet     root/train/<wnid>/*.JPEG, root/val/<wnid>/*.JPEG (ImageFolder)  splits: train, val
    imagefolder  root/<split>/<class>/<image> or root/<class>/<image>           splits: train, val, test, all
    digits       embedded (scikit-learn's 8x8 digits, upsampled), no files        splits: train, test, all
    synthetic    generated random images, no files                               splits: train, test
    mnist        root/MNIST/raw/*-ubyte[.gz] (torchvision), or the four          splits: train, test
                 {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz directly in root (28 px grayscale)
    fashionmnist root/FashionMNIST/raw/ (as mnist), or flat, e.g. Debian's       splits: train, test
                 /usr/share/datasets/fashion-mnist
    cifar100     root/cifar-100-python/{train, test, meta}                       splits: train, test
    svhn         root/{train,test}_32x32.mat (torchvision's files)               splits: train, test

``download=True`` passes through to torchvision (all but ImageNet, ImageFolder trees, digits and synthetic).
Grayscale, palette and RGBA images are converted to RGB by the transforms; any image size and number of classes
work.

Integrity: ``verify=True`` (the default) checks files against the official md5 sums, exactly as torchvision does
(MNIST's: its four archives; a flat MNIST folder, whose archives are not those bytes, is content-checked instead
and a warning says so).  ``verify=False`` (CLI: ``--no-verify``) is the explicit opt-out for files you made or
converted yourself (and the test fixtures): it still checks that every file exists, unpickles/parses or has the
right size, and that images and labels agree, and raises CorruptDataError naming the file when they do not.
ImageFolder trees have no checksums; an unreadable image raises CorruptDataError naming the file when it is loaded.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import Dataset

from mi_toolkit.errors import ArgumentError, ArgumentTypeError
from .augment import DataPreset, check_preset, eval_transform, two_view_transform
from .images import HEADER_CHECK_LIMIT, check_image_headers, load_rgb  # noqa: F401  (public here since before)
from .integrity import CorruptDataError
from .sources import SOURCES
from .sources.base import (HOLDOUT_FRACTION, HOLDOUT_SEED, Subset as _Subset,  # noqa: F401  (public here since before)
                           classes_of as _classes_of, holdout_indices)
from .sources.digits import DigitsDataset, digits_arrays  # noqa: F401  (public here since before)

DATASETS = tuple(name for name, source in SOURCES.items() if source.pretrain_split is not None)
SPLITS = {name: SOURCES[name].splits for name in DATASETS}
PRETRAIN_SPLIT = {name: SOURCES[name].pretrain_split for name in DATASETS}
EVAL_SPLITS = {name: SOURCES[name].eval_splits for name in DATASETS}
UNLABELED = -1
_HOW_TO_GET = {name: SOURCES[name].how_to_get for name in DATASETS}


# ---------------------------------------------------------------------------------------------------------------
# Dataset wrappers
# ---------------------------------------------------------------------------------------------------------------

def num_classes(dataset) -> int:
    """Number of labelled classes of a dataset from build_dataset, or any wrapper of one (TwoViews, ...)."""
    return len(_classes_of(dataset))


class TransformedDataset(Dataset):
    """(PIL image, label) -> (transform(image), label); used for linear evaluation."""

    _transform_example = ""     # what a good transform is, for the error message

    def __init__(self, base: Dataset, transform: Callable):
        if not callable(transform):
            raise ArgumentTypeError(f"transform must be callable{self._transform_example}, got {type(transform).__name__}")
        self.base, self.transform = base, transform

    @property
    def classes(self):
        return _classes_of(self.base)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        image, label = self.base[index]
        return self.transform(image), label


class TwoViews(TransformedDataset):
    """(PIL image, label) -> (view1, view2, label).

    seed=None draws augmentations from torch's global RNG (DataLoader seeds each worker). With a seed, item i in
    epoch e is augmented from its own generator state (seed, e, i): runs repeat exactly whatever the number of
    workers or the order of indices; call set_epoch(e) so each epoch still sees new views.
    """

    _transform_example = " (e.g. two_view_transform(preset))"

    def __init__(self, base: Dataset, transform: Callable, seed: Optional[int] = None):
        super().__init__(base, transform)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ArgumentTypeError(f"seed must be an int or None, got {type(seed).__name__}")
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index):
        image, label = self.base[index]
        if self.seed is None:
            view1, view2 = self.transform(image)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_item_seed(self.seed, self.epoch, index))
                view1, view2 = self.transform(image)
        return view1, view2, label


def _item_seed(seed: int, epoch: int, index: int) -> int:
    # A hash, not seed + index: neighbouring items and epochs must not share streams.
    digest = hashlib.blake2b(f"{seed}:{epoch}:{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


# ---------------------------------------------------------------------------------------------------------------
# build_dataset and the per-split entry points (the loaders are the sources')
# ---------------------------------------------------------------------------------------------------------------

def _check_name(name) -> str:
    if name not in DATASETS:
        raise ArgumentError(f"dataset must be one of {DATASETS}, got {name!r}")
    return name


def _check_split(name: str, split) -> str:
    if split not in SPLITS[name]:
        raise ArgumentError(f"split for {name} must be one of {SPLITS[name]}, got {split!r}")
    return split


def _check_root(name: str, root) -> Path:
    if root is None or (isinstance(root, str) and not root.strip()):
        raise ArgumentError(f"root (CLI: --data-root) is required for dataset {name!r}; {_HOW_TO_GET[name]}")
    if not isinstance(root, (str, os.PathLike)):
        raise ArgumentTypeError(f"root must be a path (str or os.PathLike), got {type(root).__name__}")
    return Path(root).expanduser()


def build_dataset(name: str, root, split: str, *, download: bool = False, verify: bool = True,
                  image_size: Optional[int] = None) -> Dataset:
    """A dataset of (PIL image, int label); label -1 for STL-10's unlabeled images.

    image_size only matters for digits (the 8x8 digits are upsampled to it, default 32) and the synthetic images;
    other datasets return images at their stored size, and the transforms resize (and make them RGB). download
    passes through to torchvision. verify=False skips the md5 check only; see the module docstring.
    """
    _check_name(name)
    _check_split(name, split)
    if not isinstance(download, bool) or not isinstance(verify, bool):
        raise ArgumentTypeError(f"download and verify must be bools, got {download!r} and {verify!r}")
    source = SOURCES[name]
    if not source.needs_root:       # digits ship with scikit-learn; the synthetic images are generated
        return source.load(None, split, download=False, verify=verify, image_size=image_size)
    root = _check_root(name, root)
    if download and not source.downloadable:
        raise ArgumentError(f"{name} cannot be downloaded (download=True / --download); {_HOW_TO_GET[name]}")
    return source.load(root, split, download=download, verify=verify, image_size=image_size)


def pretrain_dataset(name: str, root, preset: DataPreset, *, split: Optional[str] = None, download: bool = False,
                     verify: bool = True, seed: Optional[int] = None) -> TwoViews:
    """The pre-training set as (view1, view2, label): PRETRAIN_SPLIT[name] unless split is given (STL-10:
    'unlabeled' by default, or 'train+unlabeled')."""
    preset = check_preset(preset)
    _check_name(name)
    base = build_dataset(name, root, split or PRETRAIN_SPLIT[name], download=download, verify=verify,
                         image_size=preset.image_size)
    return TwoViews(base, two_view_transform(preset), seed=seed)


def eval_splits(name: str, root=None) -> tuple[str, str]:
    """(train split, test split) for linear evaluation.  An ImageFolder tree with split folders is evaluated on
    test/, or on val/ when it has no test/ (a warning says so); one without split folders on a fixed holdout."""
    return SOURCES[_check_name(name)].eval_splits_for(root)


def eval_datasets(name: str, root, preset: DataPreset, *, download: bool = False, verify: bool = True):
    """(train, test) for linear evaluation, each giving (eval_transform(image), label); same classes in both."""
    preset = check_preset(preset)
    _check_name(name)
    transform = eval_transform(preset)
    train_split, test_split = eval_splits(name, root)
    train = build_dataset(name, root, train_split, download=download, verify=verify, image_size=preset.image_size)
    test = build_dataset(name, root, test_split, download=download, verify=verify, image_size=preset.image_size)
    if _classes_of(train) != _classes_of(test):
        raise CorruptDataError(f"{name}: the {train_split} and {test_split} splits have different classes "
                               f"({len(_classes_of(train))} vs {len(_classes_of(test))}); both must hold the same "
                               f"class folders so labels mean the same thing")
    return TransformedDataset(train, transform), TransformedDataset(test, transform)
