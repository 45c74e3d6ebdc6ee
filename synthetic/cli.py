"""``mi-toolkit``: the bias benchmark and one-off estimates from the command line.

    mi-toolkit bench --mi 2,4,6,8,10 --estimators infonce,smile --out DIR       DIR/results.json, bias.png, ...
    mi-toolkit bench ... --out DIR --resume        continue an interrupted bench (finished estimators are kept)
    mi-toolkit bench --suite standard --estimators smile,infonce,ksg,gaussian --samples 10000 --seeds 0,1,2 --out DIR
                                                   the task suite: DIR/suite.json, suite.csv, heatmap.png
    mi-toolkit estimate --x x.npy --y y.npy --estimator smile [--json FILE]
    mi-toolkit list

Every argument is checked before any compute; a wrong one prints ``error: ...`` naming it and exits 2
(``--debug`` shows the traceback).  An existing non-empty --out (or --json file) is never replaced without
--overwrite.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from mi_toolkit.cli_support import (HelpFormatter, ReplaceOnSuccess, add_version, check_input_file, check_output_dir,
                                    check_output_file, float_arg, float_list, int_arg, int_list, name_list,
                                    progress_default,
                                    run_cli)
from mi_toolkit.errors import ArgumentError

PROG = "mi-toolkit"
RECORDS = "estimators"      # DIR/estimators/<name>.json + <name>.npy: each finished estimator, kept for --resume
BENCH_FILES = (RECORDS, "results.json", "results.csv", "traces.npz", "config.json", "bias.png")   # what --overwrite replaces


def build_parser() -> argparse.ArgumentParser:
    from mi_toolkit.estimators import all_estimators
    from mi_toolkit.fit import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_LR,
        DEFAULT_STEPS,
        REPRESENTATION_DEFAULTS,
        REPRESENTATION_DIM,
    )

    from .bench import DEFAULT_ESTIMATORS

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{bench,estimate,list}")

    bench = sub.add_parser("bench", help="train estimators on a staircase of known MI; write results and bias.png",
                           description="Train every estimator while the true MI steps through the levels; write "
                                       "DIR/results.json, results.csv, traces.npz, config.json, bias.png.",
                           formatter_class=HelpFormatter)
    bench.add_argument("--task", default="gaussian", choices=["gaussian", "student-t"], help="the task with known MI")
    bench.add_argument("--dim", type=int_arg(1), default=20, help="dimension of x and of y")
    bench.add_argument("--mi", type=float_list(0.0, min_open=True), default=[2.0, 4.0, 6.0, 8.0, 10.0],
                       help="comma list of true MI levels in nats, each > 0")
    bench.add_argument("--batch-size", type=int_arg(2), default=64, help="samples per step (N; the cap log N)")
    bench.add_argument("--steps-per-level", type=int_arg(1), default=2000, help="training steps at each MI level")
    bench.add_argument("--estimators", type=name_list(all_estimators, "estimators"),
                       default=list(DEFAULT_ESTIMATORS), help=f"comma list from: {', '.join(all_estimators())} "
                       "(ksg and gaussian with --suite only; --suite's default: all of them)")
    bench.add_argument("--seed", type=int_arg(0), default=0, help="seed of the samples and initial weights")
    bench.add_argument("--lr", type=float_arg(0.0, min_open=True), default=5e-4, help="Adam learning rate")
    bench.add_argument("--critic", default="separable", choices=["separable", "bilinear", "concat"],
                       help="critic architecture of the critic-based bounds")
    bench.add_argument("--hidden", type=int_arg(1), default=256, help="hidden width of critics and conditionals")
    bench.add_argument("--layers", type=int_arg(1), default=2, help="hidden layers of critics and conditionals")
    bench.add_argument("--embed-dim", type=int_arg(1), default=32, help="embedding size of the separable critic")
    bench.add_argument("--transform", default=None, choices=["cubic", "asinh", "half-cube", "rotation"],
                       help="MI-preserving transform of the gaussian task (default: none)")
    bench.add_argument("--dof", type=float_arg(0.0, min_open=True), default=5.0,
                       help="degrees of freedom of the student-t task")
    bench.add_argument("--window", type=int_arg(1), default=None,
                       help="last steps of each level averaged, 1..steps-per-level (default: min(500, steps/4))")
    bench.add_argument("--threads", type=int_arg(0), default=1, help="CPU threads (0: all cores)")
    bench.add_argument("--grad-clip", type=float_arg(0.0, min_open=True), default=None,
                       help="clip the estimator's gradient norm to this value > 0 (default: no clipping)")
    bench.add_argument("--suite", default=None, choices=["standard"],
                       help="run the named task suite with estimate()'s defaults instead of the staircase")
    bench.add_argument("--samples", type=int_arg(2), default=10000, help="--suite: rows sampled per task")
    bench.add_argument("--seeds", type=int_list(0), default=[0, 1, 2],
                       help="--suite: estimator seeds, run as one vectorised fit")
    bench.add_argument("--tasks", type=name_list(None, "tasks"), default=None,
                       help="--suite: a comma list of the suite's tasks (default: all)")
    bench.add_argument("--max-steps", type=int_arg(1), default=None,
                       help="--suite: most training steps per fit (default: estimate()'s)")
    bench.add_argument("--merge", type=name_list(None, "merge"), default=None, metavar="DIR,DIR,...",
                       help="--suite: write one table and heat map to --out from finished suite runs (e.g. "
                            "estimators split across processes) instead of running anything")
    bench.add_argument("--out", default="bench-out", help="output folder (refused when it holds results, unless "
                                                          "--overwrite or --resume)")
    bench.add_argument("--overwrite", action="store_true", help="replace the results in an existing --out")
    bench.add_argument("--resume", action="store_true",
                       help="continue an interrupted bench in --out with the same settings: estimators that "
                            "finished (DIR/estimators/) are kept, the rest are run")
    bench.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="progress bar (default: on when stderr is a terminal)")
    bench.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    est = sub.add_parser("estimate", help="estimate I(X;Y) from two .npy/.csv files of paired rows",
                         description="Fit an estimator on paired rows of two files (.npy, or .csv/.txt with commas) "
                                     "and print the held-out estimate, its bound direction and warnings.",
                         formatter_class=HelpFormatter)
    est.add_argument("--x", required=True, metavar="FILE", help="x samples: .npy or comma-separated text, one row "
                                                                "per sample")
    est.add_argument("--y", required=True, metavar="FILE", help="y samples, rows paired with --x")
    est.add_argument("--estimator", default="smile", choices=all_estimators(), metavar="NAME",
                     help=f"one of: {', '.join(all_estimators())}")
    est.add_argument("--steps", type=int_arg(1), default=DEFAULT_STEPS, help="most training steps (early stopping)")
    est.add_argument("--batch-size", type=int_arg(2), default=None,
                     help=f"samples per step (default: estimate()'s: {DEFAULT_BATCH_SIZE}, or "
                          f"{REPRESENTATION_DEFAULTS['batch_size']} for critic bounds on inputs wider than "
                          f"{REPRESENTATION_DIM} dims; adapted down to a small data set, with a note)")
    est.add_argument("--lr", type=float_arg(0.0, min_open=True), default=None,
                     help=f"learning rate (default: estimate()'s: {DEFAULT_LR:g} with Adam, or SGD at "
                          f"{REPRESENTATION_DEFAULTS['lr']:g} for critic bounds on inputs wider than "
                          f"{REPRESENTATION_DIM} dims, x4 for smile/js)")
    est.add_argument("--preprocess", default="copula", choices=["copula", "standardize", "none"],
                     help="per-dimension transform before fitting (copula: normal scores, keeps MI)")
    est.add_argument("--seeds", type=int_arg(1), default=None, help="seeds run as one vectorised fit (mean, spread)")
    est.add_argument("--heldout-fraction", type=float_arg(0.0, 1.0, max_open=True), default=0.2,
                     help="fraction of rows held out of training, in [0, 1)")
    est.add_argument("--seed", type=int_arg(0), default=0, help="seed of the split, batches and weights")
    est.add_argument("--json", default=None, metavar="FILE", help="also write the result to this JSON file")
    est.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    est.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="progress bar (default: on when stderr is a terminal)")
    est.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    sub.add_parser("list", help="list the registered estimators", formatter_class=HelpFormatter,
                   description="List the registered estimators with their bound direction.")
    return parser


def _load(path: str, flag: str) -> np.ndarray:
    """A [n, d] float array from .npy or comma-separated text; every problem is an error naming ``flag``."""
    check_input_file(path, flag)
    try:
        if path.endswith(".npy"):
            array = np.load(path, allow_pickle=False)     # never unpickle objects from a data file
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")     # "input contained no data": reported below as an error
                array = np.loadtxt(path, delimiter=",", ndmin=2)
    except (ValueError, OSError, EOFError) as err:
        if not path.endswith(".npy"):
            _explain_text(path, flag)
        kind = "a .npy file" if path.endswith(".npy") else "comma-separated numbers"
        raise ArgumentError(f"{flag} {path}: cannot be read as {kind} (corrupt or truncated?): "
                            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number) or array.dtype == bool:
        raise ArgumentError(f"{flag} {path}: expected numbers, got {getattr(array, 'dtype', type(array).__name__)}")
    if array.ndim == 0 or array.size == 0:
        raise ArgumentError(f"{flag} {path}: expected rows of samples, got shape {array.shape}")
    array = array.reshape(len(array), -1)
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise ArgumentError(f"{flag} {path}: contains {bad} NaN/inf value(s)")
    return array


def _explain_text(path: str, flag: str) -> None:
    """Why comma-separated text does not read as numbers, when it is the cells and not the file: a header row, or
    the first non-numeric cell (row and column, 1-based).  Returns when it finds neither."""
    def number(cell: str) -> bool:
        try:
            float(cell)
            return True
        except ValueError:
            return False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [(i, line.rstrip("\r\n")) for i, line in enumerate(f, 1)]
    except OSError:
        return
    rows = [(i, [c.strip() for c in line.split(",")]) for i, line in lines if line.strip() and not line.startswith("#")]
    if not rows:
        return
    first_i, first = rows[0]
    if not all(number(c) for c in first) and all(number(c) for _, cells in rows[1:] for c in cells):
        raise ArgumentError(f"{flag} {path}: line {first_i} ({', '.join(first)[:60]}) is a header row: the file "
                            f"must hold numbers only; drop the header (e.g. `tail -n +{first_i + 1} {path} > "
                            f"data.csv`, or np.savetxt(..., delimiter=',') without header=) or save the array as .npy")
    for i, cells in rows:
        for j, cell in enumerate(cells, 1):
            if not number(cell):
                raise ArgumentError(f"{flag} {path}: line {i}, column {j} holds {cell[:30]!r}, not a number: the file "
                                    f"must hold comma-separated numbers only (no header row, labels or empty cells)")


def _check_estimate(args):
    """Everything ``estimate`` needs, checked before any training: (x, y)."""
    from mi_toolkit.estimators import ESTIMATORS
    from mi_toolkit.fit import training_defaults

    from mi_toolkit.classical import CLASSICAL
    from mi_toolkit.fit import DEFAULT_STEPS, _untrained_kind, adapted_batch_size, check_arguments_used

    # the flags that would be ignored on this estimator's path (estimate()'s own check, worded with the flags)
    given = {"seeds": args.seeds, "batch_size": args.batch_size, "lr": args.lr}
    if args.steps != DEFAULT_STEPS:
        given["steps"] = args.steps
    if args.heldout_fraction != 0.2:
        given["heldout_fraction"] = args.heldout_fraction
    flags = {"seeds": "--seeds", "batch_size": "--batch-size", "lr": "--lr", "steps": "--steps",
             "heldout_fraction": "--heldout-fraction"}
    check_arguments_used(args.estimator, {k: v for k, v in given.items() if v is not None},
                         untrained=_untrained_kind(args.estimator, None, False, False), flags=flags)
    x, y = _load(args.x, "--x"), _load(args.y, "--y")
    if len(x) != len(y):
        raise ArgumentError(f"--x and --y must have the same number of rows (paired samples), got {len(x)} and {len(y)}")
    n_heldout = int(round(len(x) * args.heldout_fraction))
    batch_size = args.batch_size
    if batch_size is None and args.estimator in ESTIMATORS:   # estimate()'s choice for this data
        batch_size = training_defaults(args.estimator, x.shape[1], y.shape[1])["batch_size"]
        if adapted_batch_size(len(x), batch_size, args.heldout_fraction) is not None:
            batch_size = None           # estimate() adapts its default to these rows (and says so in the result)
    flag = f"--batch-size {batch_size}" if args.batch_size is not None else \
        f"the default batch size {batch_size} (--batch-size), even adapted to small data,"
    if batch_size is not None and args.estimator not in CLASSICAL and (
            len(x) - n_heldout < batch_size or (n_heldout and n_heldout < batch_size)):
        raise ArgumentError(f"{flag} needs at least {batch_size} training"
                            f"{' and held-out' if n_heldout else ''} rows; --x has {len(x)} rows, "
                            f"{n_heldout} held out (--heldout-fraction {args.heldout_fraction:g})")
    if args.json:
        check_output_file(args.json, "--json", overwrite=args.overwrite)
    return x, y


def _cmd_estimate(args) -> int:
    from mi_toolkit.atomic import write_json_atomically
    from mi_toolkit.fit import estimate

    x, y = _check_estimate(args)
    result = estimate(x, y, args.estimator, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      heldout_fraction=args.heldout_fraction, seed=args.seed, seeds=args.seeds,
                      preprocess=None if args.preprocess == "none" else args.preprocess,
                      progress=progress_default(args.progress))
    print(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(args.json, result.to_dict())
        print(f"wrote {args.json}")
    return 0


def _bench_config(args):
    from dataclasses import asdict

    from .bench import BenchConfig

    if args.window is not None and args.window > args.steps_per_level:
        raise ArgumentError(f"--window {args.window} must be at most --steps-per-level {args.steps_per_level}")
    config = BenchConfig(task=args.task, dim=args.dim, levels=args.mi, batch_size=args.batch_size,
                         steps_per_level=args.steps_per_level, estimators=args.estimators, seed=args.seed, lr=args.lr,
                         critic=args.critic, hidden=args.hidden, layers=args.layers, embed_dim=args.embed_dim,
                         transform=args.transform, dof=args.dof,
                         window=args.window if args.window is not None else min(500, max(1, args.steps_per_level // 4)),
                         threads=args.threads, grad_clip=args.grad_clip)
    try:
        config.validate()
    except ValueError as err:        # the config's own checks (a level a task cannot reach, ...)
        flags = {"levels": "--mi", "mi": "--mi", "dof": "--dof", "window": "--window", "task": "--task"}
        text = str(err)
        for field, flag in flags.items():
            text = text.replace(f"{field} ", f"{flag} ", 1) if text.startswith(field) else text
        raise ArgumentError(text) from None
    return config, asdict(config)


def _bench_done(out: Path, settings: dict) -> dict:
    """``--resume``: the finished estimators in ``out`` (their settings must be this call's)."""
    saved_path = out / "config.json"
    if not saved_path.exists():
        raise ArgumentError(f"--resume: {out} holds no bench (no config.json); run without --resume")
    saved = json.loads(saved_path.read_text())
    differ = sorted(k for k in settings if k not in ("threads", "estimators") and saved.get(k) != settings[k])
    if differ:
        raise ArgumentError(f"--resume: {out} was run with other settings ({', '.join('--' + k.replace('_', '-') for k in differ)}"
                            f" differ); give the same flags, or pick another --out")
    done = {}
    for name in settings["estimators"]:
        rec, trace = out / RECORDS / f"{name}.json", out / RECORDS / f"{name}.npy"
        if rec.exists() and trace.exists():
            done[name] = (json.loads(rec.read_text()), np.load(trace, allow_pickle=False))
    return done


def _cmd_bench(args) -> int:
    from mi_toolkit.atomic import write_atomically, write_json_atomically

    from .bench import format_table, run_bench, write_outputs

    config, settings = _bench_config(args)
    out = Path(args.out)
    if args.resume:
        done = _bench_done(out, settings)
    else:
        check_output_dir(out, "--out", overwrite=args.overwrite, known=BENCH_FILES,
                         resumable="continue it with the same flags and --resume")
        done = {}
    # --overwrite: the earlier results are moved aside now and deleted only once this run has written its own
    args.replaced = ReplaceOnSuccess(out, BENCH_FILES if args.overwrite and not args.resume else (),
                                     prog="mi-toolkit bench", resumable=lambda o: any((o / RECORDS).glob("*.json")))
    with args.replaced:     # finished estimators of the new run are work --resume continues from
        (out / RECORDS).mkdir(parents=True, exist_ok=True)
        write_json_atomically(out / "config.json", settings)

        def keep(name, records, trace):      # each finished estimator, at once: Ctrl-C loses at most the current one
            write_atomically(out / RECORDS / f"{name}.npy", lambda f: np.save(f, trace))
            write_json_atomically(out / RECORDS / f"{name}.json", records)

        if done:
            print(f"resuming: {', '.join(done)} already finished in {out / RECORDS}", file=sys.stderr)
        records, traces = run_bench(config, progress=progress_default(args.progress), done=done, on_finished=keep)
        paths = write_outputs(str(out), records, traces, config)
    print(format_table(records))
    print(f"wrote {paths['results.json']}, {paths['results.csv']}, {paths['bias.png']}")
    return 0


def _interrupted(args) -> str | None:
    if getattr(getattr(args, "replaced", None), "outcome", None) == "restored":
        return "no estimator of this run had finished, so the earlier results were restored (see above)"
    if args.command == "bench":
        done = sorted(p.stem for p in (Path(args.out) / RECORDS).glob("*.json"))
        if not done:
            return "no estimator had finished; nothing was kept"
        return (f"finished estimators ({', '.join(done)}) are in {Path(args.out) / RECORDS}; continue with the same "
                "command plus --resume")
    return None


def _dispatch(args) -> int:
    if args.command == "list":
        from mi_toolkit.estimators import ESTIMATORS
        from mi_toolkit.classical import CLASSICAL
        for name, (cls, description) in sorted(ESTIMATORS.items()):
            print(f"{name:<12} {cls.direction:<9} {description}")
        for name, classical in sorted(CLASSICAL.items()):
            print(f"{name:<12} {classical.direction:<9} {classical.description}")
        return 0
    if args.command == "estimate":
        return _cmd_estimate(args)
    if args.suite:
        return _cmd_suite(args)
    return _cmd_bench(args)


def _cmd_suite(args) -> int:
    """``bench --suite NAME``: every estimator on every task of the suite with estimate()'s defaults."""
    import time

    from mi_toolkit.estimators import DEFAULT_SUITE_ESTIMATORS

    from .bench import DEFAULT_ESTIMATORS
    from .suite import SUITES, format_suite_table, merge_suite_records, run_suite, write_suite_outputs

    if args.merge is not None:
        if args.tasks is not None or args.estimators != list(DEFAULT_ESTIMATORS):
            raise ArgumentError("--merge writes what the merged runs hold; it takes no --tasks or --estimators")
        records, config = merge_suite_records(args.merge, suite=args.suite)
        out = Path(args.out)
        check_output_dir(out, "--out", overwrite=args.overwrite)
        paths = write_suite_outputs(str(out), records, config)
        print(format_suite_table(records))
        print(f"merged {len(args.merge)} runs: wrote {paths['suite.json']}, {paths['suite.csv']}, "
              f"{paths['heatmap.png']} ({config['seconds']:.0f} s of fitting in all)")
        return 0
    estimators = list(DEFAULT_SUITE_ESTIMATORS) if args.estimators == list(DEFAULT_ESTIMATORS) else args.estimators
    tasks = args.tasks
    if tasks is not None:
        unknown = [t for t in tasks if t not in SUITES[args.suite]()]
        if unknown:
            raise ArgumentError(f"--tasks: unknown {', '.join(map(repr, unknown))}; the {args.suite} suite has: "
                                f"{', '.join(SUITES[args.suite]())}")
    out = Path(args.out)
    check_output_dir(out, "--out", overwrite=args.overwrite)
    start = time.perf_counter()
    partial = {"suite": args.suite, "estimators": estimators, "samples": args.samples, "seeds": args.seeds,
               "tasks": tasks, "max_steps": args.max_steps, "partial": True}
    records = run_suite(estimators, samples=args.samples, seeds=args.seeds, suite=args.suite, tasks=tasks,
                        progress=True if args.progress is None else args.progress,
                        on_task_done=lambda done: write_suite_outputs(str(out), done, partial),
                        **({} if args.max_steps is None else {"steps": args.max_steps}))
    config = {"suite": args.suite, "estimators": estimators, "samples": args.samples, "seeds": args.seeds,
              "tasks": tasks, "max_steps": args.max_steps, "seconds": time.perf_counter() - start}
    paths = write_suite_outputs(str(out), records, config)
    print(format_suite_table(records))
    print(f"wrote {paths['suite.json']}, {paths['suite.csv']}, {paths['heatmap.png']} ({config['seconds']:.0f} s)")
    return 0


def main(argv=None) -> int:
    return run_cli(PROG, build_parser, argv, _dispatch, interrupted=_interrupted)


if __name__ == "__main__":
    sys.exit(main())
