"""The checks every data set on disk goes through, shared by the trainer's data sets and the transfer suite: the
error classes, md5 verification that hashes each unchanged file once per process, and the CIFAR pickle reader."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Callable

import numpy as np
from torchvision.datasets.utils import check_integrity

from mi_toolkit.errors import UserError

__all__ = ["CorruptDataError", "DataError", "IntegrityError", "MissingDataError", "check_cifar_batch",
           "md5_matches", "read_cifar_pickle"]


class DataError(UserError, RuntimeError):
    """A dataset on disk is missing, corrupt or fails its integrity check; the message says what to do."""


class MissingDataError(DataError):
    """The data folder or one of its files does not exist."""


class CorruptDataError(DataError):
    """A file exists but cannot be read, or images and labels disagree."""


class IntegrityError(CorruptDataError):
    """A file does not match the official checksum (verify=True)."""



_VERIFIED = set()   # (path, size, mtime, md5) of files whose md5 passed in this process: big files hash once


def _stamp(path, md5) -> tuple:
    stat = os.stat(path)
    return str(path), stat.st_size, stat.st_mtime_ns, md5


def md5_matches(path, md5: str) -> bool:
    """torchvision's ``check_integrity``, remembered per unchanged file (STL-10's 2.7 GB is hashed once)."""
    if not os.path.isfile(path):
        return False
    stamp = _stamp(path, md5)
    if stamp in _VERIFIED:
        return True
    if not check_integrity(str(path), md5):
        return False
    _VERIFIED.add(stamp)
    return True


def verified_once(paths, md5_check: Callable[[], bool]) -> bool:
    """Run ``md5_check`` (e.g. torchvision's own ``_check_integrity``) once per unchanged set of files."""
    stamp = tuple(_stamp(p, None) for p in paths)
    if stamp in _VERIFIED:
        return True
    if not md5_check():
        return False
    _VERIFIED.add(stamp)
    return True


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles what the CIFAR releases hold (dicts, lists, strings, numbers, numpy arrays) and refuses every other
    global, so a crafted data file cannot run code (a file that passed the md5 check is the official one anyway)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"), ("copy_reg", "_reconstructor"),
               ("copyreg", "_reconstructor"), ("__builtin__", "object"), ("builtins", "object")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR file holds only arrays, lists, "
                                         "strings and numbers")
        return super().find_class(module, name)


def read_cifar_pickle(path: Path) -> dict:
    """A CIFAR-10/100 python pickle as a dict (through an unpickler that runs no code); anything else raises
    CorruptDataError naming the file."""
    try:
        with open(path, "rb") as f:
            entry = _CifarUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError, OSError) as exc:
        raise CorruptDataError(f"{path} is not a readable CIFAR pickle ({type(exc).__name__}: {exc}); "
                               f"re-download it with --download") from exc
    if not isinstance(entry, dict):
        raise CorruptDataError(f"{path} should unpickle to a dict, got {type(entry).__name__}")
    return entry


def check_cifar_images(path, entry: dict) -> np.ndarray:
    """``entry['data']`` must be uint8 [n, 3072] (n images of 3 x 32 x 32)."""
    data = entry.get("data")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        what = f"{type(data).__name__} {getattr(data, 'shape', '')} {getattr(data, 'dtype', '')}".strip()
        raise CorruptDataError(f"{path}: 'data' must be uint8 [n, 3072] (n images of 3 x 32 x 32), got {what}")
    return data


def check_cifar_batch(path: Path) -> None:
    """A CIFAR-10 batch file unpickles to {'data': uint8 [n, 3072], 'labels': n ints in 0..9}."""
    entry = read_cifar_pickle(path)
    data = check_cifar_images(path, entry)
    labels = entry.get("labels")
    if labels is None or len(labels) != data.shape[0]:
        raise CorruptDataError(f"{path}: 'labels' must list one label per image ({data.shape[0]}), "
                               f"got {None if labels is None else len(labels)}")
    if len(labels) and not all(0 <= int(v) < 10 for v in labels):
        raise CorruptDataError(f"{path}: labels must be in 0..9")
