"""Fit an estimator on samples and report an estimate a person can trust: its bound direction, cap, standard error,
held-out value next to the training value, and warnings when something is off.

    result = mi_toolkit.estimate(x, y, "smile")                 # robust defaults (see estimate's docstring)
    result.mi, result.stderr, result.direction, result.heldout_mi, result.train_mi, result.warnings
    mi_toolkit.estimate(x, y, "ksg"); mi_toolkit.estimate(x, y, "gaussian")     # the classical baselines
    mi_toolkit.estimate(x, y, "smile", seeds=5)                 # 5 seeds in one vectorised run; mean and spread

What ``estimate()`` does, in order: per-dimension preprocessing (``preprocess="copula"`` by default: rank-to-normal
scores, which keep the MI and bound heavy tails), a random split into training rows, validation rows (to pick the
checkpoint: early stopping on the held-out objective) and report rows, training (Adam; for wide inputs SGD from
W = 0 on whitened inputs), the report on held-out rows, and the guards: a non-finite estimate, one outside its bound's
range (InfoNCE outside [-log N, log N]), one far below 0 (MI is >= 0) or one beyond what n samples can resolve comes
back as ``nan`` with a ``MIEstimateWarning`` saying what happened and what to try (``on_failure="raise"``: an
``EstimationFailed`` error instead) -- never as a confident number.
"""
from __future__ import annotations

import copy
import inspect
import math
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from .classical import CLASSICAL, classical_estimate
from .errors import ArgumentError, ArgumentTypeError
from .estimators import ESTIMATORS, CriticEstimator, MIEstimator, estimator as build_estimator
from .preprocess import preprocess as apply_preprocess
from .preprocess import whiten as whiten_columns
# the result type and its guards live in .result (the classical, conditional and discrete estimators use them
# too); MIEstimateWarning, check_bounds and diagnose are named here as well, where estimate() users look for them
from .result import (EstimationFailed, MIEstimateWarning, MIResult, check_bounds, diagnose,  # noqa: F401
                     finish, mean_stderr, warn_about)
from .validation import (check_float32_range, check_has_values, check_int, check_number, check_samples, degeneracy,
                         value_checks)


# The defaults, chosen on the task suite (benchmarks/README.md, "estimate() defaults").
DEFAULT_STEPS = 3000         # the most steps; early stopping usually ends sooner
DEFAULT_BATCH_SIZE = 128
DEFAULT_LR = 5e-4
DEFAULT_HIDDEN = 128         # critic / conditional width (estimator() itself defaults to 256)
DEFAULT_EVAL_EVERY = 100     # steps between held-out checks
DEFAULT_PATIENCE = 5         # checks without improvement before stopping
VALIDATION_BATCHES = 8       # batches per held-out check
# Representation-sized inputs (min(dim_x, dim_y) > REPRESENTATION_DIM): an MLP critic memorises the rows and its
# 32-wide embedding cannot express a full-rank dependence, so the critic bounds default to the quadratic critic
# (x^T W y + diagonal quadratic terms: the Gaussian log-ratio family, W starting at 0) on whitened inputs, trained
# with plain SGD (Nesterov momentum) and early stopping checked every 25 steps: on whitened inputs the loss's
# curvature in W is about the identity, so SGD from W = 0 walks the ridge path W(t) ~ (1 - e^{-t lr/(1-m)}) C_hat
# and the held-out check picks its shrinkage (Adam's per-coordinate steps leave that path and fit noise first).
# Figures: benchmarks/README.md, section 7.3.
REPRESENTATION_DIM = 32
REPRESENTATION_DEFAULTS = {"critic": "quadratic", "batch_size": 512, "lr": 3e-4, "optimizer": "sgd",
                           "eval_every": 25, "whiten": True}
SGD_MOMENTUM = 0.9
# ... with lr scaled per bound so every bound walks the path at about the same speed: the curvature of the training
# loss in the scores at 0 is 1 for InfoNCE / DV / MINE, 1/e for NWJ (e^{f - 1}), and at most 1/2 for the JS objective
# SMILE and JS train with (softplus'' = 1/4 on the joint and on the marginal term, falling as the scores grow: x4 was
# needed to reach the held-out optimum at dim 128 within the default 3000 steps, section 7.3).
WIDE_LR_SCALE = {"smile": 4.0, "js": 4.0, "nwj": math.e}

# estimators whose forward has no data-dependent Python control flow or in-place state: vmappable over seeds
VMAP_ESTIMATORS = frozenset({"infonce", "nwj", "dv", "js", "smile", "club", "l1out", "doe"})


def make_optimizer(params, lr: float, kind: str = "adam") -> torch.optim.Optimizer:
    """``"adam"`` (fused where available) or ``"sgd"``: SGD with Nesterov momentum 0.9 (foreach), whose path from
    zero weights is the implicit ridge path that early stopping picks a point on (the wide-input default)."""
    if kind == "sgd":
        return torch.optim.SGD(list(params), lr=lr, momentum=SGD_MOMENTUM, nesterov=True, foreach=True)
    return make_adam(params, lr)


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
             generator: torch.Generator | None = None, what: str = "mi") -> np.ndarray:
    """Per-batch estimates (``what="loss"``: the fitting loss) on disjoint batches of (x, y), with the estimator in
    eval mode (no state updates).  Batches are consecutive rows, or a random order with a ``generator``."""
    was_training = est.training
    est.eval()
    n = x.shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    count = n // batch_size if max_batches is None else min(n // batch_size, max_batches)
    values = [float(getattr(est(x[idx], y[idx]), what)) for idx in order[:count * batch_size].view(count, batch_size)]
    est.train(was_training)
    return np.asarray(values)


