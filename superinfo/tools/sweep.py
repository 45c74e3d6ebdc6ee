"""Ablation grids (the paper's lambda and epochs ablations): every (lambda_a, lambda_b, epochs, seed) of a preset is
trained as a normal run folder, evaluated with each protocol, and collected into one table and plot.

    superinfo sweep --preset digits --lambda-a 0,0.001,0.01 --epochs 30 --seeds 0,1,2 --protocols linear,knn --out DIR

    from superinfo.tools.sweep import SweepSpec, run_sweep, collect
    table = run_sweep(SweepSpec("digits", lambdas_a=(0, 0.01), seeds=(0, 1)), "DIR")
    table = collect("DIR")              # the same table, rebuilt from the run folders alone (for notebooks)

DIR holds ``runs/<name>/`` (one ordinary run folder per grid point: config.json, checkpoint.pt, log.csv, eval.json,
``timing.json``), ``sweep_spec.json`` (the grid and settings the folder belongs to), ``sweep.csv`` and ``sweep.json``
(every run, and per (lambda_a, lambda_b, epochs) the mean and std over seeds) and ``sweep.png``.

Rerunning the same command never loses work: finished runs are skipped, interrupted ones continue from their last
checkpoint (``superinfo.trainer.resume``) and missing evaluations are run.  Other settings in an existing DIR are an
error; a different grid is one too, unless ``extend=True`` (``--extend``) adds its points to the folder's.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mi_toolkit.atomic import write_atomically, write_json_atomically
from mi_toolkit.errors import ArgumentError
from ..lambdas import AUTO
from ..trainer.config import RESUME_OVERRIDABLE, TrainConfig, preset_config
from ..trainer.evaluate import PROTOCOLS, evaluate_run
from ..trainer.loop import NonFiniteLossError, resume, train
from ..trainer.run import checkpoint_epoch
from .probe import BRACKET_COLUMNS, BRACKET_SETTINGS, probe_run, read_bracket

__all__ = ["GRID_KEYS", "INVOCATION_FIELDS", "LOSS_COLUMNS", "TABLE_COLUMNS", "GridPoint", "SweepSpec", "collect",
           "format_table", "mean_std", "run_point", "run_record", "run_sweep", "summarize", "write_table"]

GRID_KEYS = ("lambda_a", "lambda_b", "epochs", "seed")
# settings that belong to one invocation, not to the experiment: they may differ between reruns of a sweep
# (what a resume may change, less epochs: a grid axis; final_eval: the sweep evaluates itself; sync_bn: it changes
# the statistics BatchNorm sees)
INVOCATION_FIELDS = ("out",) + tuple(f for f in RESUME_OVERRIDABLE if f not in ("epochs", "final_eval", "sync_bn"))
LOSS_COLUMNS = ("loss", "contrastive", "mi_lower", "superfluous_a", "superfluous_b", "probe_acc")
TABLE_COLUMNS = GRID_KEYS + ("linear_top1", "knn_top1") + LOSS_COLUMNS + BRACKET_COLUMNS + (
    "lambda_final", "epochs_done", "seconds", "run_dir")
SPEC_FILE = "sweep_spec.json"
TIMING_FILE = "timing.json"


def format_lambda(value) -> str:
    """A grid lambda as text: ``0.01``, or ``auto``."""
    return value if value == AUTO else f"{value:g}"


def lambda_key(value) -> tuple:
    """Sort key of a grid lambda: the numbers in order, automatic lambda after them."""
    return (1, 0.0) if value == AUTO else (0, float(value))


def _lambda_value(value):
    return AUTO if value == AUTO else float(value)


@dataclass(frozen=True)
class GridPoint:
    lambda_a: float | str       # a number, or "auto" (then lambda_b is "auto" too: one multiplier for both)
    lambda_b: float | str
    epochs: int
    seed: int

    @property
    def name(self) -> str:
        """Readable run-folder name, e.g. ``la0.01-lb0.01-ep30-seed0`` or ``laauto-lbauto-ep30-seed0``."""
        return f"la{format_lambda(self.lambda_a)}-lb{format_lambda(self.lambda_b)}-ep{self.epochs}-seed{self.seed}"

    def to_dict(self) -> dict:
        return {"lambda_a": self.lambda_a, "lambda_b": self.lambda_b, "epochs": self.epochs, "seed": self.seed}


@dataclass(frozen=True)
class SweepSpec:
    """A grid over a preset.  ``lambdas_b=None`` ties lambda_b to lambda_a (one axis); otherwise the grid is the
    product lambda_a x lambda_b.  ``epochs=None`` uses the preset's.  ``overrides`` are any other ``TrainConfig``
    fields (``batch_size``, ``data_root``, ``width``, ...)."""

    preset: str
    lambdas_a: tuple = (0.0,)
    lambdas_b: tuple | None = None
    epochs: tuple | None = None
    seeds: tuple = (0,)
    protocols: tuple = ("linear", "knn")
    overrides: dict = field(default_factory=dict)

    def base_config(self) -> TrainConfig:
        """The preset with the overrides (validated; unknown presets and fields are errors here)."""
        grid_fields = sorted(set(self.overrides) & set(GRID_KEYS + ("out",)))
        if grid_fields:
            raise ArgumentError(f"overrides may not set {', '.join(grid_fields)}: the grid (lambdas_a, lambdas_b, epochs, "
                             "seeds) and the sweep folder set them")
        unknown = sorted(set(self.overrides) - set(TrainConfig.__dataclass_fields__))
        if unknown:
            raise ArgumentError(f"unknown TrainConfig fields in overrides: {', '.join(unknown)}")
        return preset_config(self.preset, **self.overrides)

    def points(self) -> list[GridPoint]:
        """Every grid point, validated; seeds vary slowest so a stopped sweep has whole seeds done first."""
        base = self.base_config()
        lambdas_a = _checked_values("lambdas_a", self.lambdas_a, _lambda_value)
        lambdas_b = None if self.lambdas_b is None else _checked_values("lambdas_b", self.lambdas_b, float)
        epochs = [base.epochs] if self.epochs is None else _checked_values("epochs", self.epochs, int)
        seeds = _checked_values("seeds", self.seeds, int)
        protocols = _checked_values("protocols", self.protocols, str)
        bad = sorted(set(protocols) - set(PROTOCOLS))
        if bad:
            raise ArgumentError(f"unknown protocols {bad}; valid: {', '.join(PROTOCOLS)}")
        if not base.allow_negative_lambda:
            for name, values in (("lambdas_a", lambdas_a), ("lambdas_b", lambdas_b or [])):
                if any(v != AUTO and v < 0 for v in values):
                    raise ArgumentError(f"{name} ({_FLAGS[name]}) holds a negative lambda {values}; set "
                                     "allow_negative_lambda (--allow-negative-lambda) if you mean it")
        if any(e < 1 for e in epochs):
            raise ArgumentError(f"epochs (--epochs) must be >= 1, got {epochs}")
        if AUTO in lambdas_a and lambdas_b is not None:
            raise ArgumentError("lambdas_a (--lambda-a) holds 'auto', which weighs both terms: leave lambdas_b "
                                "(--lambda-b) out")
        pairs = [(a, a) for a in lambdas_a] if lambdas_b is None else [(a, b) for a in lambdas_a for b in lambdas_b]
        return [GridPoint(a, b, e, s) for s in seeds for e in epochs for a, b in pairs]

    def point_config(self, point: GridPoint, run_dir) -> TrainConfig:
        lambda_b = None if point.lambda_a == AUTO else point.lambda_b
        return preset_config(self.preset, **dict(self.overrides, lambda_a=point.lambda_a, lambda_b=lambda_b,
                                                 epochs=point.epochs, seed=point.seed, out=str(run_dir)))

    def settings(self) -> dict:
        """What makes two sweeps the same experiment apart from the grid: every setting but the grid's and the
        invocation's."""
        d = self.base_config().to_dict()
        for key in GRID_KEYS + INVOCATION_FIELDS:
            d.pop(key, None)
        return d


