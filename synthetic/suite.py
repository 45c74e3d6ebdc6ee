"""The standard task suite (after Czyz et al., NeurIPS 2023, "Beyond Normal"): every estimator on every task with
a known MI, one record per (task, estimator), and the heat map estimators x tasks.

    records = run_suite(["smile", "infonce", "ksg", "gaussian"], samples=10000, seeds=[0, 1, 2])
    write_suite_outputs("out/", records)      # suite.json, suite.csv, heatmap.png (atomic writes)

Each task is sampled once (data seed 0, ``samples`` rows); the seeds vary the estimator's own randomness (initial
weights, train/held-out split, batch order) and are run as one vectorised fit (``estimate(..., seeds=S)``).  The
classical estimators are deterministic on given data: one run, the standard error from subsampling.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import warnings
from collections import Counter

import numpy as np
import torch

from mi_toolkit.atomic import write_atomically, write_json_atomically
from mi_toolkit.classical import CLASSICAL
from mi_toolkit.errors import ArgumentError
from mi_toolkit.fit import MIEstimateWarning, estimate

from .tasks import AdditiveNoise, Multinormal, StudentT, Transformed

SUITE_FIELDS = ["suite", "task", "family", "dim_x", "dim_y", "true_mi", "mi_error", "estimator", "direction", "mi",
                "stderr", "seed_std", "per_seed", "relative_error", "failed", "failure", "warnings", "samples",
                "seeds", "seconds"]


def standard_suite() -> dict:
    """name -> (family, task).  True MI: closed forms (Gaussian log-dets, the Student-t correction, the additive
    noise formula); every transform is invertible (or an embedding), so a transformed task keeps its base's MI."""
    t = {}
    t["1v1-additive-0.1"] = ("additive noise", AdditiveNoise(0.1))
    t["1v1-additive-0.75"] = ("additive noise", AdditiveNoise(0.75))
    t["1v1-bimodal"] = ("bimodal", Transformed(Multinormal(1, 1, 1.0), "bimodal", "bimodal"))
    t["1v1-wiggly"] = ("wiggly", Transformed(Multinormal(1, 1, 1.0), "wiggly", "wiggly"))
    t["2v2-dense"] = ("dense gaussian", Multinormal(2, 2, 1.0, "dense"))
    t["3v7-dense"] = ("dense gaussian", Multinormal(3, 7, 1.5, "dense"))
    t["5v5-dense"] = ("dense gaussian", Multinormal(5, 5, 2.0, "dense"))
    t["25v25-dense"] = ("dense gaussian", Multinormal(25, 25, 1.3, "dense"))
    t["5v5-sparse"] = ("sparse gaussian", Multinormal(5, 5, 1.0, "sparse"))
    t["25v25-sparse"] = ("sparse gaussian", Multinormal(25, 25, 1.0, "sparse"))
    t["1v1-student-dof1"] = ("student-t", StudentT(1, 1.0, rho=0.0))
    t["2v2-student-dof1"] = ("student-t", StudentT(2, 1.0, rho=0.0))
    t["2v2-student-dof2"] = ("student-t", StudentT(2, 2.0, mi=1.0))
    t["3v5-student-dof3"] = ("student-t", StudentT(3, 3.0, mi=1.0, dim_y=5))
    t["5v5-student-dof5"] = ("student-t", StudentT(5, 5.0, mi=1.5))
    t["3v3-half-cube"] = ("transformed", Transformed(Multinormal(3, 3, 1.0), "half-cube", "half-cube"))
    t["3v3-asinh"] = ("transformed", Transformed(Multinormal(3, 3, 1.0), "asinh", "asinh"))
    t["3v3-normal-cdf"] = ("transformed", Transformed(Multinormal(3, 3, 1.0), "normal-cdf", "normal-cdf"))
    t["3v3-spiral"] = ("transformed", Transformed(Multinormal(3, 3, 1.0), "spiral", None))
    t["3v1-swiss-roll"] = ("transformed", Transformed(Multinormal(2, 1, 0.5), "swiss-roll", None))
    return t


