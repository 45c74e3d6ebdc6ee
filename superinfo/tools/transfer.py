"""Transfer linear evaluation: a run's frozen backbone on the classification datasets of the InfoCL protocol.

    from superinfo.tools.transfer import run_transfer
    result = run_transfer("RUN_DIR", ["dtd", "mnist", "cifar100"], "data/")     # writes RUN_DIR/transfer.json
    result["datasets"]["mnist"]["top1"]

Each dataset is read by its torchvision class from ``data_root`` (``download=True`` fetches it when its files are
missing), resized to the run's image size with the run's normalisation (``superinfo.data.eval_transform``:
grayscale becomes 3 channels), encoded once by the frozen backbone, and classified by
``superinfo.trainer.evaluate.evaluate_model``'s linear protocol (logistic regression on standardised features).

    name          train         test    on disk under data_root (torchvision's layout)
    dtd           train1+val1   test1   dtd/dtd/images/<class>/*.jpg, dtd/dtd/labels/{train,val,test}1.txt
    mnist         train         test    MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
    fashionmnist  train         test    FashionMNIST/raw/ (as MNIST)
    flowers102    train+val     test    flowers-102/jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat
    gtsrb         train         test    gtsrb/GTSRB/Training/<000NN>/*.ppm, gtsrb/GTSRB/Final_Test/Images/*.ppm,
                                        gtsrb/GT-final_test.csv
    cifar10       train         test    cifar-10-batches-py/ (superinfo.data)
    cifar100      train         test    cifar-100-python/{train,test,meta}

Integrity (as in ``superinfo.data``): ``verify=True`` (default) checks every file torchvision publishes an md5 for
against it: CIFAR-10/100's pickles, Flowers102's ``.mat`` files, and the archives torchvision downloads and keeps
next to the data (MNIST's ``raw/*.gz``, whose decompressed bytes must also equal the raw files; DTD's
``dtd-r1.0.1.tar.gz``; GTSRB's three zips; Flowers102's ``102flowers.tgz``).  torchvision has no per-image sums, so
extracted JPEG/PPM images are covered only through their archive.  A missing archive is an error, not a skipped
check: ``verify=False`` (CLI ``--no-verify``) is the explicit opt-out.  Both modes check structure: every file is
present, headers/pickles/.mat files parse, labels are in range, images and labels agree; failures raise
``superinfo.data``'s MissingDataError / CorruptDataError / IntegrityError naming the dataset and the file.

RUN_DIR/transfer.json: ``{"run_dir", "checkpoint_epoch", "arch", "image_size", "normalisation", "protocol":
"linear", "datasets": {name: {"top1", "train_top1", "n_train", "n_test", "num_classes", "feature_dim", "splits",
"integrity", "settings", "seconds"}}}``; a later call keeps the other datasets' entries.
"""
from __future__ import annotations

import csv
import gzip
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import nn
from torch.utils.data import ConcatDataset
from torchvision import datasets as tv_datasets

from mi_toolkit.errors import ArgumentError, ArgumentTypeError
from .. import data
from mi_toolkit.atomic import write_json_atomically
from ..data import CorruptDataError, IntegrityError, MissingDataError
from ..data.integrity import check_cifar_images, md5_matches, read_cifar_pickle
from ..trainer.config import resolve_device
from ..trainer.evaluate import LINEAR_LR, evaluate_model, load_run

__all__ = ["TRANSFER_DATASETS", "TRANSFER_FILE", "load_transfer_splits", "required_files", "run_transfer"]

TRANSFER_DATASETS = ("dtd", "mnist", "fashionmnist", "flowers102", "gtsrb", "cifar10", "cifar100")
TRANSFER_FILE = "transfer.json"
DTD_PARTITION = 1           # torchvision's default; the InfoCL / Kornblith et al. protocol reports partition 1
SPLITS = {"dtd": (("train", "val"), "test"), "flowers102": (("train", "val"), "test")}
DEFAULT_SPLITS = (("train",), "test")