# the command-line flag of each grid argument, so one message serves the API and the CLI
_FLAGS = {"lambdas_a": "--lambda-a", "lambdas_b": "--lambda-b", "epochs": "--epochs", "seeds": "--seeds",
          "protocols": "--protocols"}


def _checked_values(name: str, values, kind) -> list:
    where = f"{name} ({_FLAGS[name]})"
    if values is None or len(values) == 0:
        raise ArgumentError(f"{where} must hold at least one value")
    try:
        out = [kind(v) for v in values]
    except (TypeError, ValueError):
        what = "number or 'auto'" if kind is _lambda_value else kind.__name__
        raise ArgumentError(f"{where} must hold {what} values, got {list(values)!r}") from None
    if kind in (float, _lambda_value) and not all(v == AUTO or math.isfinite(v) for v in out):
        raise ArgumentError(f"{where} must hold finite numbers, got {out}")
    repeated = sorted({v for v in out if out.count(v) > 1})
    if repeated:
        raise ArgumentError(f"{where} repeats {repeated}")
    return out


# ---------------------------------------------------------------------------------------------------------------
# One grid point: train (or resume, or skip), then evaluate what is missing
# ---------------------------------------------------------------------------------------------------------------
def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _comparable(config: dict) -> dict:
    """``config`` without the invocation's fields; a field the saved config lacks (added to ``TrainConfig`` after the
    run was made) counts as its default, which is what that run used."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    return {k: v for k, v in {**defaults, **config}.items() if k not in INVOCATION_FIELDS}


def _differences(old: dict, new: dict) -> list[str]:
    return [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def _evaluated(run_dir: Path, protocol: str, epochs: int) -> bool:
    """``protocol`` has a result in eval.json for the final checkpoint (not an earlier one)."""
    ev = _read_json(run_dir / "eval.json") or {}
    result = ev.get("results", {}).get(protocol)
    return result is not None and result.get("checkpoint_epoch") == epochs


def _checkpoint_epoch(run_dir: Path) -> int | None:

    path = run_dir / "checkpoint.pt"
    return checkpoint_epoch(path) if path.exists() else None


def _add_seconds(run_dir: Path, phase: str, seconds: float) -> None:
    timing = _read_json(run_dir / TIMING_FILE) or {}
    timing[phase] = timing.get(phase, 0.0) + seconds
    write_json_atomically(run_dir / TIMING_FILE, timing)


def run_point(cfg: TrainConfig, protocols=PROTOCOLS) -> str:
    """Bring the run in ``cfg.out`` to its last epoch and evaluate it with every protocol, doing only what is missing.

    Returns what happened: ``"skipped"`` (already done), ``"trained"`` (from scratch), ``"resumed"`` or
    ``"evaluated"`` (training was done; an evaluation was missing), or ``"stopped"`` (``stop_after_epochs`` ended
    this call before the last epoch).  A folder that holds a run with other settings is an error.
    """
    run_dir = Path(cfg.out)
    existing = _read_json(run_dir / "config.json")
    if existing is not None:
        wanted = _comparable(dict(cfg.to_dict(), stop_after_epochs=None, progress=True))
        diff = _differences(_comparable(existing), wanted)
        if diff:
            raise ArgumentError(f"{run_dir} holds a run with other settings ({'; '.join(diff)}); use another output "
                             "folder or delete that run")
    if all(_evaluated(run_dir, p, cfg.epochs) for p in protocols):
        return "skipped"
    done = _checkpoint_epoch(run_dir)
    action = "evaluated"
    if done is None or done < cfg.epochs:
        start = time.perf_counter()
        if done is None:
            summary = train(cfg)
            action = "trained"
        else:
            summary = resume(run_dir, **{k: getattr(cfg, k) for k in INVOCATION_FIELDS if k != "out"})
            action = "resumed"
        _add_seconds(run_dir, "train_s", time.perf_counter() - start)
        if not summary["finished"]:
            return "stopped"
    for protocol in protocols:
        if not _evaluated(run_dir, protocol, cfg.epochs):
            start = time.perf_counter()
            kw = {"k": cfg.knn_k, "temperature": cfg.knn_temperature} if protocol == "knn" else {}
            evaluate_run(run_dir, protocol, data_root=cfg.data_root, device=cfg.device, **kw)
            _add_seconds(run_dir, f"eval_{protocol}_s", time.perf_counter() - start)
    return action


# ---------------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------------
def mean_std(values) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1; 0 for one value) of the values that are not None; ``(None, None)`` if none."""
    kept = np.array([v for v in values if v is not None], dtype=float)
    if kept.size == 0:
        return None, None
    return float(kept.mean()), float(kept.std(ddof=1)) if kept.size > 1 else 0.0


