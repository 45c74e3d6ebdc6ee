"""Image data for the trainer: data sets on disk in their official formats (``datasets``, read through the
registry of ``sources``: one module per format, shared with evaluation and the transfer suite), the two-view
augmentation and the eval transform (``augment``), and the integrity checks (``integrity``).

    from superinfo.data import preset_for, pretrain_dataset, eval_datasets, num_classes
    preset = preset_for("stl10")                                      # 96 px, blur on
    views = pretrain_dataset("stl10", "data/", preset)                # stl10_binary/unlabeled_X.bin, label -1
    v1, v2, label = views[0]                                          # two augmented [3, 96, 96] float tensors
    train, test = eval_datasets("stl10", "data/", preset)            # (tensor, label) with the eval transform
"""
from __future__ import annotations

from mi_toolkit.errors import ArgumentError

from .augment import (BLUR_MIN_SIZE, PRESETS, DataPreset, TwoViewTransform, augmentation, eval_transform, preset_for,
                      to_rgb, two_view_transform)
from .datasets import (DATASETS, EVAL_SPLITS, HOLDOUT_FRACTION, HOLDOUT_SEED, PRETRAIN_SPLIT, SPLITS, UNLABELED,
                       DigitsDataset, TransformedDataset, TwoViews, build_dataset, digits_arrays, eval_datasets,
                       eval_splits, holdout_indices, load_rgb, num_classes, pretrain_dataset)
from .integrity import CorruptDataError, DataError, IntegrityError, MissingDataError
from .sources import SOURCES, needs_root

__all__ = [
    "BLUR_MIN_SIZE", "DATASETS", "EVAL_SPLITS", "HOLDOUT_FRACTION", "HOLDOUT_SEED", "PRESETS", "PRETRAIN_SPLIT",
    "SPLITS", "UNLABELED", "CorruptDataError", "DataError", "DataPreset", "DigitsDataset", "IntegrityError",
    "MissingDataError", "SOURCES", "TransformedDataset", "TwoViewTransform", "TwoViews", "augmentation",
    "build_dataset", "digits_arrays", "eval_datasets", "eval_splits", "eval_transform", "holdout_indices",
    "load_datasets", "load_rgb", "needs_root", "num_classes", "num_classes_of", "preset_for", "pretrain_dataset",
    "to_rgb", "two_view_transform",
]


def load_datasets(cfg, eval_too: bool = False, pretrain: bool = True):
    """``(pretrain_ds | None, (train_ds, test_ds) | None)`` for a run's settings (``cfg.dataset``, ``data_root``,
    ``image_size``, ``download``, ``verify``, ``train_subset``)."""
    if cfg.dataset not in PRESETS:
        raise ArgumentError(f"unknown dataset {cfg.dataset!r}; valid: {', '.join(PRESETS)}")
    source = SOURCES[cfg.dataset]
    if cfg.data_root is None and source.needs_root:     # digits ship with scikit-learn; synthetic is generated
        raise ArgumentError("data_root is required (--data-root DIR)")
    preset = preset_for(cfg.dataset, cfg.image_size)
    bases = source.run_bases(cfg, preset.image_size)    # synthetic: sized by cfg.synthetic_size
    if bases is not None:
        pre = TwoViews(bases[0], two_view_transform(preset)) if pretrain else None
        ev = tuple(TransformedDataset(b, eval_transform(preset)) for b in bases[1:]) if eval_too else None
    else:
        pre = pretrain_dataset(cfg.dataset, cfg.data_root, preset, download=cfg.download, verify=cfg.verify) \
            if pretrain else None
        ev = eval_datasets(cfg.dataset, cfg.data_root, preset, download=cfg.download, verify=cfg.verify) \
            if eval_too else None
    if pre is not None and cfg.train_subset is not None:    # the same images every run (HOLDOUT_SEED)
        pre = TwoViews(_stratified_subset(pre.base, cfg.train_subset), pre.transform, seed=pre.seed)
    return pre, ev


def num_classes_of(dataset) -> int | None:
    """The number of classes of any labelled dataset: one from ``build_dataset`` (or a wrapper of it), or an
    in-memory one with ``num_classes`` or ``classes``; None for an unlabelled one."""
    try:
        return num_classes(dataset)
    except TypeError:       # not from build_dataset: an in-memory dataset
        n = getattr(dataset, "num_classes", None)
        if n is None and hasattr(dataset, "classes"):
            n = len(dataset.classes)
        return None if n is None else int(n)


def _stratified_subset(base, n: int):
    """``train_subset``: n images of ``base`` in its class proportions, fixed by ``HOLDOUT_SEED``."""
    from .sources.base import Subset, stratified_indices
    labels = getattr(base, "targets", None)
    if labels is None:
        labels = getattr(base, "labels", None)
    if labels is None:
        raise ArgumentError(f"train_subset: a {type(base).__name__} has no labels to stratify by")
    if n > len(labels):
        raise ArgumentError(f"train_subset {n} is more than the {len(labels)} images of the pre-training split")
    labels = [int(v) for v in labels]
    return Subset(base, stratified_indices(labels, n), labels=labels)