LAYOUTS = {
    "dtd": "ROOT/dtd/dtd/images/<class>/<image>.jpg and ROOT/dtd/dtd/labels/{train,val,test}1.txt (lines "
           "'<class>/<image>.jpg'); verify also needs ROOT/dtd/dtd-r1.0.1.tar.gz",
    "mnist": "ROOT/MNIST/raw/{train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
             "t10k-labels-idx1-ubyte}; verify also needs the four .gz archives next to them",
    "fashionmnist": "ROOT/FashionMNIST/raw/{train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                    "t10k-labels-idx1-ubyte}; verify also needs the four .gz archives next to them",
    "flowers102": "ROOT/flowers-102/jpg/image_00001.jpg..., ROOT/flowers-102/imagelabels.mat, "
                  "ROOT/flowers-102/setid.mat; verify also needs ROOT/flowers-102/102flowers.tgz",
    "gtsrb": "ROOT/gtsrb/GTSRB/Training/<00000..00042>/*.ppm, ROOT/gtsrb/GTSRB/Final_Test/Images/*.ppm and "
             "ROOT/gtsrb/GT-final_test.csv; verify also needs ROOT/gtsrb/{GTSRB-Training_fixed.zip, "
             "GTSRB_Final_Test_Images.zip, GTSRB_Final_Test_GT.zip}",
    "cifar10": "ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}",
    "cifar100": "ROOT/cifar-100-python/{train, test, meta} (the official 'CIFAR-100 python version')",
}
# md5s of the archives torchvision downloads (torchvision 0.29 sources; GTSRB's are inside GTSRB.download)
ARCHIVE_MD5 = {
    "dtd": {"dtd/dtd-r1.0.1.tar.gz": tv_datasets.DTD._MD5},
    "gtsrb": {"gtsrb/GTSRB-Training_fixed.zip": "513f3c79a4c5141765e10e952eaa2478",
              "gtsrb/GTSRB_Final_Test_Images.zip": "c7e4e6327067d32654124b0fe9e82185",
              "gtsrb/GTSRB_Final_Test_GT.zip": "fe31e9c9270bbcd7b84b7f21a9d9d9e5"},
    "flowers102": {f"flowers-102/{f}": md5 for f, md5 in tv_datasets.Flowers102._file_dict.values()},
    "mnist": {f"MNIST/raw/{f}": md5 for f, md5 in tv_datasets.MNIST.resources},
    "fashionmnist": {f"FashionMNIST/raw/{f}": md5 for f, md5 in tv_datasets.FashionMNIST.resources},
    "cifar100": {f"cifar-100-python/{f}": md5 for f, md5 in
                 tv_datasets.CIFAR100.train_list + tv_datasets.CIFAR100.test_list
                 + [[tv_datasets.CIFAR100.meta["filename"], tv_datasets.CIFAR100.meta["md5"]]]},
}
_NO_VERIFY = ("if these are files you made or converted yourself, skip the checksum check with verify=False "
              "(CLI: --no-verify); otherwise re-download with --download")


# ---------------------------------------------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------------------------------------------

def _check_names(datasets) -> list:
    if isinstance(datasets, str):
        datasets = [d.strip() for d in datasets.split(",") if d.strip()]
    names = list(datasets)
    unknown = [n for n in names if n not in TRANSFER_DATASETS]
    if unknown or not names:
        raise ArgumentError(f"datasets must be a non-empty list of {', '.join(TRANSFER_DATASETS)}; got "
                         f"{unknown or names!r}")
    return list(dict.fromkeys(names))


def _layout(name: str, root: Path) -> str:
    return f"expected layout: {LAYOUTS[name].replace('ROOT', str(root))}; pass --download (download=True) to fetch it"