def run_record(run_dir) -> dict:
    """One table row from a run folder alone: the grid values, each protocol's top-1 on the final checkpoint
    (None if not evaluated there), the last log row's loss terms, the seconds spent and the run folder."""
    from .analysis import read_run

    run = read_run(run_dir)
    cfg = run["config"]
    auto = cfg["lambda_a"] == AUTO
    record = {"lambda_a": _lambda_value(cfg["lambda_a"]), "lambda_b": AUTO if auto else float(run["lambda_b"]),
              "epochs": int(cfg["epochs"]), "seed": int(cfg["seed"])}
    results = (run["eval"] or {}).get("results", {})
    for protocol in PROTOCOLS:
        r = results.get(protocol)
        record[f"{protocol}_top1"] = float(r["top1"]) if r and r.get("checkpoint_epoch") == cfg["epochs"] else None
    last = run["last_log"]
    for key in LOSS_COLUMNS:
        record[key] = last.get(key)
    record.update(read_bracket(run_dir, int(cfg["epochs"])) or dict.fromkeys(BRACKET_COLUMNS))
    record["lambda_final"] = last.get("lambda_a")       # the weight the last logged steps trained with
    record["epochs_done"] = int(last["epoch"]) if last.get("epoch") is not None else 0
    timing = _read_json(Path(run_dir) / TIMING_FILE)
    record["seconds"] = sum(timing.values()) if timing else last.get("elapsed_s")
    record["run_dir"] = str(run_dir)
    return record


