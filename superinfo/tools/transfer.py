"""Transfer linear evaluation: a run's frozen backbone on the classification datasets of the InfoCL protocol.

    from superinfo.tools.transfer import run_transfer
    result = run_transfer("RUN_DIR", ["dtd", "mnist", "cifar100"], "data/")     # writes RUN_DIR/transfer.json
    result["datasets"]["mnist"]["top1"]

Each dataset is read from ``data_root`` by its source in ``superinfo.data.sources`` (the registry pre-training and
evaluation read too; mostly torchvision's classes after the source's checks; ``download=True`` fetches it through
torchvision when its files are missing), resized to the run's image size with the run's normalisation
(``superinfo.data.eval_transform``: grayscale becomes 3 channels), encoded once by the frozen backbone, and
classified by ``superinfo.trainer.evaluate.evaluate_model``'s linear protocol (logistic regression on standardised
features).

    name          train         test    on disk under data_root (torchvision's layout)
    dtd           train1+val1   test1   dtd/dtd/images/<class>/*.jpg, dtd/dtd/labels/{train,val,test}1.txt
    mnist         train         test    MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], or the four
                                        .gz directly in data_root (flat)
    fashionmnist  train         test    FashionMNIST/raw/ (as MNIST), or flat (Debian's package:
                                        --data-root /usr/share/datasets/fashion-mnist)
    flowers102    train+val     test    flowers-102/jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat
    gtsrb         train         test    gtsrb/GTSRB/Training/<000NN>/*.ppm, gtsrb/GTSRB/Final_Test/Images/*.ppm,
                                        gtsrb/GT-final_test.csv
    cifar10       train         test    cifar-10-batches-py/ (superinfo.data)
    cifar100      train         test    cifar-100-python/{train,test,meta}

Integrity (as in ``superinfo.data``): ``verify=True`` (default) checks every file torchvision publishes an md5 for
against it: CIFAR-10/100's pickles, Flowers102's ``.mat`` files, and the archives torchvision downloads and keeps
next to the data (MNIST's ``raw/*.gz``, whose decompressed bytes must also equal the raw files; a flat MNIST
folder's archives are not those bytes, so its content is checked instead and transfer.json says so; DTD's
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

import json
import time
from pathlib import Path
from typing import Sequence

from torch import nn
from torch.utils.data import ConcatDataset

from mi_toolkit.errors import ArgumentError, ArgumentTypeError
from .. import data
from mi_toolkit.atomic import write_json_atomically
from ..data import CorruptDataError
from ..data.sources import SOURCES
from ..data.sources.base import require_paths
from ..data.sources.dtd import DTD_PARTITION  # noqa: F401  (public here since before)
from ..trainer.config import resolve_device
from ..trainer.evaluate import LINEAR_LR, evaluate_model, load_run

__all__ = ["TRANSFER_DATASETS", "TRANSFER_FILE", "load_transfer_splits", "required_files", "run_transfer"]

# The InfoCL table's order; a source added later that declares transfer_splits follows in registry order.
_PROTOCOL_ORDER = ("dtd", "mnist", "fashionmnist", "flowers102", "gtsrb", "cifar10", "cifar100")
TRANSFER_DATASETS = tuple(sorted((n for n, s in SOURCES.items() if s.transfer_splits is not None),
                                 key=lambda n: (_PROTOCOL_ORDER.index(n) if n in _PROTOCOL_ORDER
                                                else len(_PROTOCOL_ORDER), list(SOURCES).index(n))))
TRANSFER_FILE = "transfer.json"
DEFAULT_SPLITS = (("train",), "test")
SPLITS = {n: SOURCES[n].transfer_splits for n in TRANSFER_DATASETS if SOURCES[n].transfer_splits != DEFAULT_SPLITS}
# views of the sources' declarations, as this module has always exposed them (each source reads its own)
LAYOUTS = {n: SOURCES[n].layout for n in TRANSFER_DATASETS}
ARCHIVE_MD5 = {n: dict(SOURCES[n].md5) for n in TRANSFER_DATASETS if n != "cifar10"}


def _check_names(datasets) -> list:
    if isinstance(datasets, str):
        datasets = [d.strip() for d in datasets.split(",") if d.strip()]
    names = list(datasets)
    unknown = [n for n in names if n not in TRANSFER_DATASETS]
    if unknown or not names:
        raise ArgumentError(f"datasets must be a non-empty list of {', '.join(TRANSFER_DATASETS)}; got "
                         f"{unknown or names!r}")
    return list(dict.fromkeys(names))


def required_files(name: str, root) -> list:
    """The files and folders ``name`` must have under ``root`` (without the archives ``verify`` adds)."""
    if name not in TRANSFER_DATASETS:
        raise ArgumentError(f"unknown transfer dataset {name!r}; valid: {', '.join(TRANSFER_DATASETS)}")
    return SOURCES[name].required_files(Path(root))


def _require(name: str, root: Path) -> None:
    require_paths(SOURCES[name], root)


def load_transfer_splits(name: str, root, *, download: bool = False, verify: bool = True):
    """``(train, test)`` of ``name`` (see the module table) as datasets of (PIL image, int label), checked as the
    module docstring says.  ``download=True`` runs torchvision's download when the files are missing."""
    _check_names([name])
    if not isinstance(download, bool) or not isinstance(verify, bool):
        raise ArgumentTypeError(f"download and verify must be bools, got {download!r} and {verify!r}")
    source = SOURCES[name]
    if root is None or (isinstance(root, str) and not root.strip()):
        raise ArgumentError(f"data_root (CLI: --data-root) is required for {name}; {source.how_to_get}")
    root = Path(root).expanduser()
    if download and not all(p.exists() for p in source.required_files(root)):
        root.mkdir(parents=True, exist_ok=True)
        source.download(root)
    _require(name, root)
    train_splits, test_split = source.transfer_splits
    try:
        parts = [source.load(root, split, verify=verify) for split in train_splits]
        test = source.load(root, test_split, verify=verify)
    except data.DataError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, AssertionError) as exc:
        # torchvision's own parsing failed where our checks passed: still name the dataset and the folder
        raise CorruptDataError(f"{name}: could not load from {root} ({type(exc).__name__}: {exc}); "
                               f"{source.how(root)}") from exc
    return (parts[0] if len(parts) == 1 else ConcatDataset(parts)), test


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
        train_splits, test_split = SOURCES[name].transfer_splits
        result["datasets"][name] = {
            "top1": r["top1"], "train_top1": r["train_top1"], "n_train": r["n_train"], "n_test": r["n_test"],
            "num_classes": r["num_classes"], "feature_dim": r["feature_dim"],
            "splits": {"train": list(train_splits), "test": test_split},
            "integrity": SOURCES[name].integrity_note(root, verify), "settings": {**r["settings"], **settings},
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



