"""Datasets and the two-view augmentation of the SuperInfo trainer (paper protocol, DESIGN.md section 4).

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
import math
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets
from torchvision import transforms as T
from torchvision.datasets.utils import check_integrity

DATASETS = ("cifar10", "stl10", "imagenet", "imagefolder", "digits")
SPLITS = {
    "cifar10": ("train", "test"),
    "stl10": ("unlabeled", "train", "test", "train+unlabeled"),
    "imagenet": ("train", "val"),
    "imagefolder": ("train", "val", "test", "all"),
    "digits": ("train", "test", "all"),
}
PRETRAIN_SPLIT = {"cifar10": "train", "stl10": "unlabeled", "imagenet": "train", "imagefolder": "train",
                  "digits": "train"}
EVAL_SPLITS = {"cifar10": ("train", "test"), "stl10": ("train", "test"), "imagenet": ("train", "val"),
               "imagefolder": ("train", "test"), "digits": ("train", "test")}
BLUR_MIN_SIZE = 96          # the paper protocol blurs only large images (STL-10, ImageNet), not 32 px CIFAR
HOLDOUT_FRACTION = 0.2      # test share when a folder (or digits) has no split of its own
HOLDOUT_SEED = 0
UNLABELED = -1


class DataError(RuntimeError):
    """A dataset on disk is missing, corrupt or fails its integrity check; the message says what to do."""


class MissingDataError(DataError):
    """The data folder or one of its files does not exist."""


class CorruptDataError(DataError):
    """A file exists but cannot be read, or images and labels disagree."""


class IntegrityError(CorruptDataError):
    """A file does not match the official checksum (verify=True)."""


# ---------------------------------------------------------------------------------------------------------------
# Presets and transforms
# ---------------------------------------------------------------------------------------------------------------

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
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value):
                raise ValueError(f"{name} must be 3 finite numbers (one per RGB channel), got {value!r}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be > 0 in every channel, got {self.std!r}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must be (lo, hi) with 0 < lo <= hi <= 1, got {self.crop_scale!r}")
        if not self.jitter_strength >= 0:
            raise ValueError(f"jitter_strength must be >= 0, got {self.jitter_strength!r}")
        if self.eval_resize is not None and self.eval_resize < self.image_size:
            raise ValueError(f"eval_resize must be >= image_size ({self.image_size}), got {self.eval_resize!r}")
        for name in ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)!r}")


_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PRESETS = {
    "cifar10": DataPreset(32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), blur=False, jitter_strength=0.5),
    "stl10": DataPreset(96, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713), blur=True, jitter_strength=1.0),
    "imagenet": DataPreset(224, _IMAGENET_MEAN, _IMAGENET_STD, blur=True, jitter_strength=1.0, eval_resize=256),
    # Any ImageFolder: ImageNet statistics at ImageNet size; preset_for(..., image_size=32) for small images.
    "imagefolder": DataPreset(224, _IMAGENET_MEAN, _IMAGENET_STD, blur=True, jitter_strength=1.0, eval_resize=256),
    # Digits are gray strokes on black: their own statistics (32 px, bilinear upsampling), CIFAR-strength jitter.
    # digits are not mirror-symmetric and an 8x8 glyph survives only mild crops
    "digits": DataPreset(32, (0.3047,) * 3, (0.3235,) * 3, crop_scale=(0.4, 1.0), blur=False, jitter_strength=0.5,
                         flip_prob=0.0),
}


def preset_for(name: str, image_size: Optional[int] = None) -> DataPreset:
    """PRESETS[name], resized to image_size if given: blur follows the size (on from 96 px, as in the paper
    protocol); from 96 px the eval resize keeps the preset's resize/crop ratio (ImageNet's 256/224), below it
    images are resized whole."""
    _check_name(name)
    preset = PRESETS[name]
    if image_size is None or image_size == preset.image_size:
        return preset
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    eval_resize = None
    if preset.eval_resize is not None and image_size >= BLUR_MIN_SIZE:      # small images: resize, no crop
        eval_resize = max(image_size, round(image_size * preset.eval_resize / preset.image_size))
    return replace(preset, image_size=image_size, blur=image_size >= BLUR_MIN_SIZE, eval_resize=eval_resize)


def to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette, RGBA and 16-bit images become 8-bit RGB (models always see 3 channels)."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL.Image, got {type(image).__name__}")
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # PIL's convert clips 16-bit values to 255; rescale to the 8-bit range instead.
        array = np.asarray(image, dtype=np.float64)
        peak = float(array.max()) if array.size else 0.0
        if peak > 255:
            array = array * (255.0 / peak)
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    return image.convert("RGB")


def _check_preset(preset) -> DataPreset:
    if not isinstance(preset, DataPreset):
        raise TypeError(f"preset must be a DataPreset (see PRESETS / preset_for), got {type(preset).__name__}")
    return preset


def _blur_kernel(image_size: int) -> int:
    # SimCLR: kernel 10% of the image side, odd.
    return max(3, int(0.1 * image_size) // 2 * 2 + 1)


def augmentation(preset: DataPreset) -> T.Compose:
    """One SimCLR view: random resized crop, flip, colour jitter, grayscale (and blur when preset.blur)."""
    preset = _check_preset(preset)
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
        self.preset = _check_preset(preset)
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
    preset = _check_preset(preset)
    return T.Compose([
        T.Lambda(to_rgb),
        T.Resize(preset.eval_resize or preset.image_size),
        T.CenterCrop(preset.image_size),
        T.ToTensor(),
        T.Normalize(preset.mean, preset.std),
    ])


# ---------------------------------------------------------------------------------------------------------------
# Dataset wrappers
# ---------------------------------------------------------------------------------------------------------------

def _classes_of(dataset) -> list:
    while not hasattr(dataset, "classes") and hasattr(dataset, "base"):
        dataset = dataset.base
    classes = getattr(dataset, "classes", None)
    if classes is None:
        raise TypeError(f"dataset must come from build_dataset (it needs a .classes list), got {type(dataset).__name__}")
    return list(classes)


def num_classes(dataset) -> int:
    """Number of labelled classes of a dataset from build_dataset, or any wrapper of one (TwoViews, ...)."""
    return len(_classes_of(dataset))


class TransformedDataset(Dataset):
    """(PIL image, label) -> (transform(image), label); used for linear evaluation."""

    _transform_example = ""     # what a good transform is, for the error message

    def __init__(self, base: Dataset, transform: Callable):
        if not callable(transform):
            raise TypeError(f"transform must be callable{self._transform_example}, got {type(transform).__name__}")
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
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
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
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
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
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    return name


def _check_split(name: str, split) -> str:
    if split not in SPLITS[name]:
        raise ValueError(f"split for {name} must be one of {SPLITS[name]}, got {split!r}")
    return split


def _check_root(name: str, root) -> Path:
    if root is None or (isinstance(root, str) and not root.strip()):
        raise ValueError(f"root (CLI: --data-root) is required for dataset {name!r}; {_HOW_TO_GET[name]}")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike), got {type(root).__name__}")
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
        raise TypeError(f"download and verify must be bools, got {download!r} and {verify!r}")
    if name == "digits":
        return _digits(split, 32 if image_size is None else image_size)
    root = _check_root(name, root)
    if download and name in ("imagenet", "imagefolder"):
        raise ValueError(f"{name} cannot be downloaded (download=True / --download); {_HOW_TO_GET[name]}")
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
    preset = _check_preset(preset)
    _check_name(name)
    base = build_dataset(name, root, split or PRETRAIN_SPLIT[name], download=download, verify=verify,
                         image_size=preset.image_size)
    return TwoViews(base, two_view_transform(preset), seed=seed)


def eval_datasets(name: str, root, preset: DataPreset, *, download: bool = False, verify: bool = True):
    """(train, test) for linear evaluation, each giving (eval_transform(image), label); same classes in both."""
    preset = _check_preset(preset)
    _check_name(name)
    transform = eval_transform(preset)
    train_split, test_split = EVAL_SPLITS[name]
    train = build_dataset(name, root, train_split, download=download, verify=verify, image_size=preset.image_size)
    test = build_dataset(name, root, test_split, download=download, verify=verify, image_size=preset.image_size)
    if _classes_of(train) != _classes_of(test):
        raise CorruptDataError(f"{name}: the {train_split} and {test_split} splits have different classes "
                               f"({len(_classes_of(train))} vs {len(_classes_of(test))}); both must hold the same "
                               f"class folders so labels mean the same thing")
    return TransformedDataset(train, transform), TransformedDataset(test, transform)


# --- CIFAR-10 ---------------------------------------------------------------------------------------------------

def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
        raise CorruptDataError(f"{path} is not a readable CIFAR pickle ({type(exc).__name__}: {exc}); "
                               f"re-download it with --download") from exc
    if not isinstance(entry, dict):
        raise CorruptDataError(f"{path} should unpickle to a dict, got {type(entry).__name__}")
    return entry


def _check_cifar_batch(path: Path) -> None:
    """A batch file unpickles to {'data': uint8 [n, 3072], 'labels': n ints in 0..9}."""
    entry = _read_pickle(path)
    data, labels = entry.get("data"), entry.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        what = f"{type(data).__name__} {getattr(data, 'shape', '')} {getattr(data, 'dtype', '')}".strip()
        raise CorruptDataError(f"{path}: 'data' must be a uint8 array of shape [n, 3072], got {what}")
    if labels is None or len(labels) != data.shape[0]:
        raise CorruptDataError(f"{path}: 'labels' must list one label per image ({data.shape[0]}), "
                               f"got {None if labels is None else len(labels)}")
    if len(labels) and not all(0 <= int(v) < 10 for v in labels):
        raise CorruptDataError(f"{path}: labels must be in 0..9")


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
        entry = _read_pickle(path)
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
            _check_cifar_batch(folder / name)
        raise CorruptDataError(f"could not load CIFAR-10 from {folder}: {type(exc).__name__}: {exc}") from exc
    bad_labels = len(dataset.targets) and not 0 <= min(dataset.targets) <= max(dataset.targets) < len(dataset.classes)
    if len(dataset.data) != len(dataset.targets) or bad_labels:
        for name in batches:
            _check_cifar_batch(folder / name)
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
        return tv_datasets.ImageFolder(str(folder), loader=load_rgb)
    except FileNotFoundError as exc:
        # torchvision: no class folders, or a class folder without images.
        raise CorruptDataError(f"{name} folder {folder} has no usable images ({exc}); "
                               f"{_HOW_TO_GET[name].replace('ROOT', str(root))}") from exc


def _imagefolder_split(root: Path, split: str) -> Dataset:
    if not root.is_dir():
        raise MissingDataError(f"imagefolder root not found: {root}; "
                               f"{_HOW_TO_GET['imagefolder'].replace('ROOT', str(root))}")
    present = [s for s in ("train", "val", "test") if (root / s).is_dir()]
    if split == "all" or not present:
        # No split folders: the classes sit in root; train/test are a fixed stratified holdout of it.
        dataset = _image_folder(root, "imagefolder", root)
        return dataset if split == "all" else _Subset(dataset, holdout_indices(dataset.targets, _holdout_side(split)))
    if split not in present:
        alias = {"val": "test", "test": "val"}.get(split)
        if alias not in present:
            raise MissingDataError(f"imagefolder split {split!r} not found: {root / split} does not exist "
                                   f"(found {present}); {_HOW_TO_GET['imagefolder'].replace('ROOT', str(root))}")
        split = alias
    return _image_folder(root / split, "imagefolder", root)


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
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
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

_VERIFIED = set()       # file stamps whose md5s passed in this process: STL-10's 2.7 GB is hashed once, not per split


def _check_files(dataset, md5_check: Callable[[], bool]) -> bool:
    """verify: torchvision's md5 check (once per unchanged set of files); otherwise: every file is present."""
    paths = [os.path.join(dataset.root, dataset.base_folder, f) for f, _ in dataset.train_list + dataset.test_list]
    if not all(os.path.isfile(p) for p in paths):
        return False
    if not dataset._verify:
        return True
    stamp = tuple((p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
    if stamp not in _VERIFIED:
        if not md5_check():
            return False
        _VERIFIED.add(stamp)
    return True


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
