"""The embedded default: SimCLR (lambda = 0) and SuperInfo side by side on scikit-learn's digits, on a CPU, in minutes.

    superinfo demo --out DIR [--seeds 0,1,2] [--lambda 0.01] [--epochs 30]

For every seed it pre-trains the same small ResNet-18 twice (lambda = 0, then --lambda), evaluates both with the
linear and the kNN protocol on frozen backbone features, and writes DIR/eval.json: every run, and per method the
mean and std over seeds of each protocol's top-1 (fractions).  Each run keeps its own folder (DIR/<method>-seed<S>).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .evaluate import evaluate_run
from .train import preset_config, train

METHODS = ("simclr", "superinfo")


def run_demo(out, *, seeds=(0, 1, 2), lambda_superinfo: float = 0.01, epochs: int | None = None,
             progress: bool = False, **overrides) -> dict:
    """Train and evaluate both methods for every seed; returns (and writes) the side-by-side summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in seeds:
        for method, lam in (("simclr", 0.0), ("superinfo", lambda_superinfo)):
            run_dir = out / f"{method}-seed{seed}"
            cfg = preset_config("digits", out=str(run_dir), seed=seed, lambda_a=lam, epochs=epochs,
                                progress=progress, **overrides)
            start = time.perf_counter()
            train(cfg)
            scores = {protocol: evaluate_run(run_dir, protocol, device=cfg.device)["top1"]
                      for protocol in ("linear", "knn")}
            runs.append({"method": method, "lambda": lam, "seed": seed, "linear_top1": scores["linear"],
                         "knn_top1": scores["knn"], "seconds": time.perf_counter() - start, "run_dir": str(run_dir)})
    summary = {}
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        summary[method] = {"lambda": mine[0]["lambda"], "seeds": len(mine)}
        for key in ("linear_top1", "knn_top1"):
            values = np.array([r[key] for r in mine])
            summary[method][key] = float(values.mean())
            summary[method][key + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    result = {"dataset": "digits", "settings": preset_config("digits", epochs=epochs, **overrides).to_dict(),
              "runs": runs, "summary": summary}
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    return result


def format_summary(result: dict) -> str:
    lines = [f"{'method':<10} {'lambda':>7} {'linear top-1':>16} {'kNN top-1':>16}"]
    for method, s in result["summary"].items():
        lines.append(f"{method:<10} {s['lambda']:>7g} {100 * s['linear_top1']:>9.2f} ± {100 * s['linear_top1_std']:<4.2f}"
                     f" {100 * s['knn_top1']:>9.2f} ± {100 * s['knn_top1_std']:<4.2f}")
    return "\n".join(lines)
