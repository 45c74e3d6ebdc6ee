"""What every data source declares (``Source``), and the checks they share: files present, official md5s, errors
that name the data set, the file and how to get it, and the fixed stratified holdout of sets without a test split.

A source is one on-disk format (or a generated set) under one or more names.  It declares::

    name, splits          its name and the splits ``load`` accepts
    pretrain_split        the split pre-training reads (None: not a pre-training data set)
    eval_splits           (train, test) for the linear evaluation of a run pre-trained on it
    transfer_splits       ((train splits...), test split) in the transfer suite (None: not in it)
    needs_root            False for data that needs no folder (digits ship with scikit-learn; synthetic images)
    downloadable          whether ``download=True`` can fetch it (through torchvision)
    layout, how_to_get    its files under ROOT, and the sentence error messages end with
    md5                   the official md5 of each file, relative to ROOT, that verify=True checks
    preset                its DataPreset (image size, normalisation, augmentation) when it is a pre-training set
    required_files(root)  the files and folders it needs under root
    load(root, split, download=, verify=, image_size=)   a Dataset of (PIL image, int label), checked
    download(root)        torchvision's download into root
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset
from torchvision.datasets.utils import check_integrity

from mi_toolkit.errors import ArgumentError, ArgumentTypeError

from ..integrity import CorruptDataError, IntegrityError, MissingDataError, md5_matches, verified_once
from ..preset import DataPreset

__all__ = ["ArchiveSource", "HOLDOUT_FRACTION", "HOLDOUT_SEED", "NO_VERIFY_HINT", "Source", "Subset", "classes_of", "corrupt",
           "fetch_if_missing", "holdout_indices", "stratified_indices", "md5_check_files", "raise_md5_mismatch", "require_files",
           "require_paths", "verify_md5"]

HOLDOUT_FRACTION = 0.2      # test share when a folder (or digits) has no split of its own
HOLDOUT_SEED = 0
NO_VERIFY_HINT = ("if you made or converted these files yourself, skip the checksum check with verify=False "
                  "(CLI: --no-verify); otherwise re-download them with --download")


class Source:
    """One data set's format: see the module docstring for what a subclass declares."""

    name: str = ""
    splits: tuple = ()
    pretrain_split: Optional[str] = None
    eval_splits: Optional[tuple] = None
    transfer_splits: Optional[tuple] = None
    needs_root: bool = True
    downloadable: bool = True
    layout: str = ""
    md5: dict = {}
    preset: Optional[DataPreset] = None

    @property
    def how_to_get(self) -> str:
        """The end of every 'not found' message (ROOT stands for the data root)."""
        fetch = "pass --download (download=True) to fetch it" if self.downloadable else "it cannot be downloaded"
        return f"expected layout: {self.layout}; {fetch}"

    def how(self, root) -> str:
        return self.how_to_get.replace("ROOT", str(root))

    def required_files(self, root: Path) -> list:
        """The files and folders the data set needs under ``root`` (without the archives ``verify`` adds)."""
        return []

    def download(self, root: Path) -> None:
        raise ArgumentError(f"{self.name} cannot be downloaded (download=True / --download); {self.how_to_get}")

    def load(self, root: Optional[Path], split: str, *, download: bool = False, verify: bool = True,
             image_size: Optional[int] = None) -> Dataset:
        """A dataset of (PIL image, int label) for ``split``, after the format's checks."""
        raise NotImplementedError

    def eval_splits_for(self, root) -> tuple:
        """(train split, test split) for linear evaluation; a source may pick them from what ``root`` holds."""
        return self.eval_splits

    def integrity_note(self, root: Path, verify: bool) -> str:
        """What the integrity check covered, for RUN_DIR/transfer.json."""
        if not verify:
            return "not verified (verify=False / --no-verify): structure checks only"
        return f"official md5 of {', '.join(Path(p).name for p in self.md5)}"

    def run_bases(self, cfg, image_size: int):
        """``(pretrain, eval train, eval test)`` datasets of (PIL image, label) for a run's settings ``cfg``, or None
        for the standard splits (``superinfo.data.load_datasets``); the synthetic images size themselves from cfg."""
        return None

    def __repr__(self):
        return f"<data source {self.name!r}: splits {self.splits}>"


# ---------------------------------------------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------------------------------------------

def corrupt(name: str, path, problem: str) -> CorruptDataError:
    return CorruptDataError(f"{name}: {path}: {problem}")


class ArchiveSource(Source):
    """A data set torchvision extracts from archives whose md5s it publishes (DTD, Flowers-102, GTSRB): the md5s
    cover the archives, and the extracted images only through them."""

    def integrity_note(self, root: Path, verify: bool) -> str:
        note = super().integrity_note(root, verify)
        return note + "; extracted images are covered only through the archives" if verify else note

    def checked_root(self, root: Path, download: bool, verify: bool) -> Path:
        """``root`` once its files are there (fetched with ``download``) and, with ``verify``, its archives' md5s
        match."""
        fetch_if_missing(self, root, download)
        require_paths(self, root)
        if verify:
            verify_md5(self.name, root, self.md5)
        return root



