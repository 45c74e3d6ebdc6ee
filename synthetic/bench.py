"""The bias/variance harness: train every estimator on a staircase of known MI and compare it with the truth.

As in Poole et al. (2019, Fig. 2): one estimator per panel, trained continuously while the true MI steps through the
levels, fresh samples every step; each level is summarised by the mean and spread of its last ``window`` steps.

    records, traces = run_bench(BenchConfig(estimators=["infonce", "smile"]))
    write_outputs("out/", records, traces, config)
"""
from __future__ import annotations

import csv
import io
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from mi_toolkit.atomic import write_atomically, write_json_atomically
from mi_toolkit.estimators import (ESTIMATORS, UPPER, ConditionalEstimator, available_estimators,
                                   estimator as build_estimator)
from mi_toolkit.fit import make_adam

from .tasks import CorrelatedGaussian, Staircase, StudentT
from .transforms import JacobianUnavailableError
from mi_toolkit.errors import ArgumentError

DEFAULT_ESTIMATORS = ("infonce", "nwj", "mine", "js", "smile", "ba", "doe", "club", "l1out")
RECORD_FIELDS = ["estimator", "direction", "task", "dim", "batch_size", "true_mi", "mean", "std", "stderr", "bias",
                 "cap", "reference", "seconds_per_step", "steps_per_level", "window", "seed", "diverged"]


@dataclass
class BenchConfig:
    task: str = "gaussian"                 # gaussian | student-t
    dim: int = 20
    levels: list = field(default_factory=lambda: [2.0, 4.0, 6.0, 8.0, 10.0])
    batch_size: int = 64
    steps_per_level: int = 2000
    estimators: list = field(default_factory=lambda: list(DEFAULT_ESTIMATORS))
    seed: int = 0
    lr: float = 5e-4
    critic: str = "separable"
    hidden: int = 256
    layers: int = 2
    embed_dim: int = 32
    transform: str | None = None           # cubic | asinh | half-cube | rotation (gaussian task)
    dof: float = 5.0                       # student-t degrees of freedom
    window: int = 500                      # last steps of each level that are averaged
    threads: int = 1
    grad_clip: float | None = None         # clip the estimator's gradient norm (None: no clipping)

    def validate(self):
        from . import TASKS
        if self.task not in TASKS:
            raise ArgumentError(f"unknown task {self.task!r}; valid tasks: {', '.join(sorted(TASKS))}")
        unknown = [e for e in self.estimators if e not in available_estimators()]
        if unknown or not self.estimators:
            raise ArgumentError(f"unknown estimator(s) {unknown}; valid estimators: {', '.join(available_estimators())}")
        if self.batch_size < 2:
            raise ArgumentError(f"batch_size must be >= 2 (the bounds need negatives), got {self.batch_size}")
        if not 1 <= self.window <= self.steps_per_level:
            raise ArgumentError(f"window must be in [1, steps_per_level={self.steps_per_level}], got {self.window}")
        Staircase(self.levels, self.steps_per_level)  # checks levels and steps
        for mi in self.levels:
            self.make_task(mi)  # checks every level is reachable (e.g. student-t's minimum MI)

    def make_task(self, mi: float):
        if self.task == "gaussian":
            return CorrelatedGaussian(self.dim, mi, transform=self.transform, seed=self.seed)
        return StudentT(self.dim, self.dof, mi=mi)


def known_entropy_y(task) -> float | None:
    """H(Y) of a task that knows it; None for one that does not (no ``entropy_y``, or a transform without a
    Jacobian, which says so by raising)."""
    try:
        return getattr(task, "entropy_y", None)
    except JacobianUnavailableError:
        return None


def build_for_bench(name: str, config: BenchConfig, task):
    """The estimator as the benchmark trains it: the same critic / conditional size for every bound."""
    if issubclass(ESTIMATORS[name][0], ConditionalEstimator):  # a learned q(y|x), not a critic
        kwargs = dict(hidden=config.hidden, layers=config.layers)
        if name == "ba":
            kwargs["entropy_y"] = known_entropy_y(task)  # "given H(Y)" when the task knows it
        return build_estimator(name, task.dim_x, task.dim_y, **kwargs)
    return build_estimator(name, task.dim_x, task.dim_y, critic=config.critic, hidden=config.hidden,
                           layers=config.layers, embed_dim=config.embed_dim)


