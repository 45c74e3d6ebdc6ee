"""Every ``superinfo`` check that argparse cannot make alone, in one place, before any compute.

Ranges and choices are checked while parsing: the train, sweep and world flags by the types their settings
declare (``superinfo.trainer.TrainConfig``, ``superinfo.world.WorldConfig``), the other commands' by the types
``superinfo.cli`` gives them.  ``validate(args)`` runs after parsing and before the command: files and folders
readable, outputs writable and not holding earlier results, settings that depend on each other.  It deletes
nothing: it sets ``args.replaces`` to the names ``--overwrite`` would replace, and the command runs inside
``mi_toolkit.cli_support.ReplaceOnSuccess``, which moves them aside and deletes them only once the new results
exist.  ``interrupted(args)`` is what Ctrl-C prints: what is on disk, how to continue.
"""
from __future__ import annotations

from pathlib import Path

from mi_toolkit.cli_support import (check_input_dir, check_not_in_use, check_output_dir, check_output_file,
                                    launched_rank, progress_default)
from mi_toolkit.errors import ArgumentError

__all__ = ["RESUMABLE", "RUN_FILES", "validate", "interrupted"]

# what each command writes into its --out: what --overwrite may replace (anything else there is left alone)
RUN_FILES = ("checkpoint.pt", "config.json", "log.csv", "eval.json", "transfer.json", "timing.json", "probe.json",
             "knn.png", "tb")
WORLD_FILES = ("world.json", "sweep.json", "world_sweep.png")
DEMO_FILES = ("untrained-seed*", "simclr-seed*", "superinfo-seed*", "eval.json", "demo.png")
SWEEP_FILES = ("runs", "sweep.csv", "sweep.json", "sweep.png", "sweep_bracket.png")
# what a command that stopped midway can continue from: then an --overwrite keeps the new run (and the old results
# aside) instead of restoring the old ones over it
RESUMABLE = {"train": lambda out: (out / "checkpoint.pt").exists(),
             "sweep": lambda out: any(out.glob("runs/*/checkpoint.pt")),
             "demo": lambda out: any(out.glob("*/checkpoint.pt"))}


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
    from .data.sources import needs_root
    if dataset != "transfer" and not needs_root(dataset):      # digits (shipped with scikit-learn), synthetic (random images)
        return
    if root is None:
        from .data.sources import SOURCES
        free = ", ".join(n for n, s in SOURCES.items() if not s.needs_root)
        raise ArgumentError(f"{flag} DIR is required for --dataset {dataset} (only {free} need no data root, e.g. "
                            "--preset digits)")
    if download:
        p = Path(root)
        if p.exists() and not p.is_dir():
            raise ArgumentError(f"{flag} {root}: is a file, expected a folder")
        return
    check_input_dir(root, flag)


def _check_root_is_used(cfg) -> None:
    """A --data-root given to a data set that reads none (digits, synthetic) would be ignored: the user almost
    certainly meant their own images."""
    from .data.sources import needs_root
    if cfg.data_root is not None and not needs_root(cfg.dataset):
        raise ArgumentError(f"--data-root {cfg.data_root} is not read by --dataset {cfg.dataset} (it needs no data "
                            "root); for your own images add --dataset imagefolder (class folders), or leave "
                            "--data-root out")


def _check_out_dir(args, *, resumable=None, known=()):
    """--out: not being written by another process, new, empty, or (--overwrite) to be replaced; ``known``: the
    names this command writes there, the only ones --overwrite replaces (``args.replaces``; nothing is touched
    here)."""
    args.replaces = ()
    if launched_rank() != 0:    # under torchrun rank 0 checks (and replaces) the folder for the group: the others
        return                  # would race its lock and its first writes
    check_not_in_use(args.out)
    check_output_dir(args.out, "--out", overwrite=getattr(args, "overwrite", False), resumable=resumable,
                     known=known)
    args.replaces = tuple(known) if getattr(args, "overwrite", False) else ()


def _validate_train(args):
    from .trainer.run import CHECKPOINT, CONFIG

    _check_device(args.device)
    if args.resume:
        if args.preset is not None:
            raise ArgumentError("--preset cannot be given with --resume (the run keeps its own settings)")
        check_not_in_use(args.resume, "--resume")
        run = _check_run(args.resume, "--resume")
        if not (run / CONFIG).is_file():
            raise ArgumentError(f"--resume {args.resume}: not a run folder (no {CONFIG})")
        if args.data_root is not None:
            check_input_dir(args.data_root, "--data-root") if not args.download else None
        if args.epochs is not None:
            from .trainer.run import checkpoint_epoch
            done = checkpoint_epoch(run / CHECKPOINT)
            if args.epochs < done:
                raise ArgumentError(f"--epochs {args.epochs}: the run in {args.resume} has already finished {done} "
                                    f"epoch(s); give --epochs {done} or more (or start a new run)")
        return
    if args.out is None:
        raise ArgumentError("--out RUN_DIR is required (or --resume RUN_DIR)")
    cfg = args.train_config         # built (and every setting checked) once, from the flags
    _check_data_root(cfg.data_root, cfg.dataset, cfg.download)
    _check_root_is_used(cfg)
    out = Path(args.out)
    check_not_in_use(out)
    if launched_rank() != 0:
        return
    if (out / CHECKPOINT).exists() and not args.overwrite:
        raise ArgumentError(f"--out {args.out} already holds a run; continue it with superinfo train --resume "
                            f"{args.out}, pick another --out, or pass --overwrite to start it again")
    if (out / CONFIG).exists() and not (out / CHECKPOINT).exists() and not args.overwrite:
        raise ArgumentError(f"--out {args.out} holds a run that stopped before its first epoch finished (no "
                            f"{CHECKPOINT}, so nothing to resume); start it again with --overwrite, or pick another "
                            "--out")
    _check_out_dir(args, resumable=f"continue a run with superinfo train --resume {args.out}", known=RUN_FILES)


def validate(args) -> None:
    """Everything a command needs that argparse cannot check alone; raises ArgumentError and leaves nothing behind
    (a write check creates and removes one temporary file; ``args.replaces``: what --overwrite will replace once
    the command succeeds)."""
    command = args.command
    args.replaces = ()
    if command in ("world", "sweep-world"):
        _check_lower_bound(args.lower_bound, "--lower-bound")
        _check_out_dir(args, known=WORLD_FILES)
    elif command == "train":
        _validate_train(args)
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
            _check_out_dir(args, resumable="continue an interrupted demo with --resume", known=DEMO_FILES)
    elif command == "sweep":
        from .tools.sweep import SPEC_FILE
        _check_device(args.device)
        out = Path(args.out)
        if not (out / SPEC_FILE).exists():      # a sweep folder resumes (reruns skip finished points); others...
            _check_out_dir(args, resumable=None, known=SWEEP_FILES)
        elif args.overwrite:
            _check_out_dir(args, known=SWEEP_FILES + (SPEC_FILE,))
        from .trainer.config import RUN_PRESETS
        dataset = args.dataset or RUN_PRESETS[args.preset]["dataset"]
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
    if getattr(getattr(args, "replaced", None), "outcome", None) == "restored":
        return "this run left nothing to continue from, so the earlier results were restored (see above)"
    if command == "train":
        from .trainer.run import CHECKPOINT, checkpoint_epoch
        run = args.resume or args.out
        ckpt = Path(run) / CHECKPOINT if run else None
        if ckpt is None or not ckpt.exists():
            again = "; start it again with the same command plus --overwrite" if args.out else ""
            return f"no epoch had finished, so no checkpoint was written{again}"
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
