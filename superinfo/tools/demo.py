"""The embedded default: SimCLR (lambda = 0) and SuperInfo side by side on scikit-learn's digits, on a CPU, in minutes.

    superinfo demo --out DIR [--seeds 0,1,2] [--lambda 0.001] [--epochs 30]

For every seed it pre-trains the same small ResNet-18 twice (lambda = 0, then --lambda), evaluates both with the
linear and the kNN protocol on frozen backbone features, and writes DIR/eval.json: every run, and per method the
mean and std over seeds of each protocol's top-1 (fractions).  Each run keeps its own folder (DIR/<method>-seed<S>).
It is a two-point ``superinfo sweep`` (the same ``run_point``): rerunning it skips finished runs and resumes
interrupted ones.
"""
from __future__ import annotations

from pathlib import Path

from mi_toolkit.atomic import write_json_atomically

from ..trainer.config import preset_config
from .sweep import mean_std, run_point, run_record

METHODS = ("simclr", "superinfo")


# With the head noise fixed at sigma = 1, lambda >= 0.01 collapses the head on digits (docs/ablations.md); 0.001 trains
DEFAULT_LAMBDA = 0.001


def run_demo(out, *, seeds=(0, 1, 2), lambda_superinfo: float = DEFAULT_LAMBDA, epochs: int | None = None,
             progress: bool = False, **overrides) -> dict:
    """Train and evaluate both methods for every seed; returns (and writes) the side-by-side summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lambdas = {"simclr": 0.0, "superinfo": float(lambda_superinfo)}
    configs = [(method, preset_config("digits", out=str(out / f"{method}-seed{seed}"), seed=seed,
                                      lambda_a=lambdas[method], epochs=epochs, progress=progress, **overrides))
               for seed in seeds for method in METHODS]    # every config is validated before any training
    runs = []
    for method, cfg in configs:
        run_point(cfg, ("linear", "knn"))
        record = run_record(cfg.out)
        runs.append({"method": method, "lambda": lambdas[method], "seed": cfg.seed,
                     "linear_top1": record["linear_top1"], "knn_top1": record["knn_top1"],
                     "seconds": record["seconds"], "run_dir": cfg.out})
    summary = {}
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        summary[method] = {"lambda": lambdas[method], "seeds": len(mine)}
        for key in ("linear_top1", "knn_top1"):
            summary[method][key], summary[method][key + "_std"] = mean_std(r[key] for r in mine)
    result = {"dataset": "digits", "settings": preset_config("digits", epochs=epochs, **overrides).to_dict(),
              "runs": runs, "summary": summary}
    write_json_atomically(out / "eval.json", result)
    return result


def format_summary(result: dict) -> str:
    lines = [f"{'method':<10} {'lambda':>7} {'linear top-1':>16} {'kNN top-1':>16}"]
    for method, s in result["summary"].items():
        lines.append(f"{method:<10} {s['lambda']:>7g} {100 * s['linear_top1']:>9.2f} ± {100 * s['linear_top1_std']:<4.2f}"
                     f" {100 * s['knn_top1']:>9.2f} ± {100 * s['knn_top1_std']:<4.2f}")
    return "\n".join(lines)