SUITES = {"standard": standard_suite}
CLASSICAL_SUBSAMPLES = 5   # half-sample re-runs for the classical estimators' standard error (KSG at 50-D: ~1 min each)
HEAVIEST_TAILED = "2v2-student-dof1"   # Student-t with 1 degree of freedom (Cauchy tails): the hardest marginals


def run_suite(estimators, samples: int = 10000, seeds=(0, 1, 2), suite: str = "standard", tasks=None,
              progress: bool = True, on_task_done=None, **estimate_kwargs) -> list[dict]:
    """One record per (task, estimator).  ``tasks``: a subset of the suite's names (default all).
    ``on_task_done(records)`` is called with all records so far after each task (to write partial results)."""
    if suite not in SUITES:
        raise ArgumentError(f"unknown suite {suite!r}; valid suites: {', '.join(sorted(SUITES))}")
    table = SUITES[suite]()
    names = list(table) if tasks is None else list(tasks)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ArgumentError(f"unknown task(s) {unknown}; the {suite} suite has: {', '.join(table)}")
    seeds = list(seeds)
    records = []
    for task_name in names:
        family, task = table[task_name]
        x, y = task.sample(samples, torch.Generator().manual_seed(0))
        for name in estimators:
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", MIEstimateWarning)
                if name in CLASSICAL:
                    result = estimate(x, y, name, seed=seeds[0], warn=True, subsamples=CLASSICAL_SUBSAMPLES)
                else:
                    result = estimate(x, y, name, seed=seeds[0], seeds=len(seeds) if len(seeds) > 1 else None,
                                      warn=True, **estimate_kwargs)
            seconds = time.perf_counter() - start
            per_seed = [r["mi"] for r in result.per_seed] if result.per_seed else [result.mi]
            finite = [v for v in per_seed if math.isfinite(v)]
            rel = (result.mi - task.mi) / task.mi if math.isfinite(result.mi) and task.mi > 0 else float("nan")
            records.append({
                "suite": suite, "task": task_name, "family": family, "dim_x": task.dim_x, "dim_y": task.dim_y,
                "true_mi": float(task.mi), "mi_error": float(getattr(task, "mi_error", 0.0)), "estimator": name,
                "direction": result.direction, "mi": result.mi, "stderr": result.stderr,
                "seed_std": float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan"),
                "per_seed": per_seed, "relative_error": rel, "failed": result.failed, "failure": result.failure,
                "warnings": [str(w.message) for w in caught], "samples": samples,
                "seeds": seeds if name not in CLASSICAL else seeds[:1], "seconds": seconds,
            })
            if progress:
                print(f"{task_name:<20} {name:<12} truth {task.mi:6.3f}  estimate {result.mi:8.3f}  "
                      f"({seconds:6.1f} s){'  FAILED' if result.failed else ''}", flush=True)
        if on_task_done is not None:
            on_task_done(records)
    return records


def plot_heatmap(records: list[dict], path: str, title: str | None = None) -> None:
    """Estimators x tasks; colour = relative error (estimate - truth) / truth, clipped to [-1, 1]; the estimate in
    each cell ("fail" where the guards rejected it), the truth under each column's name."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in records))
    estimators = list(dict.fromkeys(r["estimator"] for r in records))
    truth = {r["task"]: r["true_mi"] for r in records}
    grid = np.full((len(estimators), len(tasks)), np.nan)
    text = [["" for _ in tasks] for _ in estimators]
    for r in records:
        i, j = estimators.index(r["estimator"]), tasks.index(r["task"])
        if r["failed"] or not math.isfinite(r["mi"]):
            text[i][j] = "fail"
        else:
            grid[i, j] = np.clip(r["relative_error"], -1, 1)
            text[i][j] = f"{r['mi']:.2f}"
    fig, ax = plt.subplots(figsize=(0.62 * len(tasks) + 2.5, 0.42 * len(estimators) + 2.6))
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.75")
    image = ax.imshow(grid, cmap=cmap, vmin=-1, vmax=1, aspect="auto")
    for i in range(len(estimators)):
        for j in range(len(tasks)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=6.5,
                    color="black" if not math.isfinite(grid[i, j]) or abs(grid[i, j]) < 0.6 else "white")
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([f"{t}\nI={truth[t]:.2f}" for t in tasks], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(estimators)))
    ax.set_yticklabels(estimators, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01, label="relative error (clipped to ±1)")
    ax.set_title(title or "estimate per task (colour: relative error; grey: failed, reported as nan)", fontsize=9)
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


def write_suite_outputs(out_dir: str, records: list[dict], config: dict | None = None) -> dict:
    """DIR/suite.json, DIR/suite.csv, DIR/heatmap.png (and DIR/suite_config.json), each written atomically."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, k) for k in ("suite.json", "suite.csv", "heatmap.png", "suite_config.json")}
    write_json_atomically(paths["suite.json"], records)
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=SUITE_FIELDS)
    writer.writeheader()
    for r in records:
        writer.writerow({k: (";".join(f"{v:.6g}" for v in r[k]) if k == "per_seed" else
                             " | ".join(r[k]) if k == "warnings" else
                             ",".join(str(s) for s in r[k]) if k == "seeds" else r[k]) for k in SUITE_FIELDS})
    write_atomically(paths["suite.csv"], lambda f: f.write(table.getvalue().encode()))
    if config is not None:
        write_json_atomically(paths["suite_config.json"], config)
    plot_heatmap(records, paths["heatmap.png"])
    return paths