def require_files(folder: Path, names, source: Source, root: Path) -> None:
    """``folder`` exists and holds every one of ``names``; MissingDataError naming what is missing otherwise."""
    how = source.how(root)
    if not folder.is_dir():
        raise MissingDataError(f"{source.name} data not found: {folder} does not exist; {how}")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise MissingDataError(f"{source.name} data incomplete: {folder} lacks {', '.join(missing)}; {how}")


def require_paths(source: Source, root: Path) -> None:
    """Every one of ``source.required_files(root)`` exists; MissingDataError naming the data set otherwise."""
    if not root.is_dir():
        raise MissingDataError(f"{source.name}: data root {root} does not exist; {source.how(root)}")
    missing = [str(p) for p in source.required_files(root) if not p.exists()]
    if missing:
        raise MissingDataError(f"{source.name} data not found: missing {', '.join(missing)}; {source.how(root)}")


def fetch_if_missing(source: Source, root: Path, download: bool) -> None:
    """``download=True`` and a required file missing: torchvision's download into root."""
    if download and not all(p.exists() for p in source.required_files(root)):
        root.mkdir(parents=True, exist_ok=True)
        source.download(root)


def md5_check_files(dataset, md5_check: Callable[[], bool]) -> bool:
    """For torchvision classes with ``train_list``/``test_list``: verify (``dataset._verify``) runs torchvision's md5
    check once per unchanged set of files; otherwise every file need only be present."""
    paths = [os.path.join(dataset.root, dataset.base_folder, f) for f, _ in dataset.train_list + dataset.test_list]
    if not all(os.path.isfile(p) for p in paths):
        return False
    return verified_once(paths, md5_check) if dataset._verify else True


def raise_md5_mismatch(folder: Path, md5s: dict, label: str) -> None:
    """After torchvision's integrity check failed: name the first file whose md5 differs."""
    for name, md5 in md5s.items():
        if not check_integrity(str(folder / name), md5):
            raise IntegrityError(f"{folder / name} does not match the official {label} md5 ({md5}): the file is "
                                 f"corrupt or not the official release; {NO_VERIFY_HINT}")
    raise IntegrityError(f"{label} files in {folder} failed torchvision's integrity check; {NO_VERIFY_HINT}")


def verify_md5(name: str, root: Path, md5s: dict) -> None:
    """Every official md5 in ``md5s`` (path relative to root -> md5); a missing file is an error, not a skip."""
    for rel, md5 in md5s.items():
        path = root / rel
        if not path.is_file():
            raise IntegrityError(f"{name}: cannot verify the data, {path} is missing (torchvision publishes md5s "
                                 f"only for the files it downloads, and keeps them next to the data); "
                                 f"{NO_VERIFY_HINT}")
        if not md5_matches(path, md5):
            raise IntegrityError(f"{name}: {path} does not match the official md5 ({md5}): the file is corrupt or "
                                 f"not the official release; {NO_VERIFY_HINT}")


# ---------------------------------------------------------------------------------------------------------------
# Classes and the fixed holdout
# ---------------------------------------------------------------------------------------------------------------

def classes_of(dataset) -> list:
    """The ``classes`` list of a dataset from ``build_dataset`` or of any wrapper of one (``.base``)."""
    while not hasattr(dataset, "classes") and hasattr(dataset, "base"):
        dataset = dataset.base
    classes = getattr(dataset, "classes", None)
    if classes is None:
        raise ArgumentTypeError(f"dataset must come from build_dataset (it needs a .classes list), "
                                f"got {type(dataset).__name__}")
    return list(classes)


class Subset(Dataset):
    """A fixed subset that keeps .classes and .targets (torch's Subset keeps neither)."""

    def __init__(self, base: Dataset, indices: Sequence[int], labels: Sequence[int] | None = None):
        """``labels``: the base's labels when it does not call them ``targets`` (torchvision's STL10: ``labels``)."""
        self.base, self.indices = base, [int(i) for i in indices]
        self.classes = classes_of(base)
        labels = base.targets if labels is None else labels
        self.targets = [int(labels[i]) for i in self.indices]

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


def stratified_indices(labels: Sequence[int], n: int, seed: int = HOLDOUT_SEED) -> list:
    """``n`` rows of ``labels`` chosen at random (fixed by ``seed``) in each class's proportion (largest remainders;
    unlabelled rows, label < 0, count as one class): a subset with the full set's class balance, the same every run."""
    labels = np.asarray(labels)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(labels):
        raise ArgumentError(f"a subset of {n!r} images: expected an integer in [1, {len(labels)}] (the images there are)")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / len(labels)
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:
        take[i] += 1
    chosen = []
    for c, k in zip(classes, take):
        members = np.flatnonzero(labels == c)
        chosen.extend(members[rng.permutation(len(members))[:k]])
    return sorted(int(i) for i in chosen)

