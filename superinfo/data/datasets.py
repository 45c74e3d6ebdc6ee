"""Datasets in their official on-disk formats (paper protocol, DESIGN.md section 4).

    from superinfo.data import PRESETS, preset_for, pretrain_dataset, eval_datasets, num_classes
    preset = preset_for("stl10")                                      # 96 px, blur on
    views = pretrain_dataset("stl10", "data/", preset)                # stl10_binary/unlabeled_X.bin, label -1
    v1, v2, label = views[0]                                          # two augmented [3, 96, 96] float tensors
    train, test = eval_datasets("stl10", "data/", preset)            # (tensor, label) with the eval transform

Datasets (``build_dataset(name, root, split)`` gives (PIL RGB image, int label) pairs):

    cifar10      root/cifar-10-batches-py/ (the official python pickles)         splits: train, test
    stl10        root/stl10_binary/ (the official binary files)                  splits: unlabeled, train, test,
                                                                                 train+unlabeled (unlabeled label -1)
    imagenet     root/train/<wnid>/*.JPEG, root/val/<wnid>/*.JPEG (ImageFolder)  splits: train, val
    imagefolder  root/<split>/<class>/<image> or root/<class>/<image>           splits: train, val, test, all
    digits       embedded (scikit-learn's 8x8 digits, upsampled), no files        splits: train, test, all

``download=True`` passes through to torchvision (CIFAR-10, STL-10); ImageNet and ImageFolder trees cannot be
downloaded. Grayscale, palette and RGBA images are converted to RGB; any image size and number of classes work.

Integrity: ``verify=True`` (the default) checks CIFAR-10 and STL-10 files against the official md5 sums, exactly as
torchvision does. ``verify=False`` (CLI: ``--no-verify``) is the explicit opt-out for files you made or converted
yourself (and the test fixtures): it still checks that every file exists, unpickles or has the right size, and that
images and labels agree, and raises CorruptDataError naming the file when they do not. ImageFolder trees have no
checksums; an unreadable image raises CorruptDataError naming the file when it is loaded.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets
from torchvision.datasets.utils import check_integrity

from mi_toolkit.errors import ArgumentError, ArgumentTypeError
from .augment import DataPreset, check_preset, eval_transform, to_rgb, two_view_transform
from .integrity import (CorruptDataError, DataError, IntegrityError, MissingDataError, check_cifar_batch, read_cifar_pickle,
                        verified_once)

DATASETS = ("cifar10", "stl10", "imagenet", "imagefolder", "digits", "synthetic")
SPLITS = {
    "cifar10": ("train", "test"),
    "stl10": ("unlabeled", "train", "test", "train+unlabeled"),
    "imagenet": ("train", "val"),
    "imagefolder": ("train", "val", "test", "all"),
    "digits": ("train", "test", "all"),
    "synthetic": ("train", "test"),
}
PRETRAIN_SPLIT = {"cifar10": "train", "stl10": "unlabeled", "imagenet": "train", "imagefolder": "train",
                  "digits": "train", "synthetic": "train"}
EVAL_SPLITS = {"cifar10": ("train", "test"), "stl10": ("train", "test"), "imagenet": ("train", "val"),
               "imagefolder": ("train", "test"), "digits": ("train", "test"), "synthetic": ("train", "test")}
HOLDOUT_FRACTION = 0.2      # test share when a folder (or digits) has no split of its own
HOLDOUT_SEED = 0
UNLABELED = -1


# ---------------------------------------------------------------------------------------------------------------
# Dataset wrappers
# ---------------------------------------------------------------------------------------------------------------

def _classes_of(dataset) -> list:
    while not hasattr(dataset, "classes") and hasattr(dataset, "base"):
        dataset = dataset.base
    classes = getattr(dataset, "classes", None)
    if classes is None:
        raise ArgumentTypeError(f"dataset must come from build_dataset (it needs a .classes list), got {type(dataset).__name__}")
    return list(classes)


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


class _Subset(Dataset):
    """A fixed subset that keeps .classes and .targets (torch's Subset keeps neither)."""

    def __init__(self, base: Dataset, indices: Sequence[int]):
        self.base, self.indices = base, [int(i) for i in indices]
        self.classes = _classes_of(base)
        self.targets = [int(base.targets[i]) for i in self.indices]

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.base[self.indices[index]]


def holdout_indices(labels: Sequence[int], split: str, fraction: float = HOLDOUT_FRACTION,
                    seed: int = HOLDOUT_SEED) -> list:
    """Deterministic stratified split: about `fraction` of each class goes to "test" (none of a 1-image class)."""
    if split not in ("train", "test"):
        raise ArgumentError(f"split must be 'train' or 'test', got {split!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        n_test = int(round(fraction * len(members))) if len(members) > 1 else 0
        chosen.extend(members[:n_test] if split == "test" else members[n_test:])
    return sorted(int(i) for i in chosen)


# ---------------------------------------------------------------------------------------------------------------
# build_dataset and the per-dataset loaders
# ---------------------------------------------------------------------------------------------------------------

_HOW_TO_GET = {
    "cifar10": "pass --download (download=True) to fetch it, or put the official 'CIFAR-10 python version' there: "
               "ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}",
    "stl10": "pass --download (download=True) to fetch it (2.6 GB), or put the official binary release there: "
             "ROOT/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin, class_names.txt}",
    "imagenet": "ImageNet cannot be downloaded automatically; expected ImageFolder layout "
                "ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG (val images sorted into class folders)",
    "imagefolder": "expected ROOT/<class>/<image> or ROOT/<split>/<class>/<image> (split: train, val or test); "
                   "any image size and number of classes, grayscale is converted to RGB",
}
_NO_VERIFY_HINT = ("if you made or converted these files yourself, skip the checksum check with verify=False "
                   "(CLI: --no-verify); otherwise re-download them with --download")


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
    """A dataset of (PIL RGB image, int label); label -1 for STL-10's unlabeled images.

    image_size only matters for digits (the 8x8 digits are upsampled to it, default 32); other datasets return
    images at their stored size, and the transforms resize. download passes through to torchvision (CIFAR-10,
    STL-10). verify=False skips the md5 check only; see the module docstring.
    """
    _check_name(name)
    _check_split(name, split)
    if not isinstance(download, bool) or not isinstance(verify, bool):
        raise ArgumentTypeError(f"download and verify must be bools, got {download!r} and {verify!r}")
    if name == "digits":
        return _digits(split, 32 if image_size is None else image_size)
    if name == "synthetic":     # random images (throughput runs): 50000 to train on, 10000 to test
        from .synthetic_images import SyntheticImages
        train = split == "train"
        return SyntheticImages(50_000 if train else 10_000, 32 if image_size is None else image_size,
                               seed=0 if train else 1)
    root = _check_root(name, root)
    if download and name in ("imagenet", "imagefolder"):
        raise ArgumentError(f"{name} cannot be downloaded (download=True / --download); {_HOW_TO_GET[name]}")
    if name == "cifar10":
        return _cifar10(root, split, download, verify)
    if name == "stl10":
        return _stl10(root, split, download, verify)
    if name == "imagenet":
        return _image_folder(root / split, name, root)
    return _imagefolder_split(root, split)


def pretrain_dataset(name: str, root, preset: DataPreset, *, split: Optional[str] = None, download: bool = False,
                     verify: bool = True, seed: Optional[int] = None) -> TwoViews:
    """The pre-training set as (view1, view2, label): PRETRAIN_SPLIT[name] unless split is given (STL-10:
    'unlabeled' by default, or 'train+unlabeled')."""
    preset = check_preset(preset)
    _check_name(name)
    base = build_dataset(name, root, split or PRETRAIN_SPLIT[name], download=download, verify=verify,
                         image_size=preset.image_size)
    return TwoViews(base, two_view_transform(preset), seed=seed)


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


# --- CIFAR-10 ---------------------------------------------------------------------------------------------------

class _CIFAR10(tv_datasets.CIFAR10):
    """torchvision's CIFAR10; verify=False replaces the md5 checks by presence checks (loading then validates)."""

    def __init__(self, root, train: bool, download: bool, verify: bool):
        self._verify = verify
        super().__init__(str(root), train=train, download=download)

    def _check_integrity(self) -> bool:
        return _check_files(self, super()._check_integrity)

    def _load_meta(self) -> None:
        if self._verify:
            return super()._load_meta()
        path = Path(self.root, self.base_folder, self.meta["filename"])
        entry = read_cifar_pickle(path)
        if self.meta["key"] not in entry:
            raise CorruptDataError(f"{path} has no {self.meta['key']!r} list of class names")
        self.classes = list(entry[self.meta["key"]])
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


def _cifar_files():
    names = [f for f, _ in tv_datasets.CIFAR10.train_list + tv_datasets.CIFAR10.test_list]
    return names, tv_datasets.CIFAR10.meta["filename"]


def _cifar10(root: Path, split: str, download: bool, verify: bool) -> Dataset:
    folder = root / tv_datasets.CIFAR10.base_folder
    batches, meta = _cifar_files()
    if not download:
        _require_files(folder, batches + [meta], "cifar10", root)
    if not verify and not download:       # torchvision unpickles with no restriction: only files that load safely
        for name in batches:
            check_cifar_batch(folder / name)
    try:
        dataset = _CIFAR10(root, train=(split == "train"), download=download, verify=verify)
    except DataError:
        raise
    except RuntimeError as exc:
        # torchvision's "not found or corrupted": find the file and say which.
        _require_files(folder, batches + [meta], "cifar10", root)
        if verify:
            md5s = dict(tv_datasets.CIFAR10.train_list + tv_datasets.CIFAR10.test_list)
            md5s[meta] = tv_datasets.CIFAR10.meta["md5"]
            _raise_md5_mismatch(folder, md5s, "CIFAR-10")
        raise CorruptDataError(f"could not load CIFAR-10 from {folder}: {exc}") from exc
    except Exception as exc:
        # Unpickling or reshaping failed inside torchvision (verify=False, or a file changed after the check).
        for name in batches:
            check_cifar_batch(folder / name)
        raise CorruptDataError(f"could not load CIFAR-10 from {folder}: {type(exc).__name__}: {exc}") from exc
    bad_labels = len(dataset.targets) and not 0 <= min(dataset.targets) <= max(dataset.targets) < len(dataset.classes)
    if len(dataset.data) != len(dataset.targets) or bad_labels:
        for name in batches:
            check_cifar_batch(folder / name)
        raise CorruptDataError(f"{folder}: {len(dataset.data)} images, {len(dataset.targets)} labels, "
                               f"{len(dataset.classes)} class names in {meta}; they must agree")
    return dataset


# --- STL-10 -----------------------------------------------------------------------------------------------------

_STL_IMAGE_BYTES = 3 * 96 * 96
_STL_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


class _STL10(tv_datasets.STL10):
    """torchvision's STL10; verify=False replaces the md5 checks by presence checks (sizes are checked first)."""

    def __init__(self, root, split: str, download: bool, verify: bool):
        self._verify = verify
        super().__init__(str(root), split=split, download=download)
        if not hasattr(self, "classes"):      # class_names.txt is optional in torchvision
            self.classes = list(_STL_CLASSES)

    def _check_integrity(self) -> bool:
        return _check_files(self, super()._check_integrity)


def _stl_files():
    return [f for f, _ in tv_datasets.STL10.train_list + tv_datasets.STL10.test_list]


def _check_stl_files(folder: Path, split: str) -> None:
    """Image files hold whole 3x96x96 images; label files hold one label in 1..10 per image."""
    parts = {"train": [("train_X.bin", "train_y.bin")], "test": [("test_X.bin", "test_y.bin")],
             "unlabeled": [("unlabeled_X.bin", None)],
             "train+unlabeled": [("train_X.bin", "train_y.bin"), ("unlabeled_X.bin", None)]}[split]
    for images, labels in parts:
        size = (folder / images).stat().st_size
        if size == 0 or size % _STL_IMAGE_BYTES:
            raise CorruptDataError(f"{folder / images} has {size} bytes, not a whole number of 3x96x96 uint8 images "
                                   f"({_STL_IMAGE_BYTES} bytes each); the file is truncated or not STL-10")
        if labels is None:
            continue
        y = np.fromfile(folder / labels, dtype=np.uint8)
        if len(y) != size // _STL_IMAGE_BYTES:
            raise CorruptDataError(f"{folder / labels} has {len(y)} labels for {size // _STL_IMAGE_BYTES} images "
                                   f"in {images}")
        if len(y) and (y.min() < 1 or y.max() > 10):
            raise CorruptDataError(f"{folder / labels}: labels must be 1..10 (STL-10 is 1-based), "
                                   f"found {int(y.min())}..{int(y.max())}")


def _stl10(root: Path, split: str, download: bool, verify: bool) -> Dataset:
    folder = root / tv_datasets.STL10.base_folder
    if not download:
        _require_files(folder, _stl_files(), "stl10", root)
    if not verify and not download:
        _check_stl_files(folder, split)      # before torchvision's reshape, which would fail obscurely
    try:
        dataset = _STL10(root, split=split, download=download, verify=verify)
    except DataError:
        raise
    except RuntimeError as exc:
        _require_files(folder, _stl_files(), "stl10", root)
        if verify:
            _raise_md5_mismatch(folder, dict(tv_datasets.STL10.train_list + tv_datasets.STL10.test_list), "STL-10")
        raise CorruptDataError(f"could not load STL-10 from {folder}: {exc}") from exc
    except (ValueError, OSError) as exc:
        _check_stl_files(folder, split)
        raise CorruptDataError(f"could not load STL-10 from {folder}: {type(exc).__name__}: {exc}") from exc
    return dataset


# --- ImageFolder / ImageNet -------------------------------------------------------------------------------------

def load_rgb(path: str) -> Image.Image:
    """ImageFolder loader: any PIL-readable image as RGB; an unreadable file raises CorruptDataError naming it."""
    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            image.load()
    except OSError as exc:      # PIL.UnidentifiedImageError and truncated files are OSErrors
        raise CorruptDataError(f"cannot read image {path}: {exc}") from exc
    return to_rgb(image)


def _image_folder(folder: Path, name: str, root: Path) -> Dataset:
    if not folder.is_dir():
        raise MissingDataError(f"{name} folder not found: {folder}; {_HOW_TO_GET[name].replace('ROOT', str(root))}")
    try:
        dataset = tv_datasets.ImageFolder(str(folder), loader=load_rgb)
    except FileNotFoundError as exc:
        # torchvision: no class folders, or a class folder without images.
        raise CorruptDataError(f"{name} folder {folder} has no usable images ({exc}); "
                               f"{_HOW_TO_GET[name].replace('ROOT', str(root))}") from exc
    check_image_headers([path for path, _ in dataset.samples])
    return dataset


HEADER_CHECK_LIMIT = 50_000     # folders up to this many images have every header read before training


def check_image_headers(paths, limit: int = HEADER_CHECK_LIMIT) -> None:
    """Read each image's header (not its pixels: about 0.1 ms a file) so an empty, non-image or unreadable file is
    reported before training starts instead of mid-run; skipped above ``limit`` files (ImageNet), where the loader
    still names a bad file when it reaches it."""
    if len(paths) > limit:
        return
    for path in paths:
        try:
            with Image.open(path) as image:
                image.size      # noqa: B018 -- parsed from the header
        except (OSError, SyntaxError, ValueError) as exc:   # UnidentifiedImageError is an OSError
            raise CorruptDataError(f"cannot read image {path}: {exc}; remove or replace the file") from None




def _imagefolder_split(root: Path, split: str) -> Dataset:
    if not root.is_dir():
        raise MissingDataError(f"imagefolder root not found: {root}; "
                               f"{_HOW_TO_GET['imagefolder'].replace('ROOT', str(root))}")
    present = [s for s in ("train", "val", "test") if (root / s).is_dir()]
    if split == "all" or not present:
        # No split folders: the classes sit in root; train/test are a fixed stratified holdout of it.
        dataset = _image_folder(root, "imagefolder", root)
        return dataset if split == "all" else _Subset(dataset, holdout_indices(dataset.targets, _holdout_side(split)))
    if split not in present:      # never another split in its place: val and test are not interchangeable
        raise MissingDataError(f"imagefolder split {split!r} not found: {root / split} does not exist "
                               f"(found {present}); {_HOW_TO_GET['imagefolder'].replace('ROOT', str(root))}")
    return _image_folder(root / split, "imagefolder", root)


def eval_splits(name: str, root=None) -> tuple[str, str]:
    """(train split, test split) for linear evaluation.  An ImageFolder tree with split folders is evaluated on
    test/, or on val/ when it has no test/ (a warning says so); one without split folders on a fixed holdout."""
    train_split, test_split = EVAL_SPLITS[name]
    if name == "imagefolder" and root is not None:
        root = Path(root).expanduser()
        if not (root / "test").is_dir() and (root / "val").is_dir():
            warnings.warn(f"{root} has no test/ folder: evaluating on its val/ folder", stacklevel=3)
            test_split = "val"
    return train_split, test_split


def _holdout_side(split: str) -> str:
    return "train" if split == "train" else "test"


# --- digits (scikit-learn's copy, shipped offline) -----------------------------------------------------------------

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


def _digits(split: str, image_size: int) -> Dataset:
    images, labels = digits_arrays()
    if split != "all":
        keep = holdout_indices(labels, split)
        images, labels = images[keep], labels[keep]
    return DigitsDataset(images, labels, image_size)


# --- shared checks ----------------------------------------------------------------------------------------------

def _check_files(dataset, md5_check: Callable[[], bool]) -> bool:
    """verify: torchvision's md5 check (once per unchanged set of files); otherwise: every file is present."""
    paths = [os.path.join(dataset.root, dataset.base_folder, f) for f, _ in dataset.train_list + dataset.test_list]
    if not all(os.path.isfile(p) for p in paths):
        return False
    return verified_once(paths, md5_check) if dataset._verify else True


def _require_files(folder: Path, names, dataset: str, root: Path) -> None:
    how = _HOW_TO_GET[dataset].replace("ROOT", str(root))
    if not folder.is_dir():
        raise MissingDataError(f"{dataset} data not found: {folder} does not exist; {how}")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise MissingDataError(f"{dataset} data incomplete: {folder} lacks {', '.join(missing)}; {how}")


def _raise_md5_mismatch(folder: Path, md5s: dict, label: str) -> None:
    for name, md5 in md5s.items():
        if not check_integrity(str(folder / name), md5):
            raise IntegrityError(f"{folder / name} does not match the official {label} md5 ({md5}): the file is "
                                 f"corrupt or not the official release; {_NO_VERIFY_HINT}")
    raise IntegrityError(f"{label} files in {folder} failed torchvision's integrity check; {_NO_VERIFY_HINT}")