# ------------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class FitSettings:
    """The training settings of one ``estimate()`` call, each given or defaulted (``training_defaults``) and checked."""
    critic: str | None = None      # the critic estimate() picks (None: the estimator's own, or the one given)
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LR
    optimizer: str = "adam"        # "adam" or "sgd" (make_optimizer)
    eval_every: int = DEFAULT_EVAL_EVERY
    whiten: bool = False           # ZCA-whiten both inputs after preprocessing
    steps: int = DEFAULT_STEPS
    patience: int = DEFAULT_PATIENCE
    eval_batches: int | None = 200     # report batches (None: every batch)
    heldout_fraction: float = 0.2
    early_stopping: bool = True

    def validation_batch(self, n_val: int) -> int:
        """Batch size of the held-out checks: a validation set smaller than a batch is checked as one batch."""
        return min(self.batch_size, n_val) if n_val else self.batch_size


# the settings estimate() chooses from the estimator and the input width, and training_defaults() reports
DEFAULTED_SETTINGS = ("critic", "batch_size", "lr", "optimizer", "eval_every", "whiten")


def _default_settings(name: str, x_dim: int, y_dim: int, critic: str | None = None) -> FitSettings:
    if (name in ESTIMATORS and issubclass(ESTIMATORS[name][0], CriticEstimator) and critic is None
            and min(x_dim, y_dim) > REPRESENTATION_DIM):
        wide = REPRESENTATION_DEFAULTS
        return FitSettings(critic=wide["critic"], batch_size=wide["batch_size"],
                           lr=wide["lr"] * WIDE_LR_SCALE.get(name, 1.0), optimizer=wide["optimizer"],
                           eval_every=wide["eval_every"], whiten=wide["whiten"])
    return FitSettings()


def training_defaults(name: str, x_dim: int, y_dim: int, critic: str | None = None) -> dict:
    """What ``estimate()`` uses for each setting left at None: batch_size, lr, optimizer, eval_every, whiten, and the
    critic it picks (None: the estimator's own).  Critic bounds on wide inputs (min(x_dim, y_dim) >
    ``REPRESENTATION_DIM``, no ``critic`` given) get ``REPRESENTATION_DEFAULTS``; everything else the defaults
    chosen on the task suite.  The ``mi-toolkit estimate`` CLI checks its rows against these."""
    defaults = _default_settings(name, x_dim, y_dim, critic)
    return {key: getattr(defaults, key) for key in DEFAULTED_SETTINGS}


def _resolve_settings(name: str, x_dim: int, y_dim: int, preprocess, estimator_kwargs: dict, *, steps, batch_size,
                      lr, eval_every, patience, optimizer, whiten, eval_batches, heldout_fraction,
                      early_stopping) -> FitSettings:
    """Fill the settings left at None with their defaults, check every one, and put the critic and width
    ``estimate()`` picks into ``estimator_kwargs``."""
    defaults = _default_settings(name, x_dim, y_dim, critic=estimator_kwargs.get("critic"))
    if defaults.critic is not None:
        estimator_kwargs["critic"] = defaults.critic
    batch_size = defaults.batch_size if batch_size is None else batch_size
    lr = defaults.lr if lr is None else lr
    optimizer = defaults.optimizer if optimizer is None else optimizer
    eval_every = defaults.eval_every if eval_every is None else eval_every
    whiten = defaults.whiten if whiten is None else whiten
    if optimizer not in ("adam", "sgd"):
        raise ArgumentError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if whiten not in (None, True, False):
        raise ArgumentError(f"whiten must be True, False or None, got {whiten!r}")
    batch_size = check_int(batch_size, "batch_size", minimum=2)
    steps = check_int(steps, "steps")
    lr = check_number(lr, "lr", positive=True)
    eval_every = check_int(eval_every, "eval_every")
    patience = check_int(patience, "patience")
    if eval_batches is not None:
        eval_batches = check_int(eval_batches, "eval_batches (None: every batch)")
    if not isinstance(heldout_fraction, (int, float)) or not 0.0 <= heldout_fraction < 1.0:
        raise ArgumentError(f"heldout_fraction must be in [0, 1), got {heldout_fraction!r}")
    if name == "ba" and estimator_kwargs.get("entropy_y") is not None and preprocess is not None:
        raise ArgumentError("entropy_y is H(Y) of the raw y, but preprocess changes H(Y): pass preprocess=None "
                            "with entropy_y")
    estimator_kwargs.setdefault("hidden", DEFAULT_HIDDEN)
    return FitSettings(critic=defaults.critic, batch_size=batch_size, lr=lr, optimizer=optimizer,
                       eval_every=eval_every, whiten=whiten, steps=steps, patience=patience,
                       eval_batches=eval_batches, heldout_fraction=heldout_fraction, early_stopping=early_stopping)


# ------------------------------------------------------------------------------------------------------ training
@dataclass
class _Split:
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    generator: torch.Generator


def _split(n: int, n_val: int, n_test: int, seed: int) -> _Split:
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    return _Split(train=order[n_val + n_test:], val=order[:n_val], test=order[n_val:n_val + n_test],
                  generator=generator)