def _block_stderr(values: np.ndarray, blocks: int = 10) -> float:
    """Standard error from non-overlapping block means (honest under the autocorrelation of a training run)."""
    usable = len(values) // blocks * blocks
    if usable < blocks or blocks < 2:
        return float("nan")
    means = values[:usable].reshape(blocks, -1).mean(1)
    return float(means.std(ddof=1) / math.sqrt(blocks))


def train_on_staircase(name: str, config: BenchConfig, bar=None):
    """Train one estimator through the staircase; returns (per-step estimates, seconds per step, estimator)."""
    staircase = Staircase(config.levels, config.steps_per_level)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed + 1)
    first_task = config.make_task(config.levels[0])
    est = build_for_bench(name, config, first_task)
    optimizer = make_adam(est.parameters(), config.lr)
    trace = np.empty(staircase.total_steps)
    step = 0
    elapsed = 0.0
    for _, task in staircase.tasks(config.make_task):
        start = time.perf_counter()
        for _ in range(config.steps_per_level):
            x, y = task.sample(config.batch_size, generator)
            out = est(x, y)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(est.parameters(), config.grad_clip)
            optimizer.step()
            trace[step] = out.mi.item()
            step += 1
            if bar is not None and step % 50 == 0:
                bar.update(50)
        elapsed += time.perf_counter() - start
    if bar is not None:
        bar.update(step % 50)
    return trace, elapsed / staircase.total_steps, est


def summarise(name: str, trace: np.ndarray, seconds_per_step: float, est, config: BenchConfig) -> list[dict]:
    records = []
    for k, mi in enumerate(config.levels):
        task = config.make_task(mi)
        level = trace[(k + 1) * config.steps_per_level - config.window:(k + 1) * config.steps_per_level]
        mean = float(np.mean(level))
        std = float(np.std(level))
        records.append({
            "estimator": name, "direction": est.direction, "task": task.name, "dim": config.dim,
            "batch_size": config.batch_size, "true_mi": float(task.mi), "mean": mean, "std": std,
            "stderr": _block_stderr(level), "bias": mean - float(task.mi), "cap": est.cap(config.batch_size),
            # what an upper bound converges to with the true conditional (CLUB's closed form), else None
            "reference": getattr(task, "club_with_true_conditional", None) if name in ("club", "club_sample") else None,
            "seconds_per_step": seconds_per_step, "steps_per_level": config.steps_per_level, "window": config.window,
            "seed": config.seed, "diverged": diverged(mean, std, float(task.mi)),
        })
    return records


def diverged(mean: float, std: float, true_mi: float) -> bool:
    """A level whose estimate is not a number to report: NaN/inf, a spread larger than max(5 nats, the truth), or
    an estimate further from the truth than 3x the truth + 2 nats (e.g. JS at 10 nats: mean -55.5, std 852)."""
    return (not (math.isfinite(mean) and math.isfinite(std)) or std > max(5.0, true_mi)
            or abs(mean - true_mi) > 3 * true_mi + 2)


def run_bench(config: BenchConfig, progress: bool = True, *, done: dict | None = None, on_finished=None):
    """Run every estimator of ``config``; returns (records, traces {name: per-step estimates}).

    ``done``: ``{name: (records, trace)}`` of estimators finished earlier (a resumed run skips them);
    ``on_finished(name, records, trace)`` is called as each estimator finishes (to keep it on disk)."""
    config.validate()
    done = done or {}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads if config.threads > 0 else (os.cpu_count() or 1))   # 0: all cores
    records, traces = [], {}
    todo = [name for name in config.estimators if name not in done]
    total = len(todo) * len(config.levels) * config.steps_per_level
    try:
        with tqdm(total=total, desc="bench", unit="step", disable=not progress) as bar:
            for name in config.estimators:
                if name in done:
                    records += done[name][0]
                    traces[name] = done[name][1]
                    continue
                bar.set_postfix_str(name)
                trace, seconds, est = train_on_staircase(name, config, bar)
                traces[name] = trace
                mine = summarise(name, trace, seconds, est, config)
                records += mine
                if on_finished is not None:
                    on_finished(name, mine, trace)
    finally:
        torch.set_num_threads(previous_threads)
    return records, traces


