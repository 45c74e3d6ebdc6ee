"""Folders of images, one folder per class (torchvision's ImageFolder): ImageNet and any ImageFolder tree.

    imagenet     ROOT/train/<wnid>/*.JPEG, ROOT/val/<wnid>/*.JPEG                 splits: train, val
    imagefolder  ROOT/<split>/<class>/<image> or ROOT/<class>/<image>            splits: train, val, test, all

Neither can be downloaded, and neither has checksums: every image's header is read when the set is built (up to
``HEADER_CHECK_LIMIT`` images), and an unreadable image raises CorruptDataError naming the file when it is loaded.
A tree without split folders is split by a fixed stratified holdout (``holdout_indices``).
"""
from __future__ import annotations

import warnings
from pathlib import Path

from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets

from ..images import check_image_headers, load_rgb
from ..integrity import CorruptDataError, MissingDataError
from ..preset import DataPreset
from .base import Source, Subset, holdout_indices

__all__ = ["IMAGEFOLDER", "IMAGENET", "image_folder"]

_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def image_folder(folder: Path, source: Source, root: Path) -> Dataset:
    """``folder``/<class>/<image> as an ImageFolder of RGB images, every header read."""
    if not folder.is_dir():
        raise MissingDataError(f"{source.name} folder not found: {folder}; {source.how(root)}")
    try:
        dataset = tv_datasets.ImageFolder(str(folder), loader=load_rgb)
    except FileNotFoundError as exc:
        # torchvision: no class folders, or a class folder without images.
        raise CorruptDataError(f"{source.name} folder {folder} has no usable images ({exc}); "
                               f"{source.how(root)}") from exc
    check_image_headers([path for path, _ in dataset.samples])
    return dataset


class ImageNetSource(Source):
    name = "imagenet"
    splits = ("train", "val")
    pretrain_split = "train"
    eval_splits = ("train", "val")
    downloadable = False
    layout = "ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG (val images sorted into class folders)"
    preset = DataPreset(224, _IMAGENET_MEAN, _IMAGENET_STD, blur=True, jitter_strength=1.0, eval_resize=256)

    @property
    def how_to_get(self) -> str:
        return f"ImageNet cannot be downloaded automatically; expected ImageFolder layout {self.layout}"

    def required_files(self, root: Path) -> list:
        return [root / "train", root / "val"]

    def load(self, root, split, *, download=False, verify=True, image_size=None) -> Dataset:
        return image_folder(root / split, self, root)


class ImageFolderSource(Source):
    name = "imagefolder"
    splits = ("train", "val", "test", "all")
    pretrain_split = "train"
    eval_splits = ("train", "test")
    downloadable = False
    layout = "ROOT/<class>/<image> or ROOT/<split>/<class>/<image> (split: train, val or test)"
    # Any ImageFolder: ImageNet statistics at ImageNet size; preset_for(..., image_size=32) for small images.
    preset = DataPreset(224, _IMAGENET_MEAN, _IMAGENET_STD, blur=True, jitter_strength=1.0, eval_resize=256)

    @property
    def how_to_get(self) -> str:
        return f"expected {self.layout}; any image size and number of classes, grayscale is converted to RGB"

    def required_files(self, root: Path) -> list:
        return [root]

    def load(self, root, split, *, download=False, verify=True, image_size=None) -> Dataset:
        if not root.is_dir():
            raise MissingDataError(f"imagefolder root not found: {root}; {self.how(root)}")
        present = [s for s in ("train", "val", "test") if (root / s).is_dir()]
        if split == "all" or not present:
            # No split folders: the classes sit in root; train/test are a fixed stratified holdout of it.
            dataset = image_folder(root, self, root)
            side = "train" if split == "train" else "test"
            return dataset if split == "all" else Subset(dataset, holdout_indices(dataset.targets, side))
        if split not in present:      # never another split in its place: val and test are not interchangeable
            raise MissingDataError(f"imagefolder split {split!r} not found: {root / split} does not exist "
                                   f"(found {present}); {self.how(root)}")
        return image_folder(root / split, self, root)

    def eval_splits_for(self, root) -> tuple:
        """A tree with split folders is evaluated on test/, or on val/ when it has no test/ (a warning says so)."""
        train_split, test_split = self.eval_splits
        if root is not None:
            root = Path(root).expanduser()
            if not (root / "test").is_dir() and (root / "val").is_dir():
                warnings.warn(f"{root} has no test/ folder: evaluating on its val/ folder", stacklevel=4)
                test_split = "val"
        return train_split, test_split


IMAGENET = ImageNetSource()
IMAGEFOLDER = ImageFolderSource()
