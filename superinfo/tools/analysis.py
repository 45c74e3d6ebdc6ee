"""Reading run folders and plotting what training did (the functions behind notebooks/training_analysis.ipynb).

    from superinfo.tools.analysis import read_run, plot_training_curves, plot_ablation
    run = read_run("runs/c10")            # {"config", "log" (column -> numpy array), "last_log", "eval", ...}
    plot_training_curves([run, "runs/c10-lambda0"], x="epoch", path="curves.png")
    plot_ablation(superinfo.tools.sweep.collect("sweep-dir"), x="lambda_a", path="ablation.png")

Only csv/json/numpy/matplotlib: a run folder is config.json, log.csv (``superinfo.trainer.LOG_COLUMNS``) and, once
evaluated, eval.json.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from mi_toolkit.errors import ArgumentError

__all__ = ["CURVE_PANELS", "FINAL_TERMS", "read_log", "read_run", "run_label", "plot_training_curves", "plot_ablation",
           "plot_final_terms", "plot_bracket", "BRACKET_TERMS"]

# (title, log columns drawn in it): loss terms, the MI estimate, the online probe and the schedule
CURVE_PANELS = (
    ("loss (total objective)", ("loss",)),
    ("contrastive term (NT-Xent / -lower bound)", ("contrastive",)),
    ("I(z1;z2) lower bound [nats]", ("mi_lower",)),
    ("superfluous terms a (solid), b (dashed) [nats]", ("superfluous_a", "superfluous_b")),
    ("online linear probe accuracy; final linear ▲ / kNN ■", ("probe_acc",)),
    ("learning rate", ("lr",)),
)


# (table column, title) of the last-log-row terms compared across runs
FINAL_TERMS = (
    ("mi_lower", "final I(z1;z2) lower bound [nats]"),
    ("superfluous_a", "final superfluous term a [nats]"),
    ("probe_acc", "final online probe accuracy"),
)


def _number(text):
    """A log cell as a float; empty cells (e.g. no probe) are NaN."""
    if text is None or text == "":
        return math.nan
    return float(text)


def read_log(path) -> dict[str, np.ndarray]:
    """log.csv as ``{column: float array}`` (empty cells NaN); ``{}`` when the file does not exist yet."""
    path = Path(path)
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {col: np.array([_number(r.get(col)) for r in rows], dtype=float) for col in rows[0]}


def read_run(run_dir) -> dict:
    """Everything a run folder says: ``config`` (dict), ``log`` (``read_log``), ``last_log`` (the last row, NaN
    cells as None), ``eval`` (eval.json or None), ``lambda_b`` (resolved: None means lambda_a), ``name`` and
    ``run_dir``."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise ArgumentError(f"{run_dir} is not a run folder: it has no config.json")
    config = json.loads(config_path.read_text())
    log = read_log(run_dir / "log.csv")
    last_log = {k: (None if math.isnan(v[-1]) else float(v[-1])) for k, v in log.items()}
    eval_path = run_dir / "eval.json"
    evaluation = json.loads(eval_path.read_text()) if eval_path.exists() else None
    lambda_b = config.get("lambda_b")
    return {"run_dir": str(run_dir), "name": run_dir.name, "config": config, "log": log, "last_log": last_log,
            "eval": evaluation, "lambda_b": config["lambda_a"] if lambda_b is None else lambda_b}


def _fmt(value) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def _numeric(rows, x):
    """The rows whose ``x`` is a number (automatic lambda is drawn apart, as a level)."""
    return [r for r in rows if not isinstance(r[x], str)]


def _auto_level(ax, rows, key, color, label, marker="o") -> None:
    """Automatic lambda's runs as a horizontal band: mean +- std over seeds, at its place right of the grid."""
    auto = [r for r in rows if r["lambda_a"] == "auto" and r.get(key) is not None]
    for r in auto:
        ax.axhline(r[key], color=color, ls=":", lw=1.2, label=f"{label} (auto λ)")
        ax.axhspan(r[key] - (r.get(key + "_std") or 0), r[key] + (r.get(key + "_std") or 0), color=color, alpha=0.08)


def run_label(run: dict) -> str:
    c = run["config"]
    lam = f"λa={_fmt(c['lambda_a'])}" + ("" if run["lambda_b"] == c["lambda_a"] else f" λb={_fmt(run['lambda_b'])}")
    return f"{lam} ep={c['epochs']} seed={c['seed']}"