def required_files(name: str, root) -> list:
    """The files and folders ``name`` must have under ``root`` (without the archives ``verify`` adds)."""
    root = Path(root)
    if name in ("mnist", "fashionmnist"):
        raw = root / ("MNIST" if name == "mnist" else "FashionMNIST") / "raw"
        return [raw / f"{s}-{k}" for s in ("train", "t10k") for k in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    if name == "cifar100":
        return [root / "cifar-100-python" / f for f in ("train", "test", "meta")]
    if name == "cifar10":
        folder = root / tv_datasets.CIFAR10.base_folder
        return [folder / f for f, _ in tv_datasets.CIFAR10.train_list + tv_datasets.CIFAR10.test_list] + \
            [folder / tv_datasets.CIFAR10.meta["filename"]]
    if name == "dtd":
        labels = root / "dtd" / "dtd" / "labels"
        listings = [labels / f"{s}{DTD_PARTITION}.txt" for s in ("train", "val", "test")]
        return [root / "dtd" / "dtd" / "images"] + listings
    if name == "flowers102":
        base = root / "flowers-102"
        return [base / "jpg", base / "imagelabels.mat", base / "setid.mat"]
    if name == "gtsrb":
        base = root / "gtsrb"
        return [base / "GTSRB" / "Training", base / "GTSRB" / "Final_Test" / "Images", base / "GT-final_test.csv"]
    raise ArgumentError(f"unknown transfer dataset {name!r}; valid: {', '.join(TRANSFER_DATASETS)}")


def _require(name: str, root: Path) -> None:
    if not root.is_dir():
        raise MissingDataError(f"{name}: data root {root} does not exist; {_layout(name, root)}")
    missing = [str(p) for p in required_files(name, root) if not p.exists()]
    if missing:
        raise MissingDataError(f"{name} data not found: missing {', '.join(missing)}; {_layout(name, root)}")


def _verify_md5(name: str, root: Path) -> None:
    """Every official md5 torchvision knows for ``name``'s files; a missing archive is an error, not a skip."""
    for rel, md5 in ARCHIVE_MD5[name].items():
        path = root / rel
        if not path.is_file():
            raise IntegrityError(f"{name}: cannot verify the data, {path} is missing (torchvision publishes md5s "
                                 f"only for the files it downloads, and keeps them next to the data); {_NO_VERIFY}")
        if not md5_matches(path, md5):
            raise IntegrityError(f"{name}: {path} does not match the official md5 ({md5}): the file is corrupt or "
                                 f"not the official release; {_NO_VERIFY}")


def _integrity_note(name: str, verify: bool) -> str:
    if not verify:
        return "not verified (verify=False / --no-verify): structure checks only"
    if name == "cifar10":
        return "md5 of every file (superinfo.data)"
    files = ", ".join(Path(p).name for p in ARCHIVE_MD5[name])
    note = {"mnist": "; the raw files equal the decompressed archives",
            "fashionmnist": "; the raw files equal the decompressed archives",
            "dtd": "; extracted images are covered only through the archive",
            "gtsrb": "; extracted images are covered only through the archives",
            "flowers102": "; extracted images are covered only through the archive"}.get(name, "")
    return f"official md5 of {files}{note}"


def _corrupt(name: str, path, problem: str) -> CorruptDataError:
    return CorruptDataError(f"{name}: {path}: {problem}")


# ---------------------------------------------------------------------------------------------------------------
# Per-dataset loaders: (train, test) of (PIL image, int label)
# ---------------------------------------------------------------------------------------------------------------

def _idx_header(name: str, path: Path, magic: int, dims: int) -> tuple:
    raw = path.read_bytes()[: 4 * (dims + 1)]
    if len(raw) < 4 * (dims + 1):
        raise _corrupt(name, path, "too short for an idx header")
    values = np.frombuffer(raw, dtype=">u4")
    if int(values[0]) != magic:
        raise _corrupt(name, path, f"idx magic number is {int(values[0])}, expected {magic} (not an uncompressed "
                                   f"MNIST-format {'image' if dims == 3 else 'label'} file)")
    shape = tuple(int(v) for v in values[1:])
    expected = 4 * (dims + 1) + int(np.prod(shape))
    if path.stat().st_size != expected:
        raise _corrupt(name, path, f"{path.stat().st_size} bytes, but its header {shape} needs {expected}")
    return shape


def _mnist(name: str, root: Path, verify: bool):
    cls = tv_datasets.MNIST if name == "mnist" else tv_datasets.FashionMNIST
    raw = root / cls.__name__ / "raw"
    if verify:
        _verify_md5(name, root)
        for archive, _ in cls.resources:
            plain = raw / archive[: -len(".gz")]
            with gzip.open(raw / archive, "rb") as f:
                if f.read() != plain.read_bytes():
                    raise IntegrityError(f"{name}: {plain} differs from the decompressed official archive "
                                         f"{raw / archive}; {_NO_VERIFY}")
    for prefix in ("train", "t10k"):
        images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
        n_images = _idx_header(name, images, 2051, 3)[0]
        (n_labels,) = _idx_header(name, labels, 2049, 1)
        if n_images != n_labels:
            raise _corrupt(name, labels, f"{n_labels} labels for {n_images} images in {images.name}")
        y = np.fromfile(labels, dtype=np.uint8, offset=8)
        if len(y) and y.max() >= len(cls.classes):
            raise _corrupt(name, labels, f"labels must be 0..{len(cls.classes) - 1}, found {int(y.max())}")
    return cls(str(root), train=True), cls(str(root), train=False)


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
            raise _corrupt("cifar100", path, "'fine_label_names' must list the 100 class names")
        return
    images, labels = check_cifar_images(path, entry), entry.get("fine_labels")
    if labels is None:
        raise _corrupt("cifar100", path, f"has no 'fine_labels' (keys: {sorted(entry)}); is it a CIFAR-10 batch?")
    if len(labels) != len(images) or (len(labels) and not 0 <= min(labels) <= max(labels) < 100):
        raise _corrupt("cifar100", path, f"'fine_labels' must hold one label in 0..99 per image ({len(images)}), "
                                         f"got {len(labels)} labels")


def _cifar100(root: Path, verify: bool):
    if verify:
        _verify_md5("cifar100", root)
    folder = root / "cifar-100-python"
    for name in ("train", "test", "meta"):
        _check_cifar100_file(folder / name, meta=name == "meta")
    return _CIFAR100(str(root), train=True), _CIFAR100(str(root), train=False)


def _cifar10(root: Path, verify: bool):
    return (data.build_dataset("cifar10", root, "train", verify=verify),
            data.build_dataset("cifar10", root, "test", verify=verify))


def _dtd(root: Path, verify: bool):
    if verify:
        _verify_md5("dtd", root)
    folder = root / "dtd" / "dtd"
    classes = {}
    for split in ("train", "val", "test"):
        listing = folder / "labels" / f"{split}{DTD_PARTITION}.txt"
        names = set()
        for number, line in enumerate(listing.read_text().splitlines(), 1):
            parts = line.strip().split("/")
            if len(parts) != 2 or not all(parts):
                raise _corrupt("dtd", listing, f"line {number} is {line!r}, expected '<class>/<image>.jpg'")
            if not (folder / "images" / parts[0] / parts[1]).is_file():
                raise _corrupt("dtd", listing, f"line {number} lists {folder / 'images' / line.strip()}, which "
                                               f"does not exist")
            names.add(parts[0])
        if not names:
            raise _corrupt("dtd", listing, "lists no images")
        classes[split] = sorted(names)
    if not classes["train"] == classes["val"] == classes["test"]:
        # torchvision numbers the classes of each split file on its own: they must hold the same classes
        raise _corrupt("dtd", folder / "labels", f"train/val/test{DTD_PARTITION}.txt must list the same classes "
                                                 f"(got {len(classes['train'])}, {len(classes['val'])}, "
                                                 f"{len(classes['test'])})")
    make = lambda split: tv_datasets.DTD(str(root), split=split, partition=DTD_PARTITION,  # noqa: E731
                                         loader=data.load_rgb)
    return ConcatDataset([make("train"), make("val")]), make("test")


class _Flowers102(tv_datasets.Flowers102):
    """torchvision's Flowers102 after our checks: its own md5 re-check of the .mat files is replaced by them."""

    def _check_integrity(self) -> bool:
        return self._images_folder.is_dir()


def _loadmat(path: Path, keys) -> dict:
    from scipy.io import loadmat

    try:
        content = loadmat(path, squeeze_me=True)
    except Exception as exc:        # scipy raises several types for a file that is not a .mat
        raise _corrupt("flowers102", path, f"not a readable MATLAB file ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in keys if k not in content]
    if missing:
        raise _corrupt("flowers102", path, f"has no {', '.join(missing)} array")
    return content


def _flowers102(root: Path, verify: bool):
    if verify:
        _verify_md5("flowers102", root)
    base = root / "flowers-102"
    labels = np.atleast_1d(_loadmat(base / "imagelabels.mat", ["labels"])["labels"])
    if len(labels) and not 1 <= labels.min() <= labels.max() <= 102:
        raise _corrupt("flowers102", base / "imagelabels.mat", "labels must be 1..102 (1-based)")
    splits = _loadmat(base / "setid.mat", list(tv_datasets.Flowers102._splits_map.values()))
    for key in tv_datasets.Flowers102._splits_map.values():
        ids = np.atleast_1d(splits[key])
        if len(ids) == 0 or ids.min() < 1 or ids.max() > len(labels):
            raise _corrupt("flowers102", base / "setid.mat", f"{key!r} must hold image ids in 1..{len(labels)}")
        for image_id in ids:
            if not (base / "jpg" / f"image_{int(image_id):05d}.jpg").is_file():
                raise _corrupt("flowers102", base / "jpg", f"image_{int(image_id):05d}.jpg (listed in setid.mat "
                                                           f"{key!r}) does not exist")
    make = lambda split: _Flowers102(str(root), split=split, loader=data.load_rgb)  # noqa: E731
    return ConcatDataset([make("train"), make("val")]), make("test")


class _GTSRB(tv_datasets.GTSRB):
    """torchvision's GTSRB; an unreadable image raises CorruptDataError naming the file."""

    def __getitem__(self, index):
        try:
            return super().__getitem__(index)
        except OSError as exc:
            raise _corrupt("gtsrb", self._samples[index][0], f"cannot read image ({exc})") from exc


def _gtsrb(root: Path, verify: bool):
    if verify:
        _verify_md5("gtsrb", root)
    base = root / "gtsrb"
    training = base / "GTSRB" / "Training"
    folders = sorted(p.name for p in training.iterdir() if p.is_dir())
    # torchvision numbers the training folders in sorted order, the test csv by ClassId: they agree only if the
    # folders are 00000, 00001, ... without gaps
    if folders != [f"{i:05d}" for i in range(len(folders))] or not folders:
        raise _corrupt("gtsrb", training, f"class folders must be 00000..{len(folders) - 1:05d} without gaps, "
                                          f"found {folders[:5]}{'...' if len(folders) > 5 else ''}")
    for folder in folders:
        if not any(p.suffix == ".ppm" for p in (training / folder).iterdir()):
            raise _corrupt("gtsrb", training / folder, "holds no .ppm image")
    table = base / "GT-final_test.csv"
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";", skipinitialspace=True))
    if not rows or not {"Filename", "ClassId"} <= set(rows[0]):
        raise _corrupt("gtsrb", table, "must be a ';'-separated table with Filename and ClassId columns")
    images = base / "GTSRB" / "Final_Test" / "Images"
    for number, row in enumerate(rows, 2):
        if not (images / row["Filename"]).is_file():
            raise _corrupt("gtsrb", table, f"row {number} names {images / row['Filename']}, which does not exist")
        if not row["ClassId"].strip().isdigit() or int(row["ClassId"]) >= len(folders):
            raise _corrupt("gtsrb", table, f"row {number}: ClassId {row['ClassId']!r} is not one of the "
                                           f"{len(folders)} training classes")
    return _GTSRB(str(root), split="train"), _GTSRB(str(root), split="test")


