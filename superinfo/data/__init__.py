"""Image data for the trainer: data sets on disk in their official formats (``datasets``), the two-view
augmentation and the eval transform (``augment``), and the integrity checks shared with the transfer suite
(``integrity``).

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

__all__ = [
    "BLUR_MIN_SIZE", "DATASETS", "EVAL_SPLITS", "HOLDOUT_FRACTION", "HOLDOUT_SEED", "PRESETS", "PRETRAIN_SPLIT",
    "SPLITS", "UNLABELED", "CorruptDataError", "DataError", "DataPreset", "DigitsDataset", "IntegrityError",
    "MissingDataError", "TransformedDataset", "TwoViewTransform", "TwoViews", "augmentation", "build_dataset",
    "digits_arrays", "eval_datasets", "eval_splits", "eval_transform", "holdout_indices", "load_datasets",
    "load_rgb", "num_classes", "num_classes_of", "preset_for", "pretrain_dataset", "to_rgb", "two_view_transform",
]


def load_datasets(cfg, eval_too: bool = False, pretrain: bool = True):
    """``(pretrain_ds | None, (train_ds, test_ds) | None)`` for a run's settings (``cfg.dataset``, ``data_root``,
    ``image_size``, ``download``, ``verify``)."""
    if cfg.dataset not in PRESETS:
        raise ArgumentError(f"unknown dataset {cfg.dataset!r}; valid: {', '.join(PRESETS)}")
    if cfg.data_root is None and cfg.dataset not in ("digits", "synthetic"):   # digits ships with scikit-learn
        raise ArgumentError("data_root is required (--data-root DIR)")
    preset = preset_for(cfg.dataset, cfg.image_size)
    if cfg.dataset == "synthetic":      # random images: cfg.synthetic_size for pre-training, a fifth of it to evaluate
        from .synthetic_images import SyntheticImages
        n = getattr(cfg, "synthetic_size", 50_000)
        pre = TwoViews(SyntheticImages(n, preset.image_size, seed=0), two_view_transform(preset)) if pretrain else None
        ev = tuple(TransformedDataset(SyntheticImages(max(1, n // 5), preset.image_size, seed=s),
                                      eval_transform(preset)) for s in (1, 2)) if eval_too else None
        return pre, ev
    pre = pretrain_dataset(cfg.dataset, cfg.data_root, preset, download=cfg.download, verify=cfg.verify) \
        if pretrain else None
    ev = eval_datasets(cfg.dataset, cfg.data_root, preset, download=cfg.download, verify=cfg.verify) \
        if eval_too else None
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
