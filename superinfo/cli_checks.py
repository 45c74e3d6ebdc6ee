"""Every ``superinfo`` argument checked before any compute, in one place.

``harden(parser)`` runs once over the built parser: each option's type gets its range (by destination, so a new
option with a known name is covered as it is added), every option gets a help text and its default in ``--help``,
and the commands that write results get ``--overwrite``.  ``validate(args)`` runs after parsing and before the
command: files and folders readable, outputs writable and not holding earlier results, settings that depend on each
other; it creates nothing.  ``interrupted(args)`` is what Ctrl-C prints: what is on disk, how to continue.
"""
from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

from mi_toolkit.cli_support import (HelpFormatter, check_input_dir, check_output_dir, check_output_file,
                                    progress_default)
from mi_toolkit.errors import ArgumentError

__all__ = ["harden", "validate", "interrupted"]

# (kind, minimum, maximum, minimum excluded, maximum excluded); kind: "int" or "float"; lists are checked item-wise
_INT1, _INT0, _POS, _NONNEG, _FINITE = ("int", 1, None), ("int", 0, None), ("float", 0, None, True), \
    ("float", 0, None), ("float", None, None)
RANGES = {
    "steps": _INT1, "epochs": _INT1, "z_dim": _INT1, "hidden": _INT1, "head_hidden": _INT1, "head_layers": _INT0,
    "knn_k": _INT1, "k": _INT1, "log_every": _INT1, "stop_after_epochs": _INT1, "max_steps_per_epoch": _INT1,
    "width": _INT1, "shared_dim": _INT1, "t1_dim": _INT1, "image_size": ("int", 4, None),
    "seed": _INT0, "world_seed": _INT0, "threads": _INT0, "num_workers": _INT0, "encoder_layers": _INT0,
    "nuisance_dim": _INT0, "probe_samples": ("int", 10, None), "batch_size": ("int", 2, None),
    "lr": _POS, "probe_lr": _POS, "temperature": _POS, "knn_temperature": _POS, "lambda_slack": _POS,
    "noise_std": _POS, "weight_decay": _NONNEG, "warmup_epochs": _NONNEG, "lambda_warmup_epochs": _NONNEG,
    "lambda_ramp_epochs": _NONNEG, "momentum": ("float", 0, 1, False, True), "final_lr_factor": ("float", 0, 1),
    "lambda_a": _FINITE, "lambda_b": _FINITE, "lambda_superinfo": _FINITE, "sigma": _POS,
    "lambdas": _FINITE, "lambdas_a": _FINITE, "lambdas_b": _FINITE, "seeds": _INT0, "epoch_grid": _INT1,
    "images": ("int", 2, None), "views": ("int", 2, None), "backbone_dim": _INT0, "backbone_noise": _NONNEG,
    "t1_std": _POS,
}
# per-command exceptions: feature extraction works with any batch
COMMAND_RANGES = {("eval", "batch_size"): _INT1, ("transfer", "batch_size"): _INT1}
NAMES = {"bounds": ("kl", "club"), "protocols": ("linear", "knn")}

