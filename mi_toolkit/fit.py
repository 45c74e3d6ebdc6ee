"""Fit an estimator on samples and report an estimate a person can trust: its bound direction, cap, standard error,
held-out value next to the training value, and warnings when something is off.

    result = mi_toolkit.estimate(x, y, "smile", steps=2000, batch_size=64)
    result.mi, result.stderr, result.direction, result.heldout_mi, result.train_mi, result.warnings
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .estimators import MIEstimator, check_estimator_name, estimator as build_estimator
from .validation import check_int, check_number, check_samples

# Thresholds for the warnings (nats unless said otherwise).
SATURATION_MARGIN = 0.25     # within this of the cap: the truth may be far above the estimate
VARIANCE_LIMIT = 1.0         # spread across evaluation batches above max(this, 25% of |mi|) is a blow-up
RELATIVE_VARIANCE_LIMIT = 0.25
GAP_LIMIT = 0.1              # train/held-out gaps below this are never flagged
GAP_SIGMAS = 3.0             # ... nor those within this many combined standard errors


class MIEstimateWarning(UserWarning):
    """Something about an MI estimate deserves a second look (saturation, variance, overfitting, divergence)."""


@dataclass
class MIResult:
    estimator: str
    mi: float                  # the estimate to report: held-out value (training value when nothing is held out)
    stderr: float              # standard error of mi over evaluation batches
    std: float                 # spread of the per-batch estimate over evaluation batches
    direction: str             # "lower", "upper" or "estimate"
    cap: float | None          # largest value this estimator can report at this batch size (log N for InfoNCE)
    batch_size: int
    steps: int
    train_mi: float
    train_stderr: float
    heldout_mi: float | None
    heldout_stderr: float | None
    n_eval_batches: int
    history: np.ndarray = field(repr=False)   # the per-step training estimate
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["history"] = self.history.tolist()
        return d

    def __str__(self) -> str:
        kind = {"lower": "lower bound", "upper": "upper bound"}.get(self.direction, "estimate (no bound)")
        where = "held-out" if self.heldout_mi is not None else "train"
        text = f"{self.estimator} {kind}: {self.mi:.4f} ± {self.stderr:.4f} nats ({where}; train {self.train_mi:.4f})"
        if self.cap is not None:
            text += f", cap {self.cap:.4f}"
        for w in self.warnings:
            text += f"\n  warning: {w}"
        return text


def make_adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel where this torch/device has one (about 1 ms less per small CPU step)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless minibatches of distinct rows: walk a permutation, reshuffle when it runs out."""
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


@torch.no_grad()
def evaluate(est: MIEstimator, x: torch.Tensor, y: torch.Tensor, batch_size: int, max_batches: int | None,
             generator: torch.Generator) -> np.ndarray:
    """Per-batch estimates on disjoint batches of (x, y), with the estimator in eval mode (no state updates)."""
    was_training = est.training
    est.eval()
    order = torch.randperm(x.shape[0], generator=generator)
    count = x.shape[0] // batch_size if max_batches is None else min(x.shape[0] // batch_size, max_batches)
    values = [float(est(x[idx], y[idx]).mi) for idx in order[:count * batch_size].view(count, batch_size)]
    est.train(was_training)
    return np.asarray(values)


def _mean_stderr(values: np.ndarray):
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return float(values.mean()), std / math.sqrt(len(values)) if len(values) > 1 else float("nan"), std


def diagnose(result: MIResult) -> list[str]:
    """The warnings that apply to a finished estimate."""
    found = []
    if not np.all(np.isfinite(result.history)):
        found.append(f"the training estimate became NaN/inf in {int((~np.isfinite(result.history)).sum())} of "
                     f"{len(result.history)} steps: the critic diverged; lower lr or use a bounded estimator (smile, infonce)")
    if not math.isfinite(result.mi):
        found.append("the final estimate is not finite")
        return found
    if result.cap is not None and max(result.mi, result.train_mi) > result.cap - SATURATION_MARGIN:
        found.append(f"the estimate {result.mi:.3f} is within {SATURATION_MARGIN} nats of its cap "
                     f"log N = {result.cap:.3f}: the true MI may be much larger; raise batch_size or use smile/ba/doe")
    if math.isfinite(result.std) and result.std > max(VARIANCE_LIMIT, RELATIVE_VARIANCE_LIMIT * abs(result.mi)):
        found.append(f"the per-batch estimate varies by {result.std:.3f} nats (std): variance blow-up, typical of "
                     f"nwj/mine at high MI; average more batches or use a lower-variance estimator")
    if result.heldout_mi is not None and math.isfinite(result.heldout_mi):
        gap = result.train_mi - result.heldout_mi
        noise = math.hypot(result.train_stderr, result.heldout_stderr or 0.0)
        if abs(gap) > max(GAP_LIMIT, GAP_SIGMAS * noise):
            found.append(f"training estimate {result.train_mi:.3f} differs from held-out {result.heldout_mi:.3f} by "
                         f"{gap:+.3f} nats (> {GAP_SIGMAS:g} standard errors): the estimator has "
                         f"{'over' if gap > 0 else 'under'}fitted; use more samples or fewer steps")
    return found


