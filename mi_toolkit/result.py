"""What an estimate is (``MIResult``) and the guards every estimator's result passes through, whichever module made
it (``fit.estimate``, the classical, conditional and discrete estimators): a non-finite value, one outside its
bound's range, one far below 0 or beyond what n rows can resolve is a failure, never a confident number; the
warnings (saturation, variance, a train/held-out gap) go out as ``MIEstimateWarning``.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from .estimators import ESTIMATORS

__all__ = ["EstimationFailed", "MIEstimateWarning", "MIResult", "check_bounds", "diagnose", "finish", "mean_stderr",
           "warn_about"]

# Thresholds for the warnings (nats unless said otherwise).
SATURATION_MARGIN = 0.25     # within this of the cap: the truth may be far above the estimate
VARIANCE_LIMIT = 1.0         # spread across evaluation batches above max(this, 25% of |mi|) is a blow-up
RELATIVE_VARIANCE_LIMIT = 0.25
GAP_LIMIT = 0.1              # train/held-out gaps below this are never flagged
GAP_SIGMAS = 3.0             # ... nor those within this many combined standard errors
NEGATIVE_LIMIT = 0.1         # an estimate below -max(this, NEGATIVE_SIGMAS standard errors) is a failed fit (MI >= 0)
NEGATIVE_SIGMAS = 3.0
NEGATIVE_NOISE_CAP = 1.0      # ... but never more than this: 1 nat below 0 is a failed fit however noisy (JS once
                              # gave -190 +- 191 from one wild held-out batch of seven, and 3 s.e. let it through)
CEILING_FACTOR = 2.0         # an estimate above CEILING_FACTOR * log(n rows) cannot come from n samples


class MIEstimateWarning(UserWarning):
    """Something about an MI estimate deserves a second look (saturation, variance, overfitting, divergence)."""


class EstimationFailed(RuntimeError):
    """``estimate(..., on_failure="raise")``: the fit failed its guards; the message says why and what to try."""


_MODULE_FIELDS = ("estimator_module", "estimator_modules")   # MIResult fields that to_dict leaves out


@dataclass
class MIResult:
    estimator: str
    mi: float                  # the estimate to report: held-out value (training value when nothing is held out)
    stderr: float              # standard error of mi over evaluation batches (over seeds with seeds=S)
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
    failed: bool = False       # the guards rejected the fit: mi is nan and failure says why
    failure: str | None = None
    preprocess: str | None = None
    best_step: int | None = None   # the checkpoint reported (early stopping), 1-based step count
    steps_run: int | None = None   # steps actually trained
    seed: int = 0
    per_seed: list = field(default_factory=list)   # with seeds=S: one dict per seed (mi, stderr, train_mi, ...)
    # the fitted modules, kept for inspection; not figures, so left out of to_dict, repr and ==
    estimator_module: torch.nn.Module | None = field(default=None, repr=False, compare=False)
    estimator_modules: list = field(default_factory=list, repr=False, compare=False)   # with seeds=S: one a seed

    def to_dict(self) -> dict:
        """Every figure as plain data (what ``dataclasses.asdict`` gives, history as a list), without the modules."""
        return {f.name: np.asarray(self.history).tolist() if f.name == "history"
                else copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name not in _MODULE_FIELDS}

    def __str__(self) -> str:
        kind = {"lower": "lower bound", "upper": "upper bound"}.get(self.direction, "estimate (no bound)")
        where = "held-out" if self.heldout_mi is not None else "train"
        text = f"{self.estimator} {kind}: {self.mi:.4f} ± {self.stderr:.4f} nats ({where}; train {self.train_mi:.4f})"
        if self.per_seed:
            text += f", mean of {len(self.per_seed)} seeds"
        if self.cap is not None:
            text += f", cap {self.cap:.4f}"
        if self.failed:
            text += f"\n  FAILED: {self.failure}"
        for w in self.warnings:
            text += f"\n  warning: {w}"
        return text


def mean_stderr(values: np.ndarray):
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return float(values.mean()), std / math.sqrt(len(values)) if len(values) > 1 else float("nan"), std


def diagnose(result: MIResult) -> list[str]:
    """The warnings that apply to a finished estimate."""
    found = []
    history = np.asarray(result.history)
    if len(history) and not np.all(np.isfinite(history)):
        found.append(f"the training estimate became NaN/inf in {int((~np.isfinite(history)).sum())} of "
                     f"{len(history)} steps: the critic diverged; lower lr or use a bounded estimator (smile, infonce)")
    if not math.isfinite(result.mi):
        found.append("the final estimate is not finite")
        return found
    if result.cap is not None and max(result.mi, result.train_mi) > result.cap - SATURATION_MARGIN:
        found.append(f"the estimate {result.mi:.3f} is within {SATURATION_MARGIN} nats of its cap "
                     f"log N = {result.cap:.3f}: the true MI may be much larger; raise batch_size or use smile/ba/doe")
    if math.isfinite(result.std) and result.std > max(VARIANCE_LIMIT, RELATIVE_VARIANCE_LIMIT * abs(result.mi)):
        found.append(f"the per-batch estimate varies by {result.std:.3f} nats (std): variance blow-up, typical of "
                     f"nwj/mine at high MI; average more batches or use a lower-variance estimator")
    if result.heldout_mi is not None and math.isfinite(result.heldout_mi) and math.isfinite(result.train_mi):
        gap = result.train_mi - result.heldout_mi
        noise = math.hypot(result.train_stderr, result.heldout_stderr or 0.0)
        if abs(gap) > max(GAP_LIMIT, GAP_SIGMAS * noise):
            found.append(f"training estimate {result.train_mi:.3f} differs from held-out {result.heldout_mi:.3f} by "
                         f"{gap:+.3f} nats (> {GAP_SIGMAS:g} standard errors): the estimator has "
                         f"{'over' if gap > 0 else 'under'}fitted; use more samples or fewer steps")
    return found


def check_bounds(result: MIResult, n_rows: int) -> str | None:
    """Why ``result`` must not be reported as a number (None when it may): the hard guards."""
    mi, name = result.mi, result.estimator
    if not math.isfinite(mi):
        return (f"the estimate is not finite ({mi}): the {'critic' if name in ESTIMATORS else 'estimator'} diverged. "
                f"Try preprocess='copula' (the default), a lower lr, or a bounded estimator (smile, infonce)")
    if name == "infonce":
        cap = math.log(result.batch_size)
        if not -cap - 1e-6 <= mi <= cap + 1e-6:
            return (f"InfoNCE gave {mi:.4g} nats, outside its range [-log N, log N] = [{-cap:.3f}, {cap:.3f}]: the "
                    f"critic failed on held-out rows. Try preprocess='copula', fewer steps or a smaller critic "
                    f"(hidden), or more samples")
    stderr = result.stderr if math.isfinite(result.stderr) else 0.0
    noise = NEGATIVE_SIGMAS * stderr
    floor = -max(NEGATIVE_LIMIT, min(noise, NEGATIVE_NOISE_CAP))
    if mi < floor:
        kind = {"lower": "a lower bound", "upper": "an upper bound"}.get(result.direction, "an estimate")
        train = f" (training rows: {result.train_mi:.3f})" if result.heldout_mi is not None else ""
        noisy = (f" with a standard error of {stderr:.3g} (its evaluation batches disagree wildly)"
                 if noise > NEGATIVE_NOISE_CAP else "")
        return (f"{kind} of MI came out at {mi:.3f} nats{train}{noisy}, far below 0 where no MI can be: the fit failed "
                f"(the critic/conditional memorised its training rows or diverged). Try preprocess='copula', more "
                f"samples, a smaller model (hidden=64), a lower lr, or the ksg / gaussian baselines")
    ceiling = CEILING_FACTOR * math.log(max(n_rows, 2))
    if mi > ceiling:
        return (f"the estimate {mi:.4g} nats is above {CEILING_FACTOR:g} log n = {ceiling:.2f} nats, more than "
                f"{n_rows} samples can resolve: the fit diverged or memorised. Try preprocess='copula', a lower lr, "
                f"smile/infonce, or more samples")
    return None


def finish(result: MIResult, n_rows: int, on_failure: str, warn: bool, stacklevel: int = 3) -> MIResult:
    """Diagnose, apply the guards, warn or raise."""
    result.warnings = diagnose(result)
    failure = check_bounds(result, n_rows)
    if failure is not None:
        if on_failure == "raise":
            raise EstimationFailed(f"{result.estimator}: {failure}")
        result.failed, result.failure = True, failure
        result.mi = result.stderr = float("nan")
        result.warnings.insert(0, f"no estimate: {failure}")
    if warn:
        warn_about(result, stacklevel + 1)
    return result


def warn_about(result: MIResult, stacklevel: int) -> None:
    """Issue ``result``'s warnings as ``MIEstimateWarning``, attributed ``stacklevel`` frames above the caller."""
    for message in result.warnings:
        warnings.warn(f"{result.estimator}: {message}", MIEstimateWarning, stacklevel=stacklevel + 1)