HELP = {
    "seed": "random seed", "steps": "training steps", "batch_size": "samples (pairs) per step",
    "lr": "learning rate (Adam)", "z_dim": "dimension of the representation z", "hidden": "hidden width of each head",
    "world": "the multi-view world: linear (exact information) or nonlinear", "shared_dim": "dimension of the shared "
    "part s", "nuisance_dim": "dimension of each view's superfluous part", "t1_dim": "dimension of view 1's task part "
    "t1", "probe_samples": "samples for the linear probes", "threads": "CPU threads (0: all cores)",
    "lambdas": "comma list of lambda values", "bounds": "comma list of conditional bounds: kl, club",
    "seeds": "comma list of seeds", "epochs": "pre-training epochs", "weight_decay": "weight decay",
    "momentum": "SGD/LARS momentum, in [0, 1)", "warmup_epochs": "linear learning-rate warm-up epochs",
    "head_hidden": "hidden width of the projection head (default: the feature dimension)",
    "head_layers": "hidden layers of the projection head", "knn_k": "neighbours of the final kNN evaluation",
    "knn_temperature": "vote temperature of the final kNN evaluation", "num_workers": "DataLoader worker processes",
    "allow_negative_lambda": "accept lambda < 0 (rewards superfluous information)",
    "download": "download missing data sets through torchvision",
    "verify": "skip the md5 checks (files you made or converted yourself)",
    "progress": "no progress bars", "sync_bn": "per-process BatchNorm statistics",
    "run": "run folder (config.json + checkpoint.pt)", "protocol": "linear (logistic regression) or knn",
    "device": "auto, cpu, cuda, cuda:1, ...", "preset": "the preset the grid starts from",
    "conditional": "upper bound on the conditional terms (default: the preset's)", "out": "output file",
}
# the commands whose --out holds results that --overwrite may replace
OVERWRITE = ("world", "sweep-world", "train", "demo", "sweep", "export")
RUN_FILES = ("checkpoint.pt", "config.json", "log.csv", "eval.json", "transfer.json", "timing.json", "tb")


def _ranged(parse, spec, flag):
    kind, lo, hi = spec[0], spec[1], spec[2]
    lo_open = len(spec) > 3 and spec[3]
    hi_open = len(spec) > 4 and spec[4]

    def check_one(v):
        if isinstance(v, str) or isinstance(v, bool):       # 'auto', 'learned', ...: the original type decided
            return v
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {v!r}")
        low = lo is not None and (v <= lo if lo_open else v < lo)
        high = hi is not None and (v >= hi if hi_open else v > hi)
        if low or high:
            parts = ([f"{'>' if lo_open else '>='} {lo:g}"] if lo is not None else []) + \
                    ([f"{'<' if hi_open else '<='} {hi:g}"] if hi is not None else [])
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind == 'int' else 'a number'} "
                                             f"{' and '.join(parts)}, got {v!r}")
        return v

    def wrapped(text):
        value = parse(text)
        if isinstance(value, list):
            if not value:
                raise argparse.ArgumentTypeError(f"expected at least one value, got {text!r}")
            return [check_one(v) for v in value]
        return check_one(value)

    wrapped.__name__ = getattr(parse, "__name__", "value")
    return wrapped