def _state(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class EarlyStopping:
    """One fit's early stopping: the best held-out loss so far, the (1-based) step and the state it came at, and the
    checks since without improvement.  ``stopped`` once ``patience`` of those in a row, or when the fit diverged."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best_loss = math.inf
        self.best_step: int | None = None
        self.best_state: dict | None = None
        self.checks_without_improvement = 0
        self.stopped = False

    def check(self, loss: float, step: int, state=None) -> bool:
        """Record the held-out ``loss`` after ``step`` steps; True when it is a new best (then ``state()``, when
        given, is kept as the best state)."""
        if loss < self.best_loss:
            self.best_loss, self.best_step, self.checks_without_improvement = loss, step, 0
            if state is not None:
                self.best_state = state()
            return True
        self.checks_without_improvement += 1
        if self.checks_without_improvement >= self.patience:
            self.stopped = True
        return False

    def stop(self) -> None:
        """The fit diverged: stop, keeping the best checkpoint so far (if any)."""
        self.stopped = True


@dataclass
class _Trained:
    history: np.ndarray        # the per-step training estimate
    best_step: int | None      # the checkpoint loaded (None: the final state)
    steps_run: int


def _train_one(est, x, y, split: _Split, settings: FitSettings, progress: bool, name: str) -> _Trained:
    """Train one estimator, then load its best held-out checkpoint."""
    x_train, y_train = x[split.train], y[split.train]
    x_val, y_val = x[split.val], y[split.val]
    early = len(split.val) >= 2
    val_batch = settings.validation_batch(len(split.val))
    optimizer = make_optimizer(est.parameters(), settings.lr, settings.optimizer)
    history = []
    stopping = EarlyStopping(settings.patience)
    batches = _batches(x_train.shape[0], settings.batch_size, split.generator)
    for step in tqdm(range(settings.steps), desc=f"fitting {name}", disable=not progress):
        idx = next(batches)
        out = est(x_train[idx], y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        value = float(out.mi.detach())
        history.append(value)
        if not (math.isfinite(value) and math.isfinite(float(out.loss.detach()))):
            break   # diverged: keep the best checkpoint so far (if any)
        if early and (step + 1) % settings.eval_every == 0:
            loss = float(np.mean(evaluate(est, x_val, y_val, val_batch, VALIDATION_BATCHES, what="loss")))
            stopping.check(loss, step + 1, state=lambda: _state(est))
            if stopping.stopped:
                break
    if stopping.best_state is not None:
        est.load_state_dict(stopping.best_state)
    return _Trained(np.asarray(history), stopping.best_step, len(history))


def _train_vmapped(ests, x, y, splits: list[_Split], settings: FitSettings) -> list[_Trained]:
    """Train S estimators of one kind as one stacked model (torch.func: stack_module_state + vmap + one Adam over
    the stacked parameters, which is exactly S independent Adams: the update is elementwise).  Each seed keeps its
    own split, batch order and early stopping; a stopped seed's best checkpoint is frozen, so every seed ends where
    its own single run would.  Loads each seed's best checkpoint into ``ests[s]``."""
    from torch.func import functional_call, stack_module_state, vmap

    S = len(ests)
    params, buffers = stack_module_state(ests)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    base = copy.deepcopy(ests[0])

    def forward(p, b, xb, yb):
        out = functional_call(base, (p, b), (xb, yb))
        return out.mi, out.loss

    batched = vmap(forward, randomness="error")
    x_train = torch.stack([x[s.train] for s in splits])
    y_train = torch.stack([y[s.train] for s in splits])
    x_val = torch.stack([x[s.val] for s in splits])
    y_val = torch.stack([y[s.val] for s in splits])
    early = x_val.shape[1] >= 2
    val_batch = settings.validation_batch(x_val.shape[1])
    n_val_batches = min(x_val.shape[1] // val_batch, VALIDATION_BATCHES) if early else 0
    optimizer = make_optimizer(params.values(), settings.lr, settings.optimizer)
    iters = [_batches(x_train.shape[1], settings.batch_size, s.generator) for s in splits]
    histories = [[] for _ in range(S)]
    # the best states live stacked in best / best_buffers (one slice a seed), not in each record's best_state
    stopping = [EarlyStopping(settings.patience) for _ in range(S)]
    best = {k: v.detach().clone() for k, v in params.items()}
    best_buffers = {k: v.clone() for k, v in buffers.items()}
    rows = torch.arange(S)[:, None]
    for step in range(settings.steps):
        idx = torch.stack([next(it) for it in iters])
        mi, loss = batched(params, buffers, x_train[rows, idx], y_train[rows, idx])
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        mi_values, loss_values = mi.detach().tolist(), loss.detach().tolist()
        for s, record in enumerate(stopping):
            if not record.stopped:
                histories[s].append(mi_values[s])
                if not (math.isfinite(mi_values[s]) and math.isfinite(loss_values[s])):
                    record.stop()
        if early and (step + 1) % settings.eval_every == 0:
            base.eval()
            with torch.no_grad():
                val = torch.stack([batched(params, buffers, x_val[:, j * val_batch:(j + 1) * val_batch],
                                           y_val[:, j * val_batch:(j + 1) * val_batch])[1]
                                   for j in range(n_val_batches)]).double().mean(0).tolist()
            base.train()
            improved = torch.zeros(S, dtype=torch.bool)
            for s, record in enumerate(stopping):
                if not record.stopped:
                    improved[s] = record.check(val[s], step + 1)
            if improved.any():
                for k, v in params.items():
                    best[k] = torch.where(improved.to(v.device).view(-1, *[1] * (v.dim() - 1)), v.detach(),
                                          best[k])
                for k, v in buffers.items():
                    best_buffers[k] = torch.where(improved.to(v.device).view(-1, *[1] * (v.dim() - 1)), v,
                                                  best_buffers[k])
        if all(record.stopped for record in stopping):
            break
    final = {k: v.detach() for k, v in params.items()}
    out = []
    for s, (est, record) in enumerate(zip(ests, stopping)):
        checked = record.best_step is not None
        source, source_buffers = (best, best_buffers) if checked else (final, buffers)
        state = {k: source[k][s] for k in params}
        state.update({k: source_buffers[k][s] for k in buffers})
        est.load_state_dict(state)
        out.append(_Trained(np.asarray(histories[s]), record.best_step, len(histories[s])))
    return out


@contextmanager
def input_checks_off(ests):
    """Switch off the estimators' per-call input checks for the block (vmap cannot trace their value reads), and
    back on however the block ends."""
    previous = [e.validate for e in ests]
    for e in ests:
        e.validate = False
    try:
        yield
    finally:
        for e, validate in zip(ests, previous):
            e.validate = validate


def _fit(name: str, ests, x, y, splits: list[_Split], settings: FitSettings, vectorize: bool,
         progress: bool) -> list[_Trained]:
    """Train each seed's estimator: as one vectorised model where it can be, else one after another."""
    if len(ests) > 1 and vectorize and name in VMAP_ESTIMATORS:
        with input_checks_off(ests):
            return _train_vmapped(ests, x, y, splits, settings)
    return [_train_one(e, x, y, sp, settings, progress, name) for e, sp in zip(ests, splits)]


def _seeded_estimator(name: str, x_dim: int, y_dim: int, seed: int, estimator_kwargs: dict,
                      device=None) -> MIEstimator:
    torch.manual_seed(seed)   # the estimator's initial weights (drawn on the CPU, then moved: the same on any device)
    est = build_estimator(name, x_dim, y_dim, **estimator_kwargs)
    return est if device is None else est.to(device)


def _prepare(x, y, preprocess: str | None, whiten: bool):
    x, y = apply_preprocess(x, preprocess), apply_preprocess(y, preprocess)
    if whiten:
        x, y = whiten_columns(x), whiten_columns(y)
    return x, y


def _sizes(n: int, settings: FitSettings):
    """(n_val, n_test) rows: the report needs one batch; validation takes half the held-out rows when it can."""
    batch_size, heldout_fraction = settings.batch_size, settings.heldout_fraction
    n_heldout = int(round(n * heldout_fraction))
    n_val = min(n_heldout // 2, n_heldout - batch_size) if settings.early_stopping else 0
    if n_val < 2:
        n_val = 0
    n_test = n_heldout - n_val
    if n - n_heldout < batch_size or (n_heldout and n_test < batch_size):
        raise ArgumentError(f"batch_size={batch_size} needs at least {batch_size} training and "
                            f"{batch_size if n_heldout else 0} held-out rows; got {n} rows with heldout_fraction="
                            f"{heldout_fraction} ({n - n_heldout} train, {n_heldout} held out)")
    return n_val, n_test


# On a small data set a default batch size is adapted down, but to no less than 1/ADAPT_LIMIT of itself (16 for the
# standard 128, 64 for the wide-input 512): further down the defaults' tuning (lr, steps, caps) no longer carries
ADAPT_LIMIT = 8


def _min_adapted(default: int) -> int:
    return max(2, default // ADAPT_LIMIT)


def _fits(n: int, settings: FitSettings) -> bool:
    try:
        _sizes(n, settings)
    except ArgumentError:
        return False
    return True


def adapted_batch_size(n: int, default: int, heldout_fraction: float = 0.2, early_stopping: bool = True) -> int | None:
    """The batch size ``estimate()`` uses on ``n`` rows when the user gave none: the ``default`` when the rows hold
    it (then nothing changes), else the largest batch >= default / ``ADAPT_LIMIT`` that leaves a training, a
    validation and a report batch (a training and a report batch without early stopping); None when not even that
    fits."""
    settings = FitSettings(batch_size=default, heldout_fraction=heldout_fraction, early_stopping=early_stopping)
    if _fits(n, settings):
        return default
    fitting = [b for b in range(default - 1, _min_adapted(default) - 1, -1)
               if _fits(n, replace(settings, batch_size=b))]
    # with early stopping, only a batch that leaves validation its half of the held-out rows (a few validation
    # rows would stop training at random, none would silently switch early stopping off)
    n_heldout = int(round(n * heldout_fraction))
    if early_stopping and n_heldout:
        fitting = [b for b in fitting if _sizes(n, replace(settings, batch_size=b))[0] == n_heldout // 2 > 0]
    return fitting[0] if fitting else None


def _batch_for_rows(n: int, settings: FitSettings, given: bool) -> tuple[FitSettings, list[str]]:
    """A batch size the user gave is kept (and ``_sizes`` refuses it if the rows cannot hold it); a default one is
    adapted to a small data set, with a note saying so."""
    if given or _fits(n, settings):
        return settings, []
    b = adapted_batch_size(n, settings.batch_size, settings.heldout_fraction, settings.early_stopping)
    if b is None:
        try:
            _sizes(n, settings)
        except ArgumentError as err:
            raise ArgumentError(f"{err}; the default batch size adapts to small data sets, but not below "
                                f"{_min_adapted(settings.batch_size)} rows a batch (1/{ADAPT_LIMIT} of it), and these "
                                f"rows leave fewer: use more rows or "
                                f"pass batch_size (and heldout_fraction) yourself") from None
    adapted = replace(settings, batch_size=b)
    leaves = "a training, a validation and a report batch" if _sizes(n, adapted)[0] else \
        "a training and a report batch"
    note = (f"batch_size was not given and the default {settings.batch_size} needs more rows than the {n} here: "
            f"using batch_size={b} (the largest that leaves {leaves}); a smaller batch lowers the cap of the "
            f"contrastive bounds (log N) and makes the steps noisier; pass batch_size to choose")
    if _sizes(n, adapted)[1] < 2 * b:
        note += "; the report rows hold one batch, so the estimate has no standard error (nan)"
    return adapted, [note]


def _report(est, name: str, x, y, split: _Split, trained: _Trained, settings: FitSettings, seed: int,
            prep: str | None) -> MIResult:
    batch_size, eval_batches = settings.batch_size, settings.eval_batches
    x_train, y_train = x[split.train], y[split.train]
    train_values = evaluate(est, x_train, y_train, batch_size, eval_batches)
    train_mi, train_se, train_std = mean_stderr(train_values)
    heldout_mi = heldout_se = None
    std, n_eval = train_std, len(train_values)
    if len(split.test):
        heldout_values = evaluate(est, x[split.test], y[split.test], batch_size, eval_batches)
        heldout_mi, heldout_se, std = mean_stderr(heldout_values)
        n_eval = len(heldout_values)
        # the train estimate uses as many batches as the held-out one, so their standard errors compare
        train_mi, train_se, train_std = mean_stderr(train_values[:len(heldout_values)])
    return MIResult(
        estimator=name, mi=heldout_mi if heldout_mi is not None else train_mi,
        stderr=heldout_se if heldout_se is not None else train_se, std=std, direction=est.direction,
        cap=est.cap(batch_size), batch_size=batch_size, steps=settings.steps, train_mi=train_mi,
        train_stderr=train_se, heldout_mi=heldout_mi, heldout_stderr=heldout_se, n_eval_batches=n_eval,
        history=trained.history, preprocess=prep, best_step=trained.best_step, steps_run=trained.steps_run,
        seed=seed, estimator_module=est)


def _combine_seeds(results: list[MIResult], name: str) -> MIResult:
    """One result from S per-seed results: mean over the seeds that did not fail, stderr = their std / sqrt(S)."""
    ok = [r for r in results if not r.failed]
    first = results[0]
    values = np.array([r.mi for r in ok])
    mean = float(values.mean()) if len(ok) else float("nan")
    spread = float(values.std(ddof=1)) if len(ok) > 1 else float("nan")

    def avg(attr):
        vals = [getattr(r, attr) for r in ok if getattr(r, attr) is not None]
        return float(np.mean(vals)) if vals else None

    combined = MIResult(
        estimator=name, mi=mean, stderr=spread / math.sqrt(len(ok)) if len(ok) > 1 else float("nan"),
        std=avg("std") if ok else float("nan"), direction=first.direction, cap=first.cap,
        batch_size=first.batch_size, steps=first.steps, train_mi=avg("train_mi") if ok else float("nan"),
        train_stderr=avg("train_stderr") if ok else float("nan"), heldout_mi=avg("heldout_mi"),
        heldout_stderr=avg("heldout_stderr"), n_eval_batches=first.n_eval_batches,
        history=np.asarray(first.history), preprocess=first.preprocess, best_step=first.best_step,
        steps_run=first.steps_run, seed=first.seed,
        per_seed=[{"seed": r.seed, "mi": r.mi, "stderr": r.stderr, "train_mi": r.train_mi, "failed": r.failed,
                   "failure": r.failure, "best_step": r.best_step, "steps_run": r.steps_run} for r in results])
    failed = [r for r in results if r.failed]
    if failed and ok:
        combined.warnings.append(f"{len(failed)} of {len(results)} seeds failed and are left out of the mean "
                                 f"({failed[0].failure})")
    if not ok:
        combined.failed, combined.failure = True, f"every seed failed; seed {first.seed}: {first.failure}"
    combined.estimator_modules = [r.estimator_module for r in results]
    return combined


DISCRETE_ESTIMATORS = ("plugin",)   # estimate(x, y, "plugin"): two discrete variables (mi_toolkit.discrete)


def _check_choices(name, on_failure: str, preprocess) -> None:
    if not isinstance(name, str) or (name not in ESTIMATORS and name not in CLASSICAL
                                     and name not in DISCRETE_ESTIMATORS):
        valid = ", ".join(sorted(set(ESTIMATORS) | set(CLASSICAL) | set(DISCRETE_ESTIMATORS)))
        raise ArgumentError(f"unknown estimator {name!r}; valid estimators: {valid}")
    if on_failure not in ("warn", "raise"):
        raise ArgumentError(f"on_failure must be 'warn' or 'raise', got {on_failure!r}")
    if preprocess not in ("copula", "standardize", None):
        raise ArgumentError(f"preprocess must be 'copula', 'standardize' or None, got {preprocess!r}")


# estimate()'s training settings and their defaults: the classical, conditional and discrete estimators train
# nothing, so a value other than the default there would be silently ignored
TRAINING_ARGUMENTS = {"steps": DEFAULT_STEPS, "batch_size": None, "lr": None, "heldout_fraction": 0.2,
                      "eval_batches": 200, "early_stopping": True, "eval_every": None, "patience": DEFAULT_PATIENCE,
                      "optimizer": None, "whiten": None, "vectorize": True}
EARLY_STOPPING_ARGUMENTS = {"patience": DEFAULT_PATIENCE, "eval_every": None}


def _untrained_kind(name: str, z, discrete_x, discrete_y) -> str | None:
    """What an estimate that trains nothing computes (None: a trained estimator)."""
    if z is not None:
        return "the conditional MI from neighbour counts or the covariance on all rows"
    if name == "plugin" or (discrete_x is True and discrete_y is True):
        return "the plug-in MI of the joint table"
    if discrete_x is True or discrete_y is True:
        return "the mixed k-NN estimate on all rows"
    if name == "ksg":
        return "a k-NN estimate on all rows"
    if name == "gaussian":
        return "a closed form on the sample covariance"
    return None


def _same(a, b) -> bool:
    return a is b or (type(a) is type(b) and a == b)


def check_arguments_used(name: str, given: dict, *, untrained: str | None, flags: dict | None = None) -> None:
    """Refuse the arguments a path of ``estimate()`` would silently ignore, naming the argument and the estimator:
    every training setting (``TRAINING_ARGUMENTS`` away from its default) and ``seeds`` > 1 where nothing is
    trained (``untrained`` says what is computed instead), and the early-stopping settings where early stopping is
    off.  ``flags`` maps an argument to how the caller spells it (the CLI: ``--steps``)."""
    def spell(arg, value):
        return flags[arg] + f" {value}" if flags and arg in flags else f"{arg}={value!r}"
    if untrained is not None:
        seeds = given.get("seeds")
        if seeds is not None and not isinstance(seeds, bool) and isinstance(seeds, (int, np.integer)) and seeds > 1:
            raise ArgumentError(f"{spell('seeds', seeds)}: {name!r} has no training and no random initialisation "
                                f"(it computes {untrained}), so every seed would give the same estimate; drop it "
                                f"(the standard error comes from the subsamples= random halves, seed= picks them)")
        for arg, default in TRAINING_ARGUMENTS.items():
            if arg in given and not _same(given[arg], default):
                raise ArgumentError(f"{spell(arg, given[arg])} is a training setting, but {name!r} trains nothing "
                                    f"(it computes {untrained}): it would be ignored; drop it")
        return
    early = given.get("early_stopping", True)
    heldout = given.get("heldout_fraction", 0.2)
    if early is False or heldout == 0:
        why = "early_stopping=False switches early stopping off" if early is False else \
            "heldout_fraction=0 leaves no validation rows, so there is no early stopping"
        for arg, default in EARLY_STOPPING_ARGUMENTS.items():
            if arg in given and not _same(given[arg], default):
                raise ArgumentError(f"{spell(arg, given[arg])} sets early stopping, but {why}: it would be ignored; "
                                    f"drop it")


def _init_parameters(cls) -> set[str]:
    """The keyword options an estimator class's constructors name (its own and its bases')."""
    names = set()
    for klass in cls.__mro__:
        if klass is MIEstimator or not issubclass(klass, MIEstimator) or "__init__" not in vars(klass):
            continue
        for p in inspect.signature(vars(klass)["__init__"]).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.add(p.name)
    return names - {"self", "name", "x_dim", "y_dim"}


def check_estimator_options(name: str, options: dict) -> None:
    """An option that other estimators take but ``name`` does not (``conditional=`` on a critic bound, ``clip=`` on
    InfoNCE) is refused by naming the estimators it applies to, before anything is built (an option no estimator
    names is left to the constructor's own check)."""
    own = _init_parameters(ESTIMATORS[name][0])
    for option in options:
        if option in own:
            continue
        owners = sorted(n for n, (cls, _) in ESTIMATORS.items() if option in _init_parameters(cls))
        if owners:
            kind = ("a critic bound" if issubclass(ESTIMATORS[name][0], CriticEstimator)
                    else "a conditional (q(y|x)) estimator")
            raise ArgumentTypeError(f"estimator {name!r} got an unsupported argument: {option}= applies to "
                                    f"{', '.join(owners)} only; {name} is {kind} (its options: "
                                    f"{', '.join(sorted(own - {'validate'}))})")


def _guard(results: list[MIResult], name: str, n_rows: int, on_failure: str) -> MIResult:
    """Diagnose and guard each seed's result; with several seeds, the one result that combines them."""
    if len(results) == 1:
        return finish(results[0], n_rows, on_failure, warn=False)
    # a failed seed is left out of the mean, not raised: only a combination that failed as a whole raises
    results = [finish(r, n_rows, "warn", warn=False) for r in results]
    combined = _combine_seeds(results, name)
    if combined.failed and on_failure == "raise":
        raise EstimationFailed(f"{name}: {combined.failure}")
    if combined.failed:
        combined.warnings.insert(0, f"no estimate: {combined.failure}")
    return combined


def estimate(x, y, name: str = "smile", *, steps: int = DEFAULT_STEPS, batch_size: int | None = None,
             lr: float | None = None, preprocess: str | None = "copula", heldout_fraction: float = 0.2,
             eval_batches: int | None = 200, early_stopping: bool = True, eval_every: int | None = None,
             patience: int = DEFAULT_PATIENCE, optimizer: str | None = None, whiten: bool | None = None,
             seed: int = 0, seeds: int | None = None, vectorize: bool = True,
             on_failure: str = "warn", progress: bool = False, warn: bool = True, z=None, discrete_x: bool = False,
             discrete_y: bool = False, device=None, **estimator_kwargs) -> MIResult:
    """Fit estimator ``name`` on paired samples x [n, dx], y [n, dy] (tensors or arrays) and report it.

    * ``preprocess``: ``"copula"`` (default; per-dimension normal scores: keeps the MI, bounds heavy tails),
      ``"standardize"`` or None (``mi_toolkit.preprocess``).  Inputs that require grad are detached: this measures
      the data, it does not train whatever produced it.
    * A ``heldout_fraction`` of the rows is kept out of training.  With ``early_stopping`` half of it (at most all
      but one batch) is validation: every ``eval_every`` steps the held-out objective (the estimate itself for the
      critic bounds, the negative log-likelihood of q for the conditional ones) is measured, the best checkpoint is
      kept, and training stops after ``patience`` checks without improvement (or at ``steps``).  ``result.mi`` is
      the estimate on the other held-out rows (the report rows), averaged over up to ``eval_batches`` disjoint
      batches of ``batch_size``; ``result.train_mi`` the same on the training rows.
    * ``seeds=S``: seeds ``seed .. seed+S-1`` (initial weights, split, batch order), trained as one vectorised model
      (torch.func vmap over stacked weights; a plain loop for ba, mine, club_sample, whose forward has state or
      Python control flow).  ``result.mi`` is the mean over seeds, ``result.stderr`` their std / sqrt(S),
      ``result.per_seed`` each seed's figures.
    * ``name`` may be a classical estimator, ``ksg`` (``k=3``, ``variant=1|2``) or ``gaussian``: no training, the
      estimate on all rows, the standard error from ``subsamples`` (default 10) random halves.  ``ksg`` refuses
      (nan and the reason) a variable with more than 10% of its rows tied: discrete data.
    * ``z=`` (ksg or gaussian): the conditional MI I(X;Y|Z) (``mi_toolkit.estimate_cmi``: KSG-CMI).
    * Discrete variables (1-D or [n, d], integer / bool / repeating values): ``discrete_x=True`` or
      ``discrete_y=True`` with ``ksg`` runs the Ross (2014) mixed k-NN estimator; both, or ``name="plugin"``, the
      plug-in MI of the joint table (``miller_madow=True`` for the bias correction); ``mi_toolkit.estimate_discrete``.
    * ``device``: where the inputs and the estimator's module go together (None: the CPU, as always; "cuda"...).
      The classical estimators always compute on the CPU.  Meta tensors are refused (they hold no values).
    * Guards: a non-finite estimate, InfoNCE outside [-log N, log N], an estimate far below 0 or above
      2 log(n rows) is a failed fit: ``nan`` and a ``MIEstimateWarning`` (``on_failure="raise"``:
      ``EstimationFailed``).
    * Defaults (None: chosen here): batch 128, lr 5e-4, Adam, width 128, ``eval_every`` 100.  For
      representation-sized inputs (min(dim_x, dim_y) > 32) the critic bounds use the quadratic critic from W = 0 on
      whitened inputs (``whiten``: ZCA after ``preprocess``), ``optimizer="sgd"`` (Nesterov momentum 0.9: the ridge
      path, early stopping picks the shrinkage), batch 512, lr 3e-4 (x4 for smile/js, x e for nwj), ``eval_every``
      25 -- each unless given (``critic`` given: none of these).
      A default batch size (``batch_size`` not given) that the rows cannot hold is adapted down to the largest that
      leaves a training, a validation and a report batch (to no less than 1/8 of it), with a note in
      ``result.warnings``; a ``batch_size`` given is kept, and refused when the rows cannot hold it.
    * Nothing is ignored or silently degenerate: arguments a path would not use (training settings or ``seeds`` > 1
      for ksg / gaussian / plugin / ``z=`` / discrete, ``patience`` without early stopping, ``conditional=`` on a
      critic bound) are refused by name; ragged, complex or float32-overflowing input is refused by name; x equal
      to y (or a column of each) -- infinite MI for continuous variables -- and duplicate rows for the k-NN
      estimators give no number but the reason (``mi_toolkit.validation.degeneracy``).
    Extra keyword arguments go to ``mi_toolkit.estimator`` (critic, hidden [default 128 here], clip, entropy_y, ...).
    """
    # the arguments first, then the data, then the estimator's own options, and only then whether the data is
    # large enough for them (so a misspelt name is reported as such, whatever the data)
    _check_choices(name, on_failure, preprocess)
    seed = check_int(seed, "seed", minimum=0)
    n_seeds = 1 if seeds is None else check_int(seeds, "seeds")
    check_arguments_used(name, dict(steps=steps, batch_size=batch_size, lr=lr, heldout_fraction=heldout_fraction,
                                    eval_batches=eval_batches, early_stopping=early_stopping, eval_every=eval_every,
                                    patience=patience, optimizer=optimizer, whiten=whiten, vectorize=vectorize,
                                    seeds=seeds),
                         untrained=_untrained_kind(name, z, discrete_x, discrete_y))
    device = _check_device(device, x, y, z)
    routed = _route(x, y, name, z, discrete_x, discrete_y, preprocess, seed, on_failure, warn, estimator_kwargs)
    if routed is not None:
        return routed
    x, y = check_samples(x, y, min_batch=2)
    check_float32_range(x, "x")
    check_float32_range(y, "y")
    x, y = x.detach().float().to(device), y.detach().float().to(device)
    if name in CLASSICAL:
        return _estimate_classical(x, y, name, preprocess, seed, n_seeds, on_failure, warn, estimator_kwargs)

    check_estimator_options(name, estimator_kwargs)
    settings = _resolve_settings(
        name, x.shape[1], y.shape[1], preprocess, estimator_kwargs, steps=steps, batch_size=batch_size, lr=lr,
        eval_every=eval_every, patience=patience, optimizer=optimizer, whiten=whiten, eval_batches=eval_batches,
        heldout_fraction=heldout_fraction, early_stopping=early_stopping)
    seed_list = [seed + i for i in range(n_seeds)]
    ests = [_seeded_estimator(name, x.shape[1], y.shape[1], seed, estimator_kwargs, device)]   # checks the options
    n = x.shape[0]
    settings, notes = _batch_for_rows(n, settings, given=batch_size is not None)
    n_val, n_test = _sizes(n, settings)
    refused, data_notes = degeneracy(x.cpu().numpy(), y.cpu().numpy(), name, knn=False)
    if refused is not None:
        from .conditional import _result
        result = _result(name, math.nan, math.nan, [], n, preprocess, seed, on_failure, False, refused, stacklevel=2)
        result.direction, result.batch_size, result.steps = ESTIMATORS[name][0].direction, settings.batch_size, 0
        if warn:
            warn_about(result, stacklevel=2)
        return result
    notes += data_notes
    x, y = _prepare(x, y, preprocess, settings.whiten)
    splits = [_split(n, n_val, n_test, s) for s in seed_list]
    ests += [_seeded_estimator(name, x.shape[1], y.shape[1], s, estimator_kwargs, device) for s in seed_list[1:]]
    with value_checks(False):   # the data was checked once; a diverging critic is caught by the guards
        trained = _fit(name, ests, x, y, splits, settings, vectorize, progress)
        results = [_report(e, name, x, y, sp, t, settings, s, preprocess)
                   for e, sp, t, s in zip(ests, splits, trained, seed_list)]
    result = _guard(results, name, n, on_failure)
    result.warnings.extend(notes)
    if warn:
        warn_about(result, stacklevel=2)
    return result


def _estimate_classical(x, y, name, preprocess, seed, n_seeds, on_failure, warn, kwargs) -> MIResult:
    subsamples = kwargs.pop("subsamples", 10)
    from .conditional import _result, _tie_refusal
    raw_x, raw_y = x.cpu().numpy(), y.cpu().numpy()
    refused, notes = degeneracy(raw_x, raw_y, name, knn=name == "ksg")
    if refused is None and name == "ksg":
        refused, tie_notes = _tie_refusal("ksg", {"x": raw_x, "y": raw_y})
        notes += tie_notes
    if refused is not None:
        return _result(name, math.nan, math.nan, [], x.shape[0], preprocess, seed, on_failure, warn, refused,
                       stacklevel=3)
    x, y = apply_preprocess(x, preprocess), apply_preprocess(y, preprocess)
    n = x.shape[0]
    value, stderr, halves = classical_estimate(name, x.cpu().numpy(), y.cpu().numpy(), subsamples=subsamples,
                                               seed=seed, **kwargs)
    result = MIResult(estimator=name, mi=value, stderr=stderr, std=float(np.std(halves)) if len(halves) else
                      float("nan"), direction=CLASSICAL[name].direction, cap=None, batch_size=n, steps=0,
                      train_mi=value, train_stderr=stderr, heldout_mi=None, heldout_stderr=None,
                      n_eval_batches=len(halves), history=np.zeros(0), preprocess=preprocess, seed=seed)
    if notes:
        result = finish(result, n, on_failure, warn=False)
        result.warnings.extend(notes)
        if warn:
            warn_about(result, stacklevel=3)
        return result
    return finish(result, n, on_failure, warn, stacklevel=3)


def _check_device(device, *tensors):
    """The device estimate() puts the inputs and the estimator on (None: the CPU, today's behaviour); meta tensors
    and the meta device are refused: they hold shapes, not values."""
    for which, t in zip(("x", "y", "z"), tensors):
        check_has_values(t, which)
    if device is None:
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ArgumentError(f"device must be a torch device or its name ('cpu', 'cuda', 'cuda:1', ...), got "
                            f"{device!r}") from error
    if device.type == "meta":
        raise ArgumentError("device='meta' holds no values to estimate from: use 'cpu' or an accelerator")
    return device


def _route(x, y, name, z, discrete_x, discrete_y, preprocess, seed, on_failure, warn, kwargs):
    """The conditional and discrete estimates (mi_toolkit.conditional); None for everything else."""
    from .validation import check_bool
    discrete_x, discrete_y = check_bool(discrete_x, "discrete_x"), check_bool(discrete_y, "discrete_y")
    if z is None and not (discrete_x or discrete_y) and name not in DISCRETE_ESTIMATORS:
        return None
    from .conditional import estimate_cmi, estimate_discrete
    if z is not None:
        if discrete_x or discrete_y or name not in CLASSICAL:
            raise ArgumentError(f"z= (conditional MI) is available for continuous x, y, z with ksg or gaussian, not "
                                f"{name!r}{' with discrete_x/discrete_y' if discrete_x or discrete_y else ''}")
        return estimate_cmi(x, y, z, name, preprocess=preprocess, seed=seed, on_failure=on_failure, warn=warn,
                            _stacklevel=4, **kwargs)
    if name == "plugin":
        discrete_x = discrete_y = True
    elif name != "ksg":
        raise ArgumentError(f"discrete_x / discrete_y work with ksg (one discrete variable: the Ross 2014 mixed "
                            f"k-NN estimator; both: the plug-in) or name='plugin', not {name!r}")
    return estimate_discrete(x, y, discrete_x=discrete_x, discrete_y=discrete_y, preprocess=preprocess, seed=seed,
                             on_failure=on_failure, warn=warn, _stacklevel=4, **kwargs)
