"""Every data set the project reads, one module per on-disk format, and the registry that pre-training
(``superinfo.data.build_dataset`` / ``pretrain_dataset`` / ``eval_datasets``), evaluation and the transfer suite
(``superinfo.tools.transfer``) all read.

    from superinfo.data.sources import SOURCES, needs_root
    SOURCES["mnist"].load(Path("data"), "test", verify=False)     # (PIL image, label) pairs, checked
    needs_root("digits")                                          # False: shipped with scikit-learn

Each source (``base.Source``) declares its names, splits, required files, md5s, loader, whether it needs a data
root, its how-to-get text and, for a pre-training set, its ``DataPreset``.  A data set is added by one module
here (a ``Source`` subclass and its instance) and one line in ``SOURCES``: it is a pre-training data set when it
declares ``pretrain_split`` and ``preset``, part of the transfer suite when it declares ``transfer_splits``.

    name          module        pre-train  transfer   on disk under ROOT
    cifar10       cifar         train      yes        cifar-10-batches-py/
    stl10         stl10         unlabeled             stl10_binary/
    imagenet      imagefolder   train                 train/<wnid>/, val/<wnid>/
    imagefolder   imagefolder   train                 [<split>/]<class>/<image>
    digits        digits        train                 none (scikit-learn)
    synthetic     synthetic     train                 none (generated)
    mnist         mnist         train      yes        MNIST/raw/*-ubyte[.gz], or the four .gz directly in ROOT
    fashionmnist  mnist         train      yes        FashionMNIST/raw/ (as MNIST), or flat (Debian's package)
    cifar100      cifar         train      yes        cifar-100-python/
    svhn          svhn          train                 {train,test}_32x32.mat
    dtd           dtd                      yes        dtd/dtd/images/, dtd/dtd/labels/
    flowers102    flowers                  yes        flowers-102/
    gtsrb         gtsrb                    yes        gtsrb/GTSRB/
"""
from __future__ import annotations

from mi_toolkit.errors import ArgumentError

from . import cifar, digits, dtd, flowers, gtsrb, imagefolder, mnist, stl10, svhn, synthetic
from .base import Source

__all__ = ["PRETRAIN_NAMES", "SOURCES", "Source", "TRANSFER_NAMES", "get", "needs_root"]

SOURCES: dict[str, Source] = {s.name: s for s in (
    cifar.CIFAR10,
    stl10.STL10,
    imagefolder.IMAGENET,
    imagefolder.IMAGEFOLDER,
    digits.DIGITS,
    synthetic.SYNTHETIC,
    mnist.MNIST,
    mnist.FASHIONMNIST,
    cifar.CIFAR100,
    svhn.SVHN,
    dtd.DTD,
    flowers.FLOWERS102,
    gtsrb.GTSRB,
)}

PRETRAIN_NAMES = tuple(n for n, s in SOURCES.items() if s.pretrain_split is not None)
TRANSFER_NAMES = tuple(n for n, s in SOURCES.items() if s.transfer_splits is not None)


def get(name: str) -> Source:
    """The source called ``name``; ArgumentError listing the known names otherwise."""
    if name not in SOURCES:
        raise ArgumentError(f"unknown data set {name!r}; known: {', '.join(SOURCES)}")
    return SOURCES[name]


def needs_root(name) -> bool:
    """Whether data set ``name`` needs a data root (``--data-root``); True for a name no source has, so the usual
    'data root required' message comes before the 'unknown data set' one."""
    source = SOURCES.get(name) if isinstance(name, str) else None
    return True if source is None else source.needs_root