def _names(parse, valid, what):
    def wrapped(text):
        names = parse(text)
        bad = [n for n in names if n not in valid]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(map(repr, bad))}; valid: {', '.join(valid)}")
        return names
    wrapped.__name__ = "name list"
    return wrapped


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def harden(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from .tools.transfer import TRANSFER_DATASETS

    parser.formatter_class = HelpFormatter
    for command, sp in _subparsers(parser).items():
        sp.formatter_class = HelpFormatter
        for action in sp._actions:
            if not action.option_strings or action.dest == "help":
                continue
            spec = COMMAND_RANGES.get((command, action.dest), RANGES.get(action.dest))
            if spec is not None and action.type is not None:
                action.type = _ranged(action.type, spec, action.option_strings[0])
            if action.dest in NAMES and action.type is not None:
                action.type = _names(action.type, NAMES[action.dest], action.dest[:-1])
            if action.dest == "datasets" and action.type is not None:
                action.type = _names(action.type, TRANSFER_DATASETS, "dataset")
            if not action.help:
                action.help = HELP.get(action.dest, action.dest.replace("_", " "))
        if command == "eval":       # --k left out: 200, capped at the training set; given: must fit in it
            k = next(a for a in sp._actions if a.dest == "k")
            k.default, k.help = None, "kNN neighbours, at most the training set size (default: 200, capped at it)"
        if command == "demo":       # progress on by default on a terminal; seeds as strict as elsewhere
            seeds = next(a for a in sp._actions if a.dest == "seeds")
            seeds.type = _seed_text
            prog = next(a for a in sp._actions if a.dest == "progress")
            prog.default, prog.help = None, "progress bars (default: on when stderr is a terminal)"
            sp.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
            sp.add_argument("--resume", action="store_true",
                            help="continue an interrupted demo in --out (finished runs are kept)")
        if command in OVERWRITE:
            sp.add_argument("--overwrite", action="store_true",
                            help="replace the results an existing --out holds (never without this flag)")
    return parser


def _seed_text(text: str) -> str:
    from mi_toolkit.cli_support import int_list
    return ",".join(str(v) for v in int_list(0)(text))


# --------------------------------------------------------------------------------------------------- validate
def _check_device(name):
    if name in (None, "auto"):
        return
    import torch
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ArgumentError(f"--device {name!r} is not a device (auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ArgumentError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")


def _check_lower_bound(name, flag):
    import mi_toolkit
    from mi_toolkit.estimators import ESTIMATORS
    valid = ["ntxent", "pairwise"] + [n for n in mi_toolkit.available_estimators() if ESTIMATORS[n][0].direction == "lower"]
    if name not in valid:
        raise ArgumentError(f"{flag} {name!r} is unknown; valid: {', '.join(valid)}")


def _check_run(path, flag="--run"):
    """A run folder (or, for export, a checkpoint file) whose checkpoint loads safely; reads only its epoch."""
    from .trainer.run import CHECKPOINT, checkpoint_epoch

    p = Path(path)
    if not p.exists():
        raise ArgumentError(f"{flag} {path}: no such run folder")
    ckpt = p if p.is_file() else p / CHECKPOINT
    if not ckpt.is_file():
        raise ArgumentError(f"{flag} {path}: not a run folder (no {CHECKPOINT}; did its first epoch finish?)")
    checkpoint_epoch(ckpt)      # weights_only, memory-mapped: a crafted or corrupt file is refused here
    return p


def _check_data_root(root, dataset, download, flag="--data-root"):
    if dataset in ("digits", "synthetic"):      # shipped with scikit-learn; random images
        return
    if root is None:
        raise ArgumentError(f"{flag} DIR is required for --dataset {dataset} (only digits, e.g. --preset digits, "
                            "needs no data root)")
    if download:
        p = Path(root)
        if p.exists() and not p.is_dir():
            raise ArgumentError(f"{flag} {root}: is a file, expected a folder")
        return
    check_input_dir(root, flag)


def _check_out_dir(args, *, resumable=None, known=None):
    """--out: new, empty, or (--overwrite) replaced; ``known`` lists what --overwrite removes."""
    out = Path(args.out)
    check_output_dir(out, "--out", overwrite=getattr(args, "overwrite", False), resumable=resumable)
    if getattr(args, "overwrite", False) and out.is_dir() and known:
        for name in known:
            for p in out.glob(name):
                shutil.rmtree(p) if p.is_dir() else p.unlink()


def _validate_train(args, train_config_from_args):
    from .trainer.run import CHECKPOINT, CONFIG

    _check_device(args.device)
    if args.resume:
        if args.preset is not None:
            raise ArgumentError("--preset cannot be given with --resume (the run keeps its own settings)")
        run = _check_run(args.resume, "--resume")
        if not (run / CONFIG).is_file():
            raise ArgumentError(f"--resume {args.resume}: not a run folder (no {CONFIG})")
        if args.data_root is not None:
            check_input_dir(args.data_root, "--data-root") if not args.download else None
        return
    if args.out is None:
        raise ArgumentError("--out RUN_DIR is required (or --resume RUN_DIR)")
    cfg = train_config_from_args(args)          # every setting's own check (TrainConfig.validate)
    from .data.datasets import DATASETS
    if cfg.dataset not in DATASETS:
        raise ArgumentError(f"--dataset {cfg.dataset!r} is unknown; valid: {', '.join(DATASETS)}")
    _check_data_root(cfg.data_root, cfg.dataset, cfg.download)
    out = Path(args.out)
    if (out / CHECKPOINT).exists() and not args.overwrite:
        raise ArgumentError(f"--out {args.out} already holds a run; continue it with superinfo train --resume "
                            f"{args.out}, pick another --out, or pass --overwrite to start it again")
    _check_out_dir(args, resumable=f"continue a run with superinfo train --resume {args.out}", known=RUN_FILES)


def validate(args, train_config_from_args=None) -> None:
    """Everything a command needs that argparse cannot check alone; raises ArgumentError, creates nothing.
    ``train_config_from_args(args)``: the TrainConfig a train command line asks for (superinfo.cli's; passed in so
    this module does not import the CLI)."""
    command = args.command
    if hasattr(args, "progress") and command in ("demo", "train") and args.progress is None:
        args.progress = progress_default(None)
    if command in ("world", "sweep-world"):
        _check_lower_bound(args.lower_bound, "--lower-bound")
        _check_out_dir(args, known=("world.json", "sweep.json", "world_sweep.png"))
    elif command == "train":
        _validate_train(args, train_config_from_args)
    elif command == "eval":
        _check_run(args.run)
        _check_device(args.device)
        if args.data_root is not None:
            check_input_dir(args.data_root, "--data-root")
        check_output_file(Path(args.run) / "eval.json", "--run", overwrite=True)
    elif command == "demo":
        if getattr(args, "resume", False):
            if not Path(args.out).is_dir():
                raise ArgumentError(f"--resume: {args.out} holds no demo to continue; run without --resume")
        else:
            _check_out_dir(args, resumable="continue an interrupted demo with --resume",
                           known=("untrained-seed*", "simclr-seed*", "superinfo-seed*", "eval.json", "demo.png"))
    elif command == "sweep":
        from .tools.sweep import SPEC_FILE
        _check_device(args.device)
        out = Path(args.out)
        if not (out / SPEC_FILE).exists():      # a sweep folder resumes (reruns skip finished points); others...
            _check_out_dir(args, resumable=None, known=("runs", "sweep.csv", "sweep.json", "sweep.png"))
        elif args.overwrite:
            _check_out_dir(args, known=("runs", "sweep.csv", "sweep.json", "sweep.png", SPEC_FILE))
        from .trainer.config import PRESETS
        dataset = args.dataset or PRESETS[args.preset]["dataset"]
        _check_data_root(args.data_root, dataset, args.download)
    elif command == "export":
        _check_run(args.run)
        check_output_file(args.out, "--out", overwrite=args.overwrite)
        check_output_file(f"{args.out}.json", "--out", overwrite=args.overwrite)
    elif command == "probe":
        _check_run(args.run)
        _check_device(args.device)
        if args.data_root is not None:
            check_input_dir(args.data_root, "--data-root")
    elif command == "transfer":
        _check_run(args.run)
        _check_device(args.device)
        _check_data_root(args.data_root, "transfer", args.download)
        check_output_file(Path(args.run) / "transfer.json", "--run", overwrite=True)


def interrupted(args) -> str | None:
    """After Ctrl-C: what is kept and how to continue."""
    command = args.command
    if command == "train":
        from .trainer.run import CHECKPOINT, checkpoint_epoch
        run = args.resume or args.out
        ckpt = Path(run) / CHECKPOINT if run else None
        if ckpt is None or not ckpt.exists():
            return "no epoch had finished, so no checkpoint was written"
        try:
            epoch = checkpoint_epoch(ckpt)
        except Exception:       # noqa: BLE001 -- a message, whatever the file holds
            epoch = "?"
        return f"{ckpt} holds the last finished epoch ({epoch}); continue with: superinfo train --resume {run}"
    if command == "sweep":
        return f"finished runs are in {args.out}/runs; run the same command again to continue"
    if command == "demo":
        return f"finished runs are in {args.out}; continue with the same command plus --resume"
    return None