def merge_suite_records(dirs, suite: str = "standard") -> tuple[list[dict], dict]:
    """The records of several suite runs (each DIR/suite.json, e.g. estimators or tasks split across processes or
    machines) as one list in the suite's task order, and the merged config.  Refused: a missing or partial run,
    another suite, other samples or seeds, the same (task, estimator) twice."""
    table = SUITES[suite]()
    records, configs = [], []
    for d in dirs:
        path = os.path.join(d, "suite.json")
        if not os.path.isfile(path):
            raise ArgumentError(f"--merge: {d!r} holds no suite.json")
        config_path = os.path.join(d, "suite_config.json")
        config = _read_json(config_path) if os.path.isfile(config_path) else {}
        if config.get("partial"):
            raise ArgumentError(f"--merge: {d!r} is an unfinished run (its suite_config.json says partial)")
        configs.append(config)
        records.extend(_read_json(path))
    for key in ("suite", "samples"):
        values = {r[key] for r in records}
        if len(values) > 1:
            raise ArgumentError(f"--merge: the runs differ in {key}: {sorted(values)}")
    seeds = {tuple(r["seeds"]) for r in records if r["estimator"] not in CLASSICAL}
    if len(seeds) > 1:
        raise ArgumentError(f"--merge: the runs differ in seeds: {sorted(seeds)}")
    if records and records[0]["suite"] != suite:
        raise ArgumentError(f"--merge: the runs are of suite {records[0]['suite']!r}, not {suite!r}")
    twice = sorted(p for p, n in Counter((r["task"], r["estimator"]) for r in records).items() if n > 1)
    if twice:
        raise ArgumentError(f"--merge: the same (task, estimator) in two runs: {twice[:3]}")
    estimators = list(dict.fromkeys(r["estimator"] for r in records))
    order = {name: i for i, name in enumerate(table)}
    records.sort(key=lambda r: (order.get(r["task"], len(order)), estimators.index(r["estimator"])))
    merged = {"suite": suite, "estimators": estimators, "samples": records[0]["samples"] if records else None,
              "seeds": list(seeds.pop()) if seeds else None, "tasks": list(dict.fromkeys(r["task"] for r in records)),
              "merged_from": [str(d) for d in dirs],
              "seconds": sum(c.get("seconds", 0.0) for c in configs)}
    return records, merged


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def format_suite_table(records: list[dict]) -> str:
    lines = [f"{'task':<20} {'estimator':<12} {'true':>6} {'estimate':>9} {'stderr':>7} {'rel.err':>8}"]
    for r in records:
        lines.append(f"{r['task']:<20} {r['estimator']:<12} {r['true_mi']:>6.3f} {r['mi']:>9.3f} "
                     f"{r['stderr']:>7.3f} {r['relative_error']:>+8.2f}" + ("  FAILED" if r["failed"] else ""))
    return "\n".join(lines)
