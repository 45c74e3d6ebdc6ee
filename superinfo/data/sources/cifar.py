"""CIFAR-10 and CIFAR-100: the official 'python version' pickles, read by torchvision's classes after our checks.

    cifar10    ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}    splits: train, test
    cifar100   ROOT/cifar-100-python/{train, test, meta}                               splits: train, test

verify=True checks each file against torchvision's md5 list; verify=False unpickles every file through an
unpickler that runs no code and checks images and labels agree (torchvision's own unpickling is unrestricted).
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision import datasets as tv_datasets

from ..integrity import (CorruptDataError, DataError, check_cifar_batch, check_cifar_images, read_cifar_pickle)
from ..preset import DataPreset
from .base import Source, corrupt, md5_check_files, raise_md5_mismatch, require_files, verify_md5

__all__ = ["CIFAR10", "CIFAR100"]


# --- CIFAR-10 ---------------------------------------------------------------------------------------------------

class _CIFAR10(tv_datasets.CIFAR10):
    """torchvision's CIFAR10; verify=False replaces the md5 checks by presence checks (loading then validates)."""

    def __init__(self, root, train: bool, download: bool, verify: bool):
        self._verify = verify
        super().__init__(str(root), train=train, download=download)

    def _check_integrity(self) -> bool:
        return md5_check_files(self, super()._check_integrity)

    def _load_meta(self) -> None:
        if self._verify:
            return super()._load_meta()
        path = Path(self.root, self.base_folder, self.meta["filename"])
        entry = read_cifar_pickle(path)
        if self.meta["key"] not in entry:
            raise CorruptDataError(f"{path} has no {self.meta['key']!r} list of class names")
        self.classes = list(entry[self.meta["key"]])
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class Cifar10Source(Source):
    name = "cifar10"
    splits = ("train", "test")
    pretrain_split = "train"
    eval_splits = ("train", "test")
    transfer_splits = (("train",), "test")
    layout = "ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}"
    folder = tv_datasets.CIFAR10.base_folder
    batches = [f for f, _ in tv_datasets.CIFAR10.train_list + tv_datasets.CIFAR10.test_list]
    meta = tv_datasets.CIFAR10.meta["filename"]
    preset = DataPreset(32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), blur=False, jitter_strength=0.5)

    @property
    def how_to_get(self) -> str:
        return ("pass --download (download=True) to fetch it, or put the official 'CIFAR-10 python version' there: "
                "ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}")

    @property
    def md5(self) -> dict:      # read when used: tests stand their own sums in for torchvision's
        tv = tv_datasets.CIFAR10
        return {f"{self.folder}/{f}": md5 for f, md5 in tv.train_list + tv.test_list + [[self.meta, tv.meta["md5"]]]}

    def required_files(self, root: Path) -> list:
        return [root / self.folder / f for f in self.batches + [self.meta]]

    def download(self, root: Path) -> None:
        tv_datasets.CIFAR10(str(root), download=True)

    def integrity_note(self, root: Path, verify: bool) -> str:
        return "md5 of every file (superinfo.data)" if verify else super().integrity_note(root, verify)

    def load(self, root, split, *, download=False, verify=True, image_size=None) -> Dataset:
        folder = root / self.folder
        batches, meta = self.batches, self.meta
        if not download:
            require_files(folder, batches + [meta], self, root)
        if not verify and not download:       # torchvision unpickles with no restriction: only files that load safely
            for name in batches:
                check_cifar_batch(folder / name)
        try:
            dataset = _CIFAR10(root, train=(split == "train"), download=download, verify=verify)
        except DataError:
            raise
        except RuntimeError as exc:
            # torchvision's "not found or corrupted": find the file and say which.
            require_files(folder, batches + [meta], self, root)
            if verify:
                md5s = dict(tv_datasets.CIFAR10.train_list + tv_datasets.CIFAR10.test_list)
                md5s[meta] = tv_datasets.CIFAR10.meta["md5"]
                raise_md5_mismatch(folder, md5s, "CIFAR-10")
            raise CorruptDataError(f"could not load CIFAR-10 from {folder}: {exc}") from exc
        except Exception as exc:
            # Unpickling or reshaping failed inside torchvision (verify=False, or a file changed after the check).
            for name in batches:
                check_cifar_batch(folder / name)
            raise CorruptDataError(f"could not load CIFAR-10 from {folder}: {type(exc).__name__}: {exc}") from exc
        targets = dataset.targets
        bad_labels = len(targets) and not 0 <= min(targets) <= max(targets) < len(dataset.classes)
        if len(dataset.data) != len(targets) or bad_labels:
            for name in batches:
                check_cifar_batch(folder / name)
            raise CorruptDataError(f"{folder}: {len(dataset.data)} images, {len(targets)} labels, "
                                   f"{len(dataset.classes)} class names in {meta}; they must agree")
        return dataset


