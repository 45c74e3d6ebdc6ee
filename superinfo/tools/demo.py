"""The embedded default: the untrained network, SimCLR and SuperInfo with automatic lambda side by side on
scikit-learn's digits, on a CPU, in minutes.

    superinfo demo --out DIR [--seeds 0,1,2] [--lambda auto] [--epochs N] [--no-bracket]

For every seed it evaluates the network as initialised (the same init both methods start from), then pre-trains it
with SimCLR (NT-Xent alone) and with SuperInfo, and evaluates each with the linear and the kNN protocol on frozen
backbone features.  Beside the accuracies stands the superfluous-information bracket of each (``superinfo probe``):
a lower bound I(h; own view's augmentation) on the backbone features, and the head's ``kl`` upper bound, both on
held-out views.  A logistic regression and a kNN on the raw 64 pixels of the same split are the reference row.
DIR/eval.json holds every run, the per-method mean and std over seeds, each trained method's gain over the
untrained network, and the reference; DIR/demo.png plots them.  Each run keeps its own folder
(DIR/<method>-seed<S>); rerunning skips finished work and resumes interrupted runs (the same ``run_point`` as the
sweep).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from mi_toolkit.atomic import write_json_atomically

from .. import data
from ..lambdas import AUTO
from ..trainer.config import preset_config
from ..trainer.evaluate import PROTOCOLS, evaluate_model, knn_top1
from ..trainer.loop import seed_everything
from ..trainer.models import build_model
from .probe import BRACKET_COLUMNS, BRACKET_SETTINGS
from .sweep import mean_std, run_point, run_record

__all__ = ["DEFAULT_LAMBDA", "METHODS", "format_summary", "plot_demo", "raw_pixel_reference", "run_demo",
           "untrained_model"]

METHODS = ("untrained", "simclr", "superinfo")
TRAINED = ("simclr", "superinfo")
DEFAULT_LAMBDA = AUTO           # no hand-tuned lambda: the multiplier that keeps 95% of the contrastive estimate


def raw_pixel_reference(cfg) -> dict:
    """The raw 64 pixels of the same train/test split: scikit-learn's logistic regression on standardised pixels
    (the linear reference) and the kNN protocol of the runs (cosine, ``cfg.knn_k``, ``cfg.knn_temperature``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    images, labels = data.digits_arrays()
    x = images.reshape(len(images), -1).astype(np.float64)
    train, test = (data.holdout_indices(labels, split) for split in ("train", "test"))
    scaler = StandardScaler().fit(x[train])
    clf = LogisticRegression(max_iter=5000).fit(scaler.transform(x[train]), labels[train])
    linear = float(clf.score(scaler.transform(x[test]), labels[test]))
    as_tensor = lambda rows: torch.as_tensor(x[rows], dtype=torch.float32)     # noqa: E731
    knn = knn_top1(as_tensor(train), torch.as_tensor(labels[train]), as_tensor(test), torch.as_tensor(labels[test]),
                   k=cfg.knn_k, temperature=cfg.knn_temperature, num_classes=10)
    return {"linear_top1": linear, "knn_top1": knn, "features": "raw pixels (64)",
            "linear": "scikit-learn LogisticRegression (lbfgs, C=1) on standardised pixels"}


def untrained_model(cfg):
    seed_everything(cfg.seed)           # what build_training does before build_model: the init both methods start from
    return cfg.build_model()


def _untrained_record(cfg, folder: Path) -> dict:
    """The untrained network's accuracies (cached in folder/eval.json, written once)."""
    path = folder / "eval.json"
    if path.exists():
        return json.loads(path.read_text())
    started = time.perf_counter()
    model = untrained_model(cfg)
    _, (train_ds, test_ds) = data.load_datasets(cfg, eval_too=True, pretrain=False)
    record = {"seed": cfg.seed}
    for protocol in PROTOCOLS:
        kw = {"k": cfg.knn_k, "temperature": cfg.knn_temperature} if protocol == "knn" else {}
        record[f"{protocol}_top1"] = evaluate_model(model, train_ds, test_ds, protocol, seed=cfg.seed, **kw)["top1"]
    record["seconds"] = time.perf_counter() - started
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomically(path, record)
    return record


def _bracket(cfg, folder: Path, untrained_model=None, options: dict | None = None) -> dict:
    """The superfluous bracket's columns for the run in ``folder`` (its probe.json, measured once) or for the
    untrained model (written to folder/probe.json the same way)."""
    from .probe import PROBE_FILE, bracket_columns, probe_model, probe_run

    path = folder / PROBE_FILE
    if not path.exists():
        settings = {**BRACKET_SETTINGS, **(options or {})}
        if untrained_model is None:
            probe_run(folder, seed=cfg.seed, device=cfg.device, **settings)
        else:
            write_json_atomically(path, dict(probe_model(untrained_model, cfg, seed=cfg.seed, **settings),
                                             run_dir=str(folder), checkpoint_epoch=0))
    return bracket_columns(json.loads(path.read_text()))


def run_demo(out, *, seeds=(0, 1, 2), lambda_superinfo: float | str = DEFAULT_LAMBDA, epochs: int | None = None,
             progress: bool = False, bracket: bool = True, bracket_options: dict | None = None, plot: bool = True,
             **overrides) -> dict:
    """Evaluate the untrained network and train + evaluate both methods for every seed; returns (and writes
    DIR/eval.json, DIR/demo.png) the side-by-side summary.  ``bracket_options`` go to ``probe_model`` (images,
    views, estimator, and ``mi_toolkit.estimate``'s keywords such as steps)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    lambdas = {"untrained": None, "simclr": 0.0, "superinfo": lambda_superinfo}
    configs = [(method, preset_config("digits", out=str(out / f"{method}-seed{seed}"), seed=seed,
                                      method="simclr" if method == "simclr" else "superinfo",
                                      lambda_a=lambdas[method] if method != "untrained" else 0.0, epochs=epochs,
                                      progress=progress, **overrides))
               for seed in seeds for method in METHODS]    # every config is validated before any training
    runs = []
    for method, cfg in configs:
        folder = Path(cfg.out)
        if method == "untrained":
            record = _untrained_record(cfg, folder)
            model = untrained_model(cfg)
        else:
            run_point(cfg, PROTOCOLS)
            record = run_record(cfg.out)
            model = None
        row = {"method": method, "lambda": lambdas[method], "seed": cfg.seed,
               "linear_top1": record["linear_top1"], "knn_top1": record["knn_top1"],
               "lambda_final": record.get("lambda_final"), "mi_lower": record.get("mi_lower"),
               "seconds": record["seconds"], "run_dir": cfg.out}
        if bracket:
            row.update(_bracket(cfg, folder, model, bracket_options))
        runs.append(row)
    reference = raw_pixel_reference(configs[0][1])
    summary = {}
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        summary[method] = {"lambda": lambdas[method], "seeds": len(mine)}
        keys = ["linear_top1", "knn_top1"] + (list(BRACKET_COLUMNS) if bracket else [])
        for key in keys:
            summary[method][key], summary[method][key + "_std"] = mean_std(r[key] for r in mine)
        if method in TRAINED:       # the gain over the same init, seed by seed
            base = {r["seed"]: r for r in runs if r["method"] == "untrained"}
            gains = [r["linear_top1"] - base[r["seed"]]["linear_top1"] for r in mine]
            summary[method]["linear_gain_over_untrained_min"] = min(gains)
            summary[method]["linear_gain_over_untrained_mean"] = float(np.mean(gains))
    result = {"dataset": "digits", "settings": configs[0][1].to_dict() if configs else None,
              "methods": {"untrained": "the network as initialised for the seed (what both methods start from)",
                          "simclr": "NT-Xent alone (--method simclr)",
                          "superinfo": f"NT-Xent - lambda x kl superfluous term, lambda = {lambda_superinfo}"},
              "runs": runs, "summary": summary, "reference": {"raw_pixels": reference},
              "seconds": time.perf_counter() - started}
    write_json_atomically(out / "eval.json", result)
    if plot:
        plot_demo(result, out / "demo.png")
    return result


def format_summary(result: dict) -> str:
    bracket = "superfluous_lower_nats" in next(iter(result["summary"].values()))
    head = f"{'method':<10} {'lambda':>7} {'linear top-1':>16} {'kNN top-1':>16}"
    if bracket:
        head += f" {'superfluous lower (h)':>22} {'upper (z, kl)':>14}"
    lines = [head]

    def pct(mean, std):
        return f"{100 * mean:>9.2f} ± {100 * std:<4.2f}"

    for method, s in result["summary"].items():
        lam = "-" if s["lambda"] is None else str(s["lambda"])
        line = (f"{method:<10} {lam:>7} {pct(s['linear_top1'], s['linear_top1_std'])} "
                f"{pct(s['knn_top1'], s['knn_top1_std'])}")
        if bracket:
            line += (f" {s['superfluous_lower_nats']:>14.3f} ± {s['superfluous_lower_nats_std']:<5.3f}"
                     f" {s['superfluous_upper_nats_head']:>14.1f}")
        lines.append(line)
    ref = result["reference"]["raw_pixels"]
    lines.append(f"{'raw pixels':<10} {'-':>7} {100 * ref['linear_top1']:>9.2f}        {100 * ref['knn_top1']:>9.2f}"
                 "        (reference: logistic regression / kNN on the 64 pixels)")
    for method in TRAINED:
        if method in result["summary"]:
            s = result["summary"][method]
            lines.append(f"{method}: linear top-1 gain over the untrained network "
                         f"{100 * s['linear_gain_over_untrained_mean']:+.2f} points (smallest over seeds "
                         f"{100 * s['linear_gain_over_untrained_min']:+.2f})")
    return "\n".join(lines)


def plot_demo(result: dict, path) -> Path:
    """Linear and kNN top-1 per method (bars: mean, dots: seeds; dashed: raw pixels) and the superfluous bracket."""
    from matplotlib.figure import Figure        # no pyplot: the caller's backend (a notebook's) is left alone

    runs = result["runs"]
    bracket = "superfluous_lower_nats" in runs[0]
    fig = Figure(figsize=(12 if bracket else 8, 3.6), layout="constrained")
    axes = fig.subplots(1, 3 if bracket else 2)
    for ax, key in zip(axes, ("linear_top1", "knn_top1")):
        for i, method in enumerate(METHODS):
            values = [100 * r[key] for r in runs if r["method"] == method]
            ax.bar(i, np.mean(values), color=f"C{i}", alpha=0.6)
            ax.plot([i] * len(values), values, "k.", ms=6)
        ax.axhline(100 * result["reference"]["raw_pixels"][key], ls="--", c="gray", label="raw pixels")
        ax.set_xticks(range(len(METHODS)), METHODS)
        ax.set_ylabel(f"{'kNN' if key == 'knn_top1' else 'linear'} top-1 (%)")
        ax.set_ylim(max(0, min(100 * r[key] for r in runs) - 10), 100)
        ax.legend(loc="lower right", fontsize=8)
    if bracket:
        ax = axes[2]
        for i, method in enumerate(METHODS):
            mine = [r for r in runs if r["method"] == method]
            lo = [r["superfluous_lower_nats"] for r in mine]
            up = [r["superfluous_upper_nats_head"] for r in mine]
            ax.plot([i] * len(lo), lo, "v", c=f"C{i}", ms=7)
            ax.plot([i] * len(up), up, "^", c=f"C{i}", ms=7)
        ax.set_yscale("symlog", linthresh=1)
        ax.set_xticks(range(len(METHODS)), METHODS)
        ax.set_ylabel("superfluous information (nats)")
        ax.set_title("v: lower bound on h,  ^: kl upper bound on z", fontsize=9)
    fig.suptitle(f"superinfo demo: digits, frozen backbone features, {len({r['seed'] for r in runs})} seeds")
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
