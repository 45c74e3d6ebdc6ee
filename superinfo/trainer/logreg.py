"""The linear evaluation protocol of SimCLR's appendix (Chen et al. 2020, B.5 / Kornblith et al. 2019): multinomial
logistic regression on frozen, standardised features, fitted to convergence by L-BFGS, with its L2 strength chosen
on a validation split carved from the training split; then refitted on the whole training split and scored on the
test split once.  And the 95 % confidence interval of a top-1 over test images (bootstrap).

    r = logreg_top1(train_f, train_y, test_f, test_y)      # {"top1", "top1_ci95", "l2", "val_top1", "val_curve", ...}

The objective is  mean_i CE(W x_i + b, y_i) + l2 / 2 * ||W||^2  (the bias is not penalised), which is
scikit-learn's ``LogisticRegression(C=1 / (l2 * n))`` objective divided by C * n: the same minimiser (tested).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mi_toolkit.errors import ArgumentError

__all__ = ["L2_GRID", "VAL_FRACTION", "bootstrap_ci", "correct_rows", "fit_logistic", "logreg_top1", "validation_split"]

# 10^-6 .. 10^0 in half decades: wide enough that the choice lands inside it for features from raw pixels to a
# well-trained encoder's (the chosen value is reported, and a choice at either end is a warning)
L2_GRID = tuple(float(v) for v in np.logspace(-6, 0, 13))
VAL_FRACTION = 0.2
VAL_SEED = 0


def validation_split(labels: torch.Tensor, fraction: float = VAL_FRACTION, seed: int = VAL_SEED):
    """``(fit rows, validation rows)`` of a training split: a fixed, class-stratified share (the same function
    that carves a test split from a folder without one)."""
    from ..data.sources.base import holdout_indices
    y = labels.tolist()
    val = holdout_indices(y, "test", fraction=fraction, seed=seed)
    fit = holdout_indices(y, "train", fraction=fraction, seed=seed)
    return torch.as_tensor(fit, dtype=torch.long), torch.as_tensor(val, dtype=torch.long)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, *, max_iter: int = 1000,
                 tolerance: float = 1e-9):
    """``(W [C, D], b [C])`` minimising mean cross-entropy + l2 / 2 ||W||^2 by full-batch L-BFGS (float64, from
    zero: deterministic)."""
    x64, y = x.double(), y.long()
    w = torch.zeros(num_classes, x64.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, tolerance_grad=tolerance, tolerance_change=tolerance,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x64 @ w.T + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach(), b.detach()


def correct_rows(w, b, x, y) -> torch.Tensor:
    """Per row of ``x``: whether the linear classifier (w, b) predicts label ``y`` (a bool tensor)."""
    return (x.double() @ w.T + b).argmax(1) == y


def logreg_top1(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor, *,
                l2_grid=L2_GRID, val_fraction: float = VAL_FRACTION, num_classes: int | None = None,
                seed: int = 0) -> dict:
    """The protocol: standardise by the training split's statistics, pick l2 on the validation rows (the best
    validation top-1; ties to the stronger l2), refit on every training row, score the test split once."""
    if not l2_grid or any(v < 0 for v in l2_grid):
        raise ArgumentError(f"l2_grid must hold values >= 0, got {l2_grid!r}")
    c = int(num_classes if num_classes is not None else max(int(train_y.max()), int(test_y.max())) + 1)
    mean, std = train_f.mean(0, keepdim=True), train_f.std(0, keepdim=True).clamp_min(1e-6)
    xtr, xte = (train_f - mean) / std, (test_f - mean) / std
    fit_rows, val_rows = validation_split(train_y, val_fraction)
    if len(val_rows) == 0:
        raise ArgumentError("the training split is too small to carve a validation split from (every class has "
                            "a single image)")
    curve = {}
    for l2 in l2_grid:
        w, b = fit_logistic(xtr[fit_rows], train_y[fit_rows], c, l2)
        curve[l2] = float(correct_rows(w, b, xtr[val_rows], train_y[val_rows]).double().mean())
    best = max(curve.values())
    chosen = max(l2 for l2, acc in curve.items() if acc == best)
    w, b = fit_logistic(xtr, train_y, c, chosen)
    correct = correct_rows(w, b, xte, test_y)
    result = {"top1": float(correct.double().mean()), "top1_ci95": bootstrap_ci(correct, seed=seed),
              "train_top1": float(correct_rows(w, b, xtr, train_y).double().mean()), "val_top1": best, "l2": chosen,
              "val_curve": {f"{k:.3g}": v for k, v in curve.items()}, "n_val": int(len(val_rows))}
    if chosen in (min(l2_grid), max(l2_grid)) and len(l2_grid) > 1:
        result["warning"] = f"the chosen l2 ({chosen:g}) is at the end of the grid: widen l2_grid"
    return result


def bootstrap_ci(correct: torch.Tensor, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> list:
    """The percentile bootstrap interval of a top-1 over test images: ``[low, high]`` of the mean of
    ``correct`` (one bool per test image) resampled with replacement ``n_boot`` times."""
    hits = np.asarray(correct, dtype=np.float64).ravel()
    if hits.size == 0:
        raise ArgumentError("bootstrap_ci needs at least one test image")
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // hits.size)       # resamples at a time: bounded memory for big test sets
    means = np.concatenate([hits[rng.integers(0, hits.size, size=(min(chunk, n_boot - start), hits.size))].mean(1)
                            for start in range(0, n_boot, chunk)])
    tail = (1 - level) / 2
    return [float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))]