_LOADERS = {"mnist": lambda root, verify: _mnist("mnist", root, verify),
            "fashionmnist": lambda root, verify: _mnist("fashionmnist", root, verify),
            "cifar10": _cifar10, "cifar100": _cifar100, "dtd": _dtd, "flowers102": _flowers102, "gtsrb": _gtsrb}
_DOWNLOAD = {"mnist": lambda r: tv_datasets.MNIST(r, download=True),
             "fashionmnist": lambda r: tv_datasets.FashionMNIST(r, download=True),
             "cifar10": lambda r: tv_datasets.CIFAR10(r, download=True),
             "cifar100": lambda r: tv_datasets.CIFAR100(r, download=True),
             "dtd": lambda r: tv_datasets.DTD(r, download=True),
             "flowers102": lambda r: tv_datasets.Flowers102(r, download=True),
             "gtsrb": lambda r: (tv_datasets.GTSRB(r, split="train", download=True),
                                 tv_datasets.GTSRB(r, split="test", download=True))}


def load_transfer_splits(name: str, root, *, download: bool = False, verify: bool = True):
    """``(train, test)`` of ``name`` (see the module table) as datasets of (PIL image, int label), checked as the
    module docstring says.  ``download=True`` runs torchvision's download when the files are missing."""
    _check_names([name])
    if not isinstance(download, bool) or not isinstance(verify, bool):
        raise ArgumentTypeError(f"download and verify must be bools, got {download!r} and {verify!r}")
    if root is None or (isinstance(root, str) and not root.strip()):
        raise ArgumentError(f"data_root (CLI: --data-root) is required for {name}; {_layout(name, Path('ROOT'))}")
    root = Path(root).expanduser()
    if download and not all(p.exists() for p in required_files(name, root)):
        root.mkdir(parents=True, exist_ok=True)
        _DOWNLOAD[name](str(root))
    _require(name, root)
    try:
        return _LOADERS[name](root, verify)
    except data.DataError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, AssertionError) as exc:
        # torchvision's own parsing failed where our checks passed: still name the dataset and the folder
        raise CorruptDataError(f"{name}: could not load from {root} ({type(exc).__name__}: {exc}); "
                               f"{_layout(name, root)}") from exc