# --- CIFAR-100 --------------------------------------------------------------------------------------------------

class _CIFAR100(tv_datasets.CIFAR100):
    """torchvision's CIFAR100 after our checks: its own md5 re-check is replaced by them (files hash once)."""

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        entry = read_cifar_pickle(Path(self.root, self.base_folder, self.meta["filename"]))
        self.classes = list(entry[self.meta["key"]])
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


def _check_cifar100_file(path: Path, meta: bool) -> None:
    entry = read_cifar_pickle(path)
    if meta:
        names = entry.get("fine_label_names")
        if not isinstance(names, list) or len(names) != 100:
            raise corrupt("cifar100", path, "'fine_label_names' must list the 100 class names")
        return
    images, labels = check_cifar_images(path, entry), entry.get("fine_labels")
    if labels is None:
        raise corrupt("cifar100", path, f"has no 'fine_labels' (keys: {sorted(entry)}); is it a CIFAR-10 batch?")
    if len(labels) != len(images) or (len(labels) and not 0 <= min(labels) <= max(labels) < 100):
        raise corrupt("cifar100", path, f"'fine_labels' must hold one label in 0..99 per image ({len(images)}), "
                                        f"got {len(labels)} labels")


class Cifar100Source(Source):
    name = "cifar100"
    splits = ("train", "test")
    pretrain_split = "train"
    eval_splits = ("train", "test")
    transfer_splits = (("train",), "test")
    folder = tv_datasets.CIFAR100.base_folder       # cifar-100-python
    layout = "ROOT/cifar-100-python/{train, test, meta} (the official 'CIFAR-100 python version')"
    preset = DataPreset(32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), blur=False, jitter_strength=0.5)

    @property
    def md5(self) -> dict:
        tv = tv_datasets.CIFAR100
        files = tv.train_list + tv.test_list + [[tv.meta["filename"], tv.meta["md5"]]]
        return {f"{self.folder}/{f}": md5 for f, md5 in files}

    def required_files(self, root: Path) -> list:
        return [root / self.folder / f for f in ("train", "test", "meta")]

    def download(self, root: Path) -> None:
        tv_datasets.CIFAR100(str(root), download=True)

    def load(self, root, split, *, download=False, verify=True, image_size=None) -> Dataset:
        if download and not all(p.is_file() for p in self.required_files(root)):
            root.mkdir(parents=True, exist_ok=True)
            self.download(root)
        require_files(root / self.folder, ["train", "test", "meta"], self, root)
        if verify:      # the split's file and the class names
            verify_md5(self.name, root, {k: v for k, v in self.md5.items() if Path(k).name in (split, "meta")})
        for name in (split, "meta"):
            _check_cifar100_file(root / self.folder / name, meta=name == "meta")
        return _CIFAR100(str(root), train=split == "train")


CIFAR10 = Cifar10Source()
CIFAR100 = Cifar100Source()