def format_table(records: list[dict]) -> str:
    lines = [f"{'estimator':<12} {'dir':<8} {'true':>6} {'mean':>8} {'std':>7} {'bias':>8} {'ms/step':>8}"]
    for r in records:
        if r.get("diverged"):     # not an ordinary number: say so instead of printing it as one
            lines.append(f"{r['estimator']:<12} {r['direction']:<8} {r['true_mi']:>6.2f} {'DIVERGED':>8} "
                         f"{'-':>7} {'-':>8} {1000 * r['seconds_per_step']:>8.2f}  (mean {r['mean']:.3g}, "
                         f"std {r['std']:.3g}: not an estimate)")
            continue
        lines.append(f"{r['estimator']:<12} {r['direction']:<8} {r['true_mi']:>6.2f} {r['mean']:>8.3f} "
                     f"{r['std']:>7.3f} {r['bias']:>+8.3f} {1000 * r['seconds_per_step']:>8.2f}")
    return "\n".join(lines)


def _ema(values: np.ndarray, rate: float = 0.02, reset_every: int | None = None) -> np.ndarray:
    """Exponential moving average, restarted every ``reset_every`` steps (at each level change of the staircase, so
    the curve follows the level it is on instead of trailing the previous one)."""
    out = np.empty_like(values)
    acc = values[0]
    for i, v in enumerate(values):
        if reset_every and i % reset_every == 0:
            acc = v if np.isfinite(v) else acc
        acc = acc + rate * (v - acc) if np.isfinite(v) else acc
        out[i] = acc
    return out


def plot_bias(traces: dict, config: BenchConfig, path: str, records: list[dict] | None = None) -> None:
    """One panel per estimator: raw per-step estimate, its moving average, the true staircase (and caps)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(traces)
    cols = min(len(names), 5)
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False, sharex=True)
    truth = Staircase(config.levels, config.steps_per_level).true_mi()
    steps = np.arange(len(truth))
    top = max(config.levels)
    for ax, name in zip(axes.flat, names):
        trace = traces[name]
        ax.plot(steps, trace, color="tab:blue", alpha=0.25, lw=0.5)
        ax.plot(steps, _ema(trace, reset_every=config.steps_per_level), color="tab:blue", lw=1.2,
                label="estimate (moving average, per level)")
        ax.plot(steps, truth, color="black", lw=1.2, label="true MI")
        upper_panel = ESTIMATORS[name][0].direction == UPPER
        if name == "infonce":
            ax.axhline(math.log(config.batch_size), color="tab:red", ls="--", lw=0.8, label="log N")
        if records and name in ("club", "club_sample"):
            ref = [r["reference"] for r in records if r["estimator"] == name]
            if ref and ref[0] is not None:
                ax.plot(steps, np.repeat(ref, config.steps_per_level), color="tab:green", ls="--", lw=0.8,
                        label="CLUB closed form")
        finite = trace[np.isfinite(trace)]
        # fixed limits keep the truth readable; divergent dips (NWJ, JS) run off the bottom of the panel
        high = max(top * 1.3, np.percentile(finite, 99.5) * 1.05 if upper_panel and len(finite) else 0)
        ax.set_ylim(-1.0, high)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left")
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    for ax in axes[:, 0]:
        ax.set_ylabel("MI (nats)")
    fig.suptitle(f"{config.task}, dim {config.dim}, batch {config.batch_size}, {config.critic} critic"
                 + (f", {config.transform}" if config.transform else ""), fontsize=9)
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def write_outputs(out_dir: str, records: list[dict], traces: dict, config: BenchConfig) -> dict:
    """DIR/results.json (records), DIR/results.csv, DIR/traces.npz, DIR/config.json and DIR/bias.png, each written
    atomically (a killed run leaves the previous file or the complete new one)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in
             ("results.json", "results.csv", "traces.npz", "config.json", "bias.png")}
    write_json_atomically(paths["results.json"], records)
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=RECORD_FIELDS)
    writer.writeheader()
    writer.writerows(records)
    write_atomically(paths["results.csv"], lambda f: f.write(table.getvalue().encode()))
    write_atomically(paths["traces.npz"], lambda f: np.savez_compressed(f, **traces))
    write_json_atomically(paths["config.json"], asdict(config))
    plot_bias(traces, config, paths["bias.png"], records)
    return paths