def _x_values(log: dict, x: str) -> np.ndarray:
    if x == "step":
        return log["step"]
    if x == "epoch":   # fractional epochs: each epoch's last row is written at step epoch * steps_per_epoch
        steps_per_epoch = log["step"][log["epoch"] == log["epoch"].min()].max() / log["epoch"].min()
        return log["step"] / steps_per_epoch
    raise ArgumentError(f"x must be 'step' or 'epoch', got {x!r}")


def _final_top1(run: dict) -> dict:
    results = (run["eval"] or {}).get("results", {})
    return {p: r["top1"] for p, r in results.items() if "top1" in r}


def plot_training_curves(runs, *, x: str = "step", labels=None, path=None, panels=CURVE_PANELS):
    """One panel per entry of ``panels`` (default: loss, contrastive term, I(z1;z2) lower bound, both superfluous
    terms, online probe accuracy with the final linear/kNN top-1 as markers, learning rate), one colour per run.
    ``runs``: run folders or ``read_run`` dicts.  Returns the figure (saved to ``path`` when given)."""
    import matplotlib.pyplot as plt

    runs = [r if isinstance(r, dict) else read_run(r) for r in runs]
    if not runs:
        raise ArgumentError("runs must hold at least one run")
    labels = [run_label(r) for r in runs] if labels is None else list(labels)
    if len(labels) != len(runs):
        raise ArgumentError(f"labels has {len(labels)} entries for {len(runs)} runs")
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False, layout="constrained")
    axes = axes.ravel()
    for i, (run, label) in enumerate(zip(runs, labels)):
        color = f"C{i % 10}"
        log = run["log"]
        if not log:
            continue
        xs = _x_values(log, x)
        for ax, (_, columns) in zip(axes, panels):
            for column, style in zip(columns, ("-", "--")):
                if column in log and not np.all(np.isnan(log[column])):
                    ax.plot(xs, log[column], style, color=color, lw=1.2,
                            label=label if column == columns[0] else None)
            if "probe_acc" in columns:
                for protocol, marker in (("linear", "^"), ("knn", "s")):
                    top1 = _final_top1(run).get(protocol)
                    if top1 is not None:
                        ax.plot([xs[-1]], [top1], marker, color=color, ms=8, mec="k")
    for ax, (title, columns) in zip(axes, panels):
        if any(c.startswith("superfluous") for c in columns):
            ax.set_yscale("symlog", linthresh=1.0)     # the terms span 0 to hundreds of nats across lambdas
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    if path is not None:
        fig.savefig(path, dpi=90)
    return fig


