"""kNN top-1 monitored while training (``--knn-every N``), as lightly's benchmarks do, but on a validation split: the
bank is a class-stratified share of the training split, the queries the rest of a fixed validation share of it, so
that watching a run never reads its test split.  The value goes into the epoch's last ``log.csv`` row
(``knn_val_top1``) and ``RUN_DIR/knn.png`` plots it against the epoch.
"""
from __future__ import annotations

import csv
from pathlib import Path

import torch
from torch.utils.data import Subset

from mi_toolkit.atomic import write_atomically
from mi_toolkit.errors import ArgumentError

from .. import data
from .evaluate import extract_features, knn_top1
from .logreg import validation_split

__all__ = ["KNN_MONITOR_IMAGES", "KnnMonitor", "plot_knn"]

KNN_MONITOR_IMAGES = 10_000     # at most this many training images (stratified): seconds an epoch, not minutes
PLOT = "knn.png"


def _labels(dataset) -> torch.Tensor:
    """The labels of a data set from superinfo.data (or any wrapper of one) without decoding an image."""
    d = dataset
    while True:
        for name in ("targets", "labels"):
            values = getattr(d, name, None)
            if values is not None:
                return torch.as_tensor(list(values) if not torch.is_tensor(values) else values).long()
        if not hasattr(d, "base"):
            raise ArgumentError(f"knn_every: a {type(dataset).__name__} holds no labels to monitor kNN with")
        d = d.base


class KnnMonitor:
    """``monitor(t)``: the kNN top-1 (the run's ``knn_k``, ``knn_temperature``) of the run's backbone features,
    validation queries against the fit rows of the training split.  Draws no random number of the run's."""

    def __init__(self, cfg, eval_data=None):
        train_ds = eval_data[0] if eval_data is not None else \
            data.load_datasets(cfg, eval_too=True, pretrain=False)[1][0]
        labels = _labels(train_ds)
        keep = torch.arange(len(labels))
        if len(keep) > KNN_MONITOR_IMAGES:
            from ..data.sources.base import stratified_indices
            keep = torch.as_tensor(stratified_indices(labels.tolist(), KNN_MONITOR_IMAGES))
        fit, val = validation_split(labels[keep])
        if len(val) == 0:
            raise ArgumentError("knn_every: the training split is too small for a validation split")
        self.bank, self.queries = Subset(train_ds, keep[fit].tolist()), Subset(train_ds, keep[val].tolist())
        self.every, self.k, self.temperature = cfg.knn_every, cfg.knn_k, cfg.knn_temperature
        self.batch_size = cfg.batch_size

    def due(self, epoch: int) -> bool:
        """Whether ``epoch`` (1-based, just finished) is monitored."""
        return epoch % self.every == 0

    def __call__(self, t) -> float:
        kw = dict(batch_size=self.batch_size, device=t.device, channels_last=t.plan.channels_last)
        with torch.random.fork_rng(devices=[]):     # the loaders' seeds: the run's own stream stays as it was
            bank_f, bank_y = extract_features(t.model, self.bank, **kw)
            query_f, query_y = extract_features(t.model, self.queries, **kw)
        return knn_top1(bank_f, bank_y, query_f, query_y, k=self.k, temperature=self.temperature, device=t.device)


def plot_knn(run_dir) -> Path | None:
    """RUN_DIR/knn.png: ``knn_val_top1`` of log.csv against the epoch (None when the log holds none)."""
    from matplotlib.figure import Figure        # no pyplot: the caller's backend is left alone

    run_dir = Path(run_dir)
    with open(run_dir / "log.csv", newline="") as f:
        points = [(int(r["epoch"]), 100 * float(r["knn_val_top1"])) for r in csv.DictReader(f)
                  if r.get("knn_val_top1")]
    if not points:
        return None
    fig = Figure(figsize=(5, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(*zip(*points), marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("kNN top-1 on the validation split (%)")
    ax.grid(alpha=0.3)
    path = run_dir / PLOT
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return path