def estimate(x, y, name: str = "smile", *, steps: int = 2000, batch_size: int = 64, lr: float = 5e-4,
             heldout_fraction: float = 0.2, eval_batches: int | None = 200, seed: int = 0, progress: bool = False,
             warn: bool = True, **estimator_kwargs) -> MIResult:
    """Fit estimator ``name`` on paired samples x [n, dx], y [n, dy] (tensors or arrays) and report it.

    A ``heldout_fraction`` of the rows is kept out of training; ``result.mi`` is the estimate on those rows
    (averaged over up to ``eval_batches`` disjoint batches of ``batch_size``), ``result.train_mi`` the same on the
    training rows.  Extra keyword arguments go to ``mi_toolkit.estimator`` (critic, hidden, clip, entropy_y, ...).
    """
    # the arguments first, then the data, then the estimator's own options, and only then whether the data is
    # large enough for them (so a misspelt name is reported as such, whatever the data)
    check_estimator_name(name)
    batch_size = check_int(batch_size, "batch_size", minimum=2)
    steps = check_int(steps, "steps")
    lr = check_number(lr, "lr", positive=True)
    if not isinstance(heldout_fraction, (int, float)) or not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction!r}")
    x, y = check_samples(x, y, min_batch=2)
    x, y = x.float(), y.float()
    torch.manual_seed(seed)   # the estimator's initial weights
    est = build_estimator(name, x.shape[1], y.shape[1], **estimator_kwargs)
    n = x.shape[0]
    n_heldout = int(round(n * heldout_fraction))
    if n - n_heldout < batch_size or (n_heldout and n_heldout < batch_size):
        raise ValueError(f"batch_size={batch_size} needs at least {batch_size} training and {batch_size if n_heldout else 0} "
                         f"held-out rows; got {n} rows with heldout_fraction={heldout_fraction} "
                         f"({n - n_heldout} train, {n_heldout} held out)")

    generator = torch.Generator().manual_seed(seed)
    split = torch.randperm(n, generator=generator)
    train_idx, heldout_idx = split[n_heldout:], split[:n_heldout]
    x_train, y_train = x[train_idx], y[train_idx]

    optimizer = make_adam(est.parameters(), lr)
    history = np.empty(steps)
    batches = _batches(x_train.shape[0], batch_size, generator)
    for step in tqdm(range(steps), desc=f"fitting {name}", disable=not progress):
        idx = next(batches)
        out = est(x_train[idx], y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        history[step] = float(out.mi.detach())

    train_values = evaluate(est, x_train, y_train, batch_size, eval_batches, generator)
    train_mi, train_se, train_std = _mean_stderr(train_values)
    heldout_mi = heldout_se = None
    std = train_std
    if n_heldout:
        heldout_values = evaluate(est, x[heldout_idx], y[heldout_idx], batch_size, eval_batches, generator)
        heldout_mi, heldout_se, std = _mean_stderr(heldout_values)
        # the train estimate uses as many batches as the held-out one, so their standard errors compare
        train_mi, train_se, train_std = _mean_stderr(train_values[:len(heldout_values)])
    result = MIResult(
        estimator=name, mi=heldout_mi if n_heldout else train_mi, stderr=heldout_se if n_heldout else train_se,
        std=std, direction=est.direction, cap=est.cap(batch_size), batch_size=batch_size, steps=steps,
        train_mi=train_mi, train_stderr=train_se, heldout_mi=heldout_mi, heldout_stderr=heldout_se,
        n_eval_batches=len(train_values) if not n_heldout else len(heldout_values), history=history)
    result.warnings = diagnose(result)
    if warn:
        for message in result.warnings:
            warnings.warn(f"{name}: {message}", MIEstimateWarning, stacklevel=2)
    result.estimator_module = est  # kept for inspection (not part of to_dict)
    return result