def summarize(records: list[dict]) -> list[dict]:
    """Per (lambda_a, lambda_b, epochs): the seeds, and mean and std over them of each top-1 and loss term."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["lambda_a"], r["lambda_b"], r["epochs"]), []).append(r)
    summary = []
    ordered = sorted(groups.items(), key=lambda kv: (lambda_key(kv[0][0]), lambda_key(kv[0][1]), kv[0][2]))
    for (lambda_a, lambda_b, epochs), rows in ordered:
        row = {"lambda_a": lambda_a, "lambda_b": lambda_b, "epochs": epochs, "seeds": sorted(r["seed"] for r in rows)}
        for key in ("linear_top1", "knn_top1", "lambda_final") + LOSS_COLUMNS + BRACKET_COLUMNS:
            row[key], row[key + "_std"] = mean_std(r.get(key) for r in rows)
            row[key + "_n"] = sum(r.get(key) is not None for r in rows)
        summary.append(row)
    return summary


def collect(source) -> dict:
    """The sweep table ``{"runs": [...], "summary": [...]}`` from run folders: a sweep folder (its ``runs/*``), one
    run folder, or a list of run folders (any ``superinfo train`` runs).  Runs are sorted by grid values."""
    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
        if (source / "config.json").exists():
            run_dirs = [source]
        elif (source / "runs").is_dir():
            run_dirs = sorted(p for p in (source / "runs").iterdir() if (p / "config.json").exists())
        else:
            raise ArgumentError(f"{source} is neither a run folder (config.json) nor a sweep folder (runs/)")
    else:
        run_dirs = [Path(p) for p in source]
    records = sorted((run_record(d) for d in run_dirs),
                     key=lambda r: (lambda_key(r["lambda_a"]), lambda_key(r["lambda_b"]), r["epochs"], r["seed"]))
    return {"runs": records, "summary": summarize(records)}


def write_table(table: dict, out) -> None:
    """DIR/sweep.csv (one row per run) and DIR/sweep.json (the whole table)."""
    out = Path(out)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=TABLE_COLUMNS)
    writer.writeheader()
    for r in table["runs"]:
        writer.writerow({k: "" if r.get(k) is None else r[k] for k in TABLE_COLUMNS})
    write_atomically(out / "sweep.csv", lambda f: f.write(text.getvalue().encode()))
    write_json_atomically(out / "sweep.json", table)


def format_table(table: dict, markdown: bool = False) -> str:
    """The summary as text: one row per (lambda_a, lambda_b, epochs), top-1 in % as mean ± std over seeds."""
    def pct(row, key):
        mean, std = row[key], row[key + "_std"]
        return "n/a" if mean is None else f"{100 * mean:.2f} ± {100 * std:.2f}"

    def num(value):
        return "n/a" if value is None else f"{value:.3f}".replace("-0.000", "0.000")

    bracket = any(r.get("superfluous_lower_nats") is not None for r in table["summary"])
    head = ["lambda_a", "lambda_b", "epochs", "seeds", "linear top-1 %", "kNN top-1 %", "I(z1;z2) lower",
            "superfluous_a", "final lambda_a"] + (["superfluous lower (h)", "kl upper (z, held out)"] if bracket else [])
    rows = [[format_lambda(r["lambda_a"]), format_lambda(r["lambda_b"]), str(r["epochs"]), str(len(r["seeds"])),
             pct(r, "linear_top1"), pct(r, "knn_top1"), num(r["mi_lower"]), num(r["superfluous_a"]),
             "n/a" if r.get("lambda_final") is None else f"{r['lambda_final']:.3g}"]
            + ([num(r["superfluous_lower_nats"]) + " ± " + num(r["superfluous_lower_nats_std"]),
                num(r["superfluous_upper_nats_head"])] if bracket else [])
            for r in table["summary"]]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [head] + rows)


# ---------------------------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------------------------
def _reconcile_spec(out: Path, spec: SweepSpec, points: list[GridPoint], extend: bool) -> list[GridPoint]:
    """Check ``spec`` against the folder's saved one and save the result; returns every point the folder holds."""
    saved = _read_json(out / SPEC_FILE)
    record = {"preset": spec.preset, "protocols": list(spec.protocols), "settings": spec.settings(),
              "points": [p.to_dict() for p in points]}
    if saved is not None:
        diff = _differences({"preset": saved.get("preset"), **_comparable(saved.get("settings", {}))},
                            {"preset": record["preset"], **_comparable(record["settings"])})
        if diff:
            raise ArgumentError(f"{out} holds a sweep with other settings ({'; '.join(diff)}); use another --out")
        saved_points = [GridPoint(**p) for p in saved["points"]]
        same_grid = set(saved_points) == set(points) and set(saved["protocols"]) == set(spec.protocols)
        if not same_grid and not extend:
            raise ArgumentError(f"{out} holds a sweep over another grid ({len(saved_points)} points, protocols "
                             f"{','.join(saved['protocols'])}); pass extend=True (--extend) to add this grid's "
                             "points to it, or use another --out")
        known = set(saved_points)
        points = saved_points + [p for p in points if p not in known]   # the folder's order first
        record.update(points=[p.to_dict() for p in points],
                      protocols=sorted(set(saved["protocols"]) | set(spec.protocols)))
    write_json_atomically(out / SPEC_FILE, record)
    return [GridPoint(**p) for p in record["points"]]


def run_sweep(spec: SweepSpec, out, *, extend: bool = False, progress: bool = True, plot: bool = True,
              bracket: bool = False, bracket_options: dict | None = None) -> dict:
    """Train and evaluate every grid point of ``spec`` under ``out/runs/`` (skipping finished runs, resuming
    interrupted ones), then write ``sweep.csv``, ``sweep.json`` and ``sweep.png``; returns the table (with the
    preset, protocols, settings, what happened to each point this call and this call's wall seconds).
    ``bracket``: also measure each finished run's superfluous bracket (``superinfo probe``: RUN/probe.json; the
    table's ``superfluous_*`` columns, and ``sweep_bracket.png``); ``bracket_options`` go to ``probe_run``."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    out = Path(out)
    requested = spec.points()           # validates everything before any folder is written
    out.mkdir(parents=True, exist_ok=True)
    points = _reconcile_spec(out, spec, requested, extend)
    protocols = [p for p in PROTOCOLS if p in _read_json(out / SPEC_FILE)["protocols"]]
    actions = {}
    bar = tqdm(points, desc="sweep", unit="run", disable=not progress, dynamic_ncols=True)
    for point in bar:
        bar.set_postfix_str(point.name)
        cfg = spec.point_config(point, out / "runs" / point.name)
        if not progress:
            cfg = dataclasses.replace(cfg, progress=False)
        try:
            actions[point.name] = run_point(cfg, protocols)
        except NonFiniteLossError as err:     # one diverged point must not cost the rest of the grid
            actions[point.name] = f"failed: {err}"
            continue
        if bracket and actions[point.name] != "stopped" and read_bracket(cfg.out, cfg.epochs) is None:
            probe_run(cfg.out, seed=cfg.seed, device=cfg.device, **{**BRACKET_SETTINGS, **(bracket_options or {})})
    bar.close()
    table = collect([out / "runs" / p.name for p in points])
    table = {"preset": spec.preset, "protocols": protocols, "settings": spec.settings(), **table,
             "actions": actions, "wall_seconds": time.perf_counter() - start}
    write_table(table, out)
    if plot:
        import matplotlib.pyplot as plt

        from .analysis import plot_ablation

        plt.close(plot_ablation(table, path=out / "sweep.png", protocols=protocols))
        if any(r["superfluous_lower_nats"] is not None for r in table["runs"]):
            from .analysis import plot_bracket
            plt.close(plot_bracket(table, path=out / "sweep_bracket.png"))
    return table