# ---------------------------------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------------------------------

class _CountingEncoder(nn.Module):
    """``model.encode`` that advances a progress bar by each batch (extract_features calls it once per batch)."""

    def __init__(self, model: nn.Module, bar):
        super().__init__()
        self.model, self.bar = model, bar

    def encode(self, x):
        features = self.model.encode(x)
        self.bar.update(int(x.shape[0]))
        return features


def run_transfer(run_dir, datasets: Sequence[str] | str = TRANSFER_DATASETS, data_root=None, *,
                 download: bool = False, verify: bool = True, device: str = "auto", linear_epochs: int = 100,
                 linear_lr: float = LINEAR_LR, linear_weight_decay: float = 0.0, batch_size: int = 256,
                 num_workers: int = 0, progress: bool = True) -> dict:
    """Linear evaluation of RUN_DIR's frozen backbone on each of ``datasets``; writes RUN_DIR/transfer.json after
    each dataset (so finished ones survive a later failure) and returns its content."""
    from tqdm.auto import tqdm


    names = _check_names(datasets)
    if data_root is None or (isinstance(data_root, str) and not data_root.strip()):
        raise ArgumentError("data_root (CLI: --data-root DIR) is required: the folder holding the transfer datasets")
    root = Path(data_root).expanduser()
    if not download:
        for name in names:      # fail before any feature extraction when a dataset is missing
            _require(name, root)
    dev = resolve_device(device)
    cfg, model, epoch = load_run(run_dir, dev)
    if cfg.dataset not in data.PRESETS:
        raise ArgumentError(f"the run's pre-training dataset {cfg.dataset!r} has no preset in superinfo.data, so its "
                         f"input normalisation is unknown; transfer needs one of {', '.join(data.PRESETS)}")
    preset = data.preset_for(cfg.dataset, cfg.image_size)
    transform = data.eval_transform(preset)
    channels_last = dev.type == "cuda"
    if channels_last:
        import torch
        model = model.to(memory_format=torch.channels_last)
    settings = {"epochs": linear_epochs, "lr": linear_lr, "weight_decay": linear_weight_decay,
                "batch_size": batch_size, "seed": cfg.seed}
    path = Path(run_dir) / TRANSFER_FILE
    result = _read_existing(path)
    result.update(run_dir=str(run_dir), checkpoint_epoch=epoch, arch=cfg.arch, image_size=preset.image_size,
                  normalisation={"from": cfg.dataset, "mean": list(preset.mean), "std": list(preset.std)},
                  protocol="linear")
    for name in tqdm(names, desc="transfer", disable=not progress):
        start = time.perf_counter()
        train_base, test_base = load_transfer_splits(name, root, download=download, verify=verify)
        train_ds = data.TransformedDataset(train_base, transform)
        test_ds = data.TransformedDataset(test_base, transform)
        for split, ds in (("train", train_ds), ("test", test_ds)):
            if len(ds) == 0:
                raise CorruptDataError(f"{name}: the {split} split under {root} holds no images")
        with tqdm(total=len(train_ds) + len(test_ds), desc=f"{name} features", unit="img", leave=False,
                  disable=not progress) as bar:
            r = evaluate_model(_CountingEncoder(model, bar), train_ds, test_ds, "linear", device=dev,
                               linear_epochs=linear_epochs, linear_lr=linear_lr,
                               linear_weight_decay=linear_weight_decay, batch_size=batch_size,
                               num_workers=num_workers, seed=cfg.seed, channels_last=channels_last)
        train_splits, test_split = SPLITS.get(name, DEFAULT_SPLITS)
        result["datasets"][name] = {
            "top1": r["top1"], "train_top1": r["train_top1"], "n_train": r["n_train"], "n_test": r["n_test"],
            "num_classes": r["num_classes"], "feature_dim": r["feature_dim"],
            "splits": {"train": list(train_splits), "test": test_split},
            "integrity": _integrity_note(name, verify), "settings": {**r["settings"], **settings},
            "data_root": str(root), "checkpoint_epoch": epoch, "seconds": round(time.perf_counter() - start, 3)}
        write_json_atomically(path, result)
    return result


def _read_existing(path: Path) -> dict:
    result = {"datasets": {}}
    if path.exists():
        try:
            previous = json.loads(path.read_text())
            if isinstance(previous.get("datasets"), dict):
                result["datasets"] = previous["datasets"]
        except (ValueError, AttributeError):
            pass        # an unreadable file is replaced, as eval.json is
    return result