def plot_ablation(table: dict, *, x: str = "lambda_a", protocols=("linear", "knn"), path=None, ax=None):
    """Top-1 against ``x`` (``lambda_a`` or ``epochs``) from a sweep table (``superinfo.tools.sweep.collect``): one line
    per protocol and per value of the other grid axes, mean ± std over seeds as error bars, each seed as a dot.
    Returns the figure (saved to ``path`` when given)."""
    import matplotlib.pyplot as plt

    if x not in ("lambda_a", "epochs"):
        raise ArgumentError(f"x must be 'lambda_a' or 'epochs', got {x!r}")
    summary, runs = table["summary"], table["runs"]
    if not summary:
        raise ArgumentError("the table has no runs")
    tied, group_keys, groups = _grid_groups(summary, x)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    else:
        fig = ax.figure
    styles = {"linear": ("-", "o"), "knn": ("--", "s")}
    for i, group in enumerate(groups):
        color = f"C{i % 10}"
        name = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(group_keys, group))
        grouped = [r for r in summary if tuple(r[k] for k in group_keys) == group]
        rows = sorted(_numeric(grouped, x), key=lambda r: r[x])
        for protocol in protocols:
            key = f"{protocol}_top1"
            shown = [r for r in rows if r[key] is not None]
            if not shown:
                continue
            line, marker = styles.get(protocol, ("-.", "^"))
            ax.errorbar([r[x] for r in shown], [r[key] for r in shown], yerr=[r[key + "_std"] for r in shown],
                        ls=line, marker=marker, color=color, capsize=3, label=f"{protocol}, {name}".rstrip(", "))
            dots = [r for r in _numeric(runs, x) if tuple(r[k] for k in group_keys) == group and r.get(key) is not None]
            ax.plot([r[x] for r in dots], [r[key] for r in dots], marker, color=color, alpha=0.3, ms=4)
            if x == "lambda_a":
                _auto_level(ax, grouped, key, color, f"{protocol}, {name}".rstrip(", "))
    _x_axis(ax, summary, x, tied)
    seeds = max(len(r["seeds"]) for r in summary)
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(f"top-1 against {'λa' if x == 'lambda_a' else 'epochs'} (mean ± std over up to {seeds} seeds; "
                 "dots: single seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if path is not None:
        fig.savefig(path, dpi=90)
    return fig


def _grid_groups(summary: list[dict], x: str):
    """The grid axes other than ``x`` (lambda_b only when it is not tied to lambda_a) and their value tuples."""
    tied = all(r["lambda_b"] == r["lambda_a"] for r in summary)
    keys = [k for k in ("lambda_a", "lambda_b", "epochs") if k != x and not (tied and k == "lambda_b")]
    return tied, keys, sorted({tuple(r[k] for k in keys) for r in summary}, key=lambda g: [str(v) for v in g])


def _x_axis(ax, summary: list[dict], x: str, tied: bool) -> None:
    summary = _numeric(summary, x)
    if x == "lambda_a":
        positive = sorted({r["lambda_a"] for r in summary if r["lambda_a"] > 0})
        ax.set_xscale("symlog", linthresh=positive[0] if positive else 1.0)
        ax.set_xlabel("lambda_a" + (" (= lambda_b)" if tied else ""))
    else:
        ax.set_xlabel("pre-training epochs")
    values = sorted({r[x] for r in summary})
    ax.set_xticks(values, [f"{v:g}" for v in values])     # the grid's own values, not the scale's decades
    ax.minorticks_off()


def plot_final_terms(table: dict, *, x: str = "lambda_a", terms=FINAL_TERMS, path=None):
    """The last log row's terms (default: I(z1;z2) lower bound, superfluous term, online probe accuracy) against
    ``x`` from a sweep table, mean ± std over seeds, one line per value of the other grid axes.  Returns the figure
    (saved to ``path`` when given)."""
    import matplotlib.pyplot as plt

    if x not in ("lambda_a", "epochs"):
        raise ArgumentError(f"x must be 'lambda_a' or 'epochs', got {x!r}")
    summary = table["summary"]
    if not summary:
        raise ArgumentError("the table has no runs")
    tied, keys, groups = _grid_groups(summary, x)
    fig, axes = plt.subplots(1, len(terms), figsize=(5 * len(terms), 3.6), squeeze=False, layout="constrained")
    for ax, (term, title) in zip(axes[0], terms):
        for i, group in enumerate(groups):
            grouped = [r for r in summary if tuple(r[k] for k in keys) == group and r.get(term) is not None]
            rows = sorted(_numeric(grouped, x), key=lambda r: r[x])
            label = ", ".join(f"{k}={_fmt(v)}" for k, v in zip(keys, group)) or None
            if rows:
                ax.errorbar([r[x] for r in rows], [r[term] for r in rows], yerr=[r[term + "_std"] for r in rows],
                            marker="o", color=f"C{i % 10}", capsize=3, label=label)
            if x == "lambda_a":
                _auto_level(ax, grouped, term, f"C{i % 10}", label or term)
        _x_axis(ax, summary, x, tied)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    if keys:
        axes[0][0].legend(fontsize=8)
    if path is not None:
        fig.savefig(path, dpi=90)
    return fig


BRACKET_TERMS = (("superfluous_lower_nats", "superfluous lower bound: I(h; own view's augmentation) [nats]"),
                 ("superfluous_upper_nats_head", "kl upper bound on I(v1;z1|v2), held-out pairs [nats]"))


def plot_bracket(table: dict, *, x: str = "lambda_a", path=None):
    """The superfluous-information bracket (``superinfo probe``: lower bound on the backbone features, the head's
    ``kl`` upper bound) against ``x`` from a sweep table measured with ``--bracket``.  Returns the figure."""
    return plot_final_terms(table, x=x, terms=BRACKET_TERMS, path=path)
