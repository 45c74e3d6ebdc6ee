"""``superinfo``: the SuperInfo objective's experiments, the trainer, its evaluation, ablations and export.

    superinfo world --lambda 0.1 --bound kl --seed 0 --out DIR          one run on the multi-view world
    superinfo sweep-world --lambdas 0,0.01,0.1,1 --bounds kl,club --seeds 0,1,2 --out DIR
    superinfo train --preset cifar10 --data-root DIR --out RUN_DIR [--lambda-a 0.1 --epochs 100 ...]
    superinfo train --dataset imagefolder --data-root DIR --arch resnet18 --image-size 32 --epochs E \
        --batch-size B --lambda-a A --lambda-b B --out RUN_DIR
    superinfo train --resume RUN_DIR                                     continue from the last checkpoint
    torchrun --standalone --nproc_per_node=8 -m superinfo train --preset imagenet --data-root DIR --out RUN_DIR
    superinfo eval --run RUN_DIR --protocol linear|knn [--dataset NAME --data-root DIR]   writes RUN_DIR/eval.json
    superinfo export --run RUN_DIR --format torchvision|detectron2 --out FILE            writes FILE, FILE.json
    superinfo transfer --run RUN_DIR --datasets dtd,mnist,... --data-root DIR [--no-verify] [--download]
    superinfo sweep --preset digits --lambda-a 0,0.01 [--lambda-b ...] [--epochs 30,60] --seeds 0,1,2 --out DIR
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mi_toolkit.cli_support import HelpFormatter, float_arg, int_arg, int_list, name_list
from mi_toolkit.errors import ArgumentError
from mi_toolkit.settings import add_arguments, add_grid_arguments, field_parser

# what every command that writes results adds: results are never replaced without it
_OVERWRITE_HELP = "replace the results an existing --out holds (never without this flag; the old ones are kept " \
                  "until the new ones exist)"
_THREADS_HELP = "CPU threads (0: all cores)"


def _world_settings(p: argparse.ArgumentParser) -> None:
    """The WorldConfig flags shared by ``world`` and ``sweep-world`` (their defaults are the fields')."""
    from .world import WorldConfig

    g = p.add_argument_group("training and world (superinfo.world.WorldConfig)")
    add_arguments(g, WorldConfig, defaults=True)
    g.add_argument("--world-seed", type=int_arg(0), default=None, help="seed of the mixing matrices (default: --seed)")
    g.add_argument("--threads", type=int_arg(0), default=1, help=_THREADS_HELP)
    g.add_argument("--allow-negative-lambda", action="store_true",
                   help="accept lambda < 0 (rewards superfluous information)")


def _world_options(args) -> dict:
    """run_world's options from the parsed flags: every WorldConfig field (temperature only where it is used)."""
    from .world import DEFAULTS

    opts = {k: getattr(args, k) for k in DEFAULTS}
    if opts["lower_bound"] not in ("ntxent", "pairwise"):
        opts.pop("temperature")
    return opts


def build_parser() -> argparse.ArgumentParser:
    from .trainer.config import TrainConfig

    parser = argparse.ArgumentParser(prog="superinfo", description=__doc__, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command")
    lambda_type = field_parser(TrainConfig, "lambda_a")        # a finite number or 'auto'

    world = sub.add_parser("world", help="train on the multi-view world with one lambda; write DIR/world.json",
                           formatter_class=HelpFormatter)
    world.add_argument("--lambda", dest="lambda_a", type=lambda_type, required=True,
                       help="lambda_a: weight of the superfluous term I(v1;z1|v2), or 'auto' (world.json gets "
                            "lambda_final)")
    world.add_argument("--lambda-b", type=field_parser(TrainConfig, "lambda_b"), default=None,
                       help="weight of I(v2;z2|v1) (default: --lambda)")
    world.add_argument("--bound", default="kl", choices=["kl", "club"], help="upper bound on the conditional term")
    world.add_argument("--seed", type=int_arg(0), default=0, help="random seed")
    world.add_argument("--out", required=True, help="output folder")
    world.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    _world_settings(world)
    world.set_defaults(func=_cmd_world)

    sweep = sub.add_parser("sweep-world", help="lambda sweep over bounds and seeds; write sweep.json and a plot",
                           formatter_class=HelpFormatter)
    sweep.add_argument("--lambdas", type=field_parser(TrainConfig, "lambda_b", as_list=True),
                       default=[0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0], help="comma list of lambda values")
    sweep.add_argument("--bounds", type=name_list(("kl", "club"), "bounds"), default=["kl", "club"],
                       help="comma list of conditional bounds: kl, club")
    sweep.add_argument("--seeds", type=int_list(0), default=[0, 1, 2], help="comma list of seeds")
    sweep.add_argument("--out", required=True, help="output folder")
    sweep.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    _world_settings(sweep)
    sweep.set_defaults(func=_cmd_sweep)

    _add_train_parser(sub)
    _add_eval_parser(sub)
    _add_demo_parser(sub)
    _add_sweep_parser(sub)
    _add_export_parser(sub)
    _add_transfer_parser(sub)
    _add_probe_parser(sub)
    from mi_toolkit.cli_support import add_version
    add_version(parser)
    return parser


def _add_train_parser(sub) -> None:
    from .trainer.config import RUN_PRESETS, TrainConfig

    p = sub.add_parser("train", help="contrastive pre-training with the SuperInfo loss", formatter_class=HelpFormatter,
                       description="Train an encoder; RUN_DIR gets config.json, checkpoint.pt (each epoch), "
                                   "log.csv and eval.json.  Every preset value can be overridden.")
    p.add_argument("--preset", choices=sorted(RUN_PRESETS), help="paper protocol (sets --dataset too)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    g = p.add_argument_group("settings (superinfo.trainer.TrainConfig; default: the preset's value)")
    add_arguments(g, TrainConfig)
    p.add_argument("--dist-backend", default="auto", choices=["auto", "nccl", "gloo"],
                   help="torch.distributed backend under torchrun (auto: nccl on CUDA, gloo on CPU)")
    p.add_argument("--threads", type=int_arg(0), default=0, help=_THREADS_HELP)
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.set_defaults(func=_cmd_train)


def _add_demo_parser(sub) -> None:
    from .trainer.config import TrainConfig

    p = sub.add_parser("demo", formatter_class=HelpFormatter,
                       help="the embedded default: untrained vs SimCLR vs SuperInfo (automatic lambda) on "
                            "scikit-learn's digits, with the superfluous bracket (CPU, minutes)")
    p.add_argument("--out", default="demo-out", help="folder for the runs, eval.json and demo.png")
    p.add_argument("--seeds", type=int_list(0), default=[0, 1, 2], help="comma list of seeds")
    p.add_argument("--lambda", dest="lambda_superinfo", type=field_parser(TrainConfig, "lambda_a"), default="auto",
                   help="SuperInfo's lambda_a (= lambda_b), or 'auto' (default: automatic lambda, no hand tuning)")
    p.add_argument("--no-bracket", dest="bracket", action="store_false",
                   help="skip the superfluous-information bracket (superinfo probe) of each run")
    p.add_argument("--conditional", default=None, choices=["kl", "club"],
                   help="upper bound on the conditional terms (default: the preset's)")
    p.add_argument("--epochs", type=int_arg(1), default=None, help="pre-training epochs (default: the digits preset's)")
    p.add_argument("--threads", type=int_arg(0), default=0, help=_THREADS_HELP)
    p.add_argument("--progress", action="store_true", default=None,
                   help="progress bars (default: on when stderr is a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--max-steps-per-epoch", type=int_arg(1), default=None,
                   help="cap on steps per epoch (smoke runs; default: every batch)")
    p.add_argument("--width", type=int_arg(1), default=None, help="backbone width (default: the digits preset's, 8)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted demo in --out (finished runs are kept)")
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from .tools.demo import format_summary, run_demo

    _set_threads(args.threads)
    smoke = {k: v for k, v in (("max_steps_per_epoch", args.max_steps_per_epoch), ("width", args.width))
             if v is not None}
    result = run_demo(args.out, seeds=list(args.seeds), lambda_superinfo=args.lambda_superinfo, epochs=args.epochs,
                      progress=args.progress, conditional=args.conditional, bracket=args.bracket, **smoke)
    print(format_summary(result))
    print(f"wrote {Path(args.out) / 'eval.json'} and {Path(args.out) / 'demo.png'} in {result['seconds']:.0f} s")
    return 0


def _sweep_overridable(f, s) -> bool:
    """The train settings a sweep takes as flags: not its grid axes (comma lists of their own), not the run folder
    (the sweep names it), not the progress switch (the sweep's own) and not sync_bn (a sweep runs one process)."""
    return s.grid is None and f.name not in ("out", "progress", "sync_bn")


def _add_sweep_parser(sub) -> None:
    from .trainer.config import RUN_PRESETS, TrainConfig
    from .trainer.evaluate import PROTOCOLS

    p = sub.add_parser("sweep", formatter_class=HelpFormatter,
                       help="ablation grid over lambda_a, lambda_b, epochs and seeds from a preset; "
                            "writes DIR/sweep.csv, sweep.json, sweep.png",
                       description="Train and evaluate every grid point as a run folder DIR/runs/<name>, then "
                                   "collect one table (every run; mean and std over seeds) and a plot.  Rerunning "
                                   "the command skips finished runs and resumes interrupted ones.")
    p.add_argument("--preset", required=True, choices=sorted(RUN_PRESETS), help="the preset the grid starts from")
    grid = p.add_argument_group("the grid (comma lists; lambda_b left out: tied to lambda_a; 'auto' in lambda_a: "
                                "automatic lambda, lambda_b tied; epochs left out: the preset's; seeds: 0)")
    add_grid_arguments(grid, TrainConfig, required=("lambda_a",))
    p.add_argument("--protocols", type=name_list(PROTOCOLS, "protocols"), default=["linear", "knn"],
                   help="evaluations: linear,knn")
    p.add_argument("--out", required=True, help="sweep folder")
    p.add_argument("--extend", action="store_true",
                   help="add this grid's points to an existing sweep folder that holds another grid")
    g = p.add_argument_group("train settings (superinfo.trainer.TrainConfig; default: the preset's value)")
    add_arguments(g, TrainConfig, include=_sweep_overridable)
    p.add_argument("--no-progress", dest="progress", action="store_false", default=True,
                   help="no progress bars (grid points and epochs)")
    p.add_argument("--bracket", action="store_true",
                   help="also measure each run's superfluous-information bracket (superinfo probe: RUN/probe.json; "
                        "columns superfluous_lower_nats, superfluous_upper_nats_head; sweep_bracket.png)")
    p.add_argument("--threads", type=int_arg(0), default=0, help=_THREADS_HELP)
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.set_defaults(func=_cmd_sweep_grid)


def _sweep_overrides(args) -> dict:
    """The train settings a sweep command line gives (the rest stay the preset's)."""
    from mi_toolkit.settings import settings_of
    from .trainer.config import TrainConfig
    return {f.name: getattr(args, f.name) for f, s in settings_of(TrainConfig)
            if s.cli and _sweep_overridable(f, s) and getattr(args, f.name) is not None}


def _cmd_sweep_grid(args) -> int:
    from .tools.sweep import SweepSpec, format_table, run_sweep

    _set_threads(args.threads)
    spec = SweepSpec(args.preset, lambdas_a=tuple(args.grid_lambda_a),
                     lambdas_b=None if args.grid_lambda_b is None else tuple(args.grid_lambda_b),
                     epochs=None if args.grid_epochs is None else tuple(args.grid_epochs),
                     seeds=tuple(args.grid_seed or (0,)), protocols=tuple(args.protocols),
                     overrides=_sweep_overrides(args))
    table = run_sweep(spec, args.out, extend=args.extend, progress=args.progress, bracket=args.bracket)
    print(format_table(table))
    print(f"wrote {Path(args.out) / 'sweep.csv'}, sweep.json and sweep.png ({table['wall_seconds']:.0f} s)")
    return 0


def _add_eval_parser(sub) -> None:
    from .trainer.evaluate import EVAL_PROTOCOLS

    p = sub.add_parser("eval", formatter_class=HelpFormatter,
                       help="linear or kNN evaluation of a run on frozen features; writes RUN_DIR/eval.json")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run folder (config.json + checkpoint.pt)")
    p.add_argument("--protocol", required=True, choices=list(EVAL_PROTOCOLS),
                   help="linear (logistic regression by Adam), knn, or logreg (L-BFGS logistic regression with its L2 "
                        "chosen on a validation split of the training split: SimCLR's appendix protocol)")
    p.add_argument("--dataset", help="default: the run's dataset")
    p.add_argument("--data-root", help="default: the run's data root")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=int_arg(1), default=256, help="images per feature batch")
    p.add_argument("--num-workers", type=int_arg(0), default=None, help="DataLoader worker processes")
    p.add_argument("--k", type=int_arg(1), default=None,
                   help="kNN neighbours, at most the training set size (default: 200, capped at it)")
    p.add_argument("--temperature", type=float_arg(0, min_open=True), default=0.1, help="kNN vote temperature")
    p.add_argument("--epochs", type=int_arg(1), default=100, help="linear classifier epochs")
    p.add_argument("--lr", type=float_arg(0, min_open=True), default=1e-2,    # = trainer.evaluate.LINEAR_LR (tested)
                   help="linear classifier learning rate (Adam, cosine)")
    p.add_argument("--weight-decay", type=float_arg(0), default=0.0, help="linear classifier weight decay")
    p.add_argument("--bracket", action="store_true",
                   help="also measure the superfluous-information bracket (superinfo probe) and add it to eval.json "
                        "(a probe.json of the same checkpoint is added without this flag)")
    p.add_argument("--threads", type=int_arg(0), default=0, help=_THREADS_HELP)
    p.set_defaults(func=_cmd_eval)


def _set_threads(n: int) -> None:
    import os

    import torch
    torch.set_num_threads(n if n > 0 else (os.cpu_count() or 1))


def train_config_from_args(args):
    """The ``TrainConfig`` a ``superinfo train`` command line asks for (not for --resume): the preset, or the data
    set's own preset (a data set without one starts from cifar10's), with every flag given laid over it."""
    from .trainer.config import RUN_PRESETS, preset_config

    overrides = _train_settings(args)
    if args.preset is not None:
        return preset_config(args.preset, **overrides)
    if overrides.get("dataset") is None:
        raise ArgumentError("give --preset NAME or --dataset NAME")
    base = overrides["dataset"] if overrides["dataset"] in RUN_PRESETS else "cifar10"
    return preset_config(base, **overrides)


def _train_settings(args) -> dict:
    """Every TrainConfig flag the command line gave (None: not given)."""
    from mi_toolkit.settings import settings_of
    from .trainer.config import TrainConfig
    return {f.name: getattr(args, f.name) for f, s in settings_of(TrainConfig)
            if s.cli and getattr(args, f.name) is not None}


def _cmd_train(args) -> int:
    from .trainer.distributed import init_from_env, launched_by_torchrun

    _set_threads(args.threads)
    ctx = init_from_env(args.dist_backend, _run_device(args))   # a no-op unless launched by torchrun
    try:
        return _train_or_resume(args, quiet=not ctx.is_main)
    finally:
        if launched_by_torchrun():
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _run_device(args) -> str:
    """The device this invocation trains on: --device, else the resumed run's, else auto (picks NCCL or gloo)."""
    if args.device is None and args.resume and (Path(args.resume) / "config.json").exists():
        return json.loads((Path(args.resume) / "config.json").read_text()).get("device", "auto")
    return args.device or "auto"


def _train_or_resume(args, quiet: bool) -> int:
    from .trainer.loop import resume, train

    if args.resume:
        if args.out is not None and args.out != args.resume:
            raise ArgumentError("--out must be left out (or equal --resume) when resuming")
        overrides = {k: v for k, v in _train_settings(args).items() if k != "out"}
        summary = resume(args.resume, **overrides)
    else:
        summary = train(args.train_config)      # built and checked once, by cli_checks.validate
    if quiet:        # ranks other than 0 under torchrun
        return 0
    row = summary.get("last_log") or {}
    print(f"epoch {summary['epoch']}, step {summary['step']}: loss {row.get('loss', float('nan')):.4f}  "
          f"probe acc {row.get('probe_acc', '')}")
    if "eval" in summary:
        ev = summary["eval"]
        print(f"{ev['protocol']} top-1: {100 * ev['top1']:.2f}%")
    print(f"run folder: {summary['run_dir']}")
    return 0


def _cmd_eval(args) -> int:
    from .tools.probe import read_bracket
    from .trainer.evaluate import evaluate_run

    _set_threads(args.threads)
    kw = dict(batch_size=args.batch_size, temperature=args.temperature, linear_epochs=args.epochs,
              linear_lr=args.lr, linear_weight_decay=args.weight_decay)
    if args.k is not None:      # given: it must fit in the training set (checked before any features are computed)
        kw.update(k=args.k, strict_k=True)
    if args.num_workers is not None:
        kw["num_workers"] = args.num_workers
    r = evaluate_run(args.run, args.protocol, dataset=args.dataset, data_root=args.data_root, device=args.device,
                     **kw)
    lo, hi = r["top1_ci95"]
    chosen = f"; l2 {r['l2']:.3g} chosen on {r['n_val']} validation images" if "l2" in r else ""
    print(f"{r['protocol']} top-1: {100 * r['top1']:.2f}% (95 % CI over test images {100 * lo:.2f}-{100 * hi:.2f})  "
          f"({r['n_train']} train / {r['n_test']} test images; checkpoint epoch {r['checkpoint_epoch']}{chosen})")
    if args.bracket or read_bracket(args.run, r["checkpoint_epoch"]) is not None:
        r = _eval_with_bracket(args, r)
    print(f"wrote {args.run}/eval.json")
    return 0


def _eval_with_bracket(args, r: dict) -> dict:
    """eval.json gains the run's superfluous bracket (measured now with --bracket, else read from probe.json)."""
    from .tools.probe import BRACKET_SETTINGS, probe_run, read_bracket
    from .trainer.evaluate import write_eval

    bracket = read_bracket(args.run, r["checkpoint_epoch"])
    if bracket is None or args.bracket:
        probe = probe_run(args.run, device=args.device, data_root=args.data_root, **BRACKET_SETTINGS)
        bracket = read_bracket(args.run, r["checkpoint_epoch"]) or {}
        seed_note = f" ({probe['estimator']}, held out)"
    else:
        seed_note = " (from probe.json)"
    r = dict(r, **bracket)
    write_eval(args.run, r)
    print(f"superfluous information of the backbone: lower bound {bracket['superfluous_lower_nats']:.3f} ± "
          f"{bracket['superfluous_lower_stderr']:.3f} nats{seed_note}; the head's kl upper bound "
          f"{bracket['superfluous_upper_nats_head']:.2f} nats")
    return r


def _add_export_parser(sub) -> None:
    p = sub.add_parser("export", formatter_class=HelpFormatter,
                       help="export a run's backbone for torchvision or detectron2 (writes FILE and FILE.json); see "
                            "docs/export.md")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run folder (or a checkpoint file)")
    p.add_argument("--format", default="torchvision", choices=["torchvision", "detectron2"],
                   help="torchvision: a plain ResNet state dict (.pt); detectron2: its .pkl model-zoo layout")
    p.add_argument("--out", required=True, metavar="FILE", help="output file")
    p.add_argument("--with-probe", action="store_true",
                   help="torchvision only: include the run's online linear probe as fc")
    p.add_argument("--overwrite", action="store_true", help="replace an existing FILE and FILE.json")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> int:
    from .tools.export import export_backbone

    meta = export_backbone(args.run, args.out, args.format, include_probe=args.with_probe)
    stem = "CIFAR stem (3x3 conv1, no max-pool)" if meta["cifar_stem"] else "ImageNet stem"
    print(f"exported {meta['arch']} ({stem}, {meta['num_keys']} tensors, checkpoint epoch "
          f"{meta['checkpoint_epoch']}) as {meta['format']} to {args.out}")
    print(f"wrote {args.out}.json (how to load it)")
    return 0


def _add_probe_parser(sub) -> None:
    p = sub.add_parser("probe", formatter_class=HelpFormatter,
                       help="the superfluous-information bracket of a run: a lower bound from what its features know "
                            "about their own view's augmentation, the kl upper bound; writes RUN_DIR/probe.json")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run folder (config.json + checkpoint.pt)")
    p.add_argument("--features", default="backbone", choices=["backbone", "head"],
                   help="backbone features h (what evaluation reads) or the head's z (default: backbone)")
    p.add_argument("--estimator", default="infonce",
                   help="mi_toolkit estimator of I(features; augmentation parameters) (default: infonce, a lower "
                        "bound)")
    p.add_argument("--images", type=int_arg(2), default=2000, help="images per split (default: 2000)")
    p.add_argument("--views", type=int_arg(2), default=4, help="recorded views per image (default: 4)")
    p.add_argument("--steps", type=int_arg(1), default=None, help="estimator training steps (default: estimate()'s)")
    p.add_argument("--batch-size", type=int_arg(2), default=None,
                   help="estimator batch size (default: estimate()'s; small data sets need a smaller one)")
    p.add_argument("--data-root", default=None, help="the data (default: the run's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int_arg(0), default=0, help="random seed")
    p.add_argument("--threads", type=int_arg(0), default=0, help=_THREADS_HELP)
    p.set_defaults(func=_cmd_probe)


def _cmd_probe(args) -> int:
    from .tools.probe import _check_run, format_bracket, probe_run

    _set_threads(args.threads)
    _check_run(args.run)
    extra = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size)) if v is not None}
    result = probe_run(args.run, features=args.features, estimator=args.estimator, images=args.images,
                       views=args.views, seed=args.seed, device=args.device, data_root=args.data_root, **extra)
    print(format_bracket(result))
    print(f"wrote {Path(args.run) / 'probe.json'}")
    return 0


def _add_transfer_parser(sub) -> None:
    from .tools.transfer import TRANSFER_DATASETS

    p = sub.add_parser("transfer", formatter_class=HelpFormatter,
                       help="linear evaluation of a run's frozen backbone on transfer datasets; writes "
                            "RUN_DIR/transfer.json")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run folder (config.json + checkpoint.pt)")
    p.add_argument("--datasets", type=name_list(TRANSFER_DATASETS, "datasets"), default=list(TRANSFER_DATASETS),
                   help=f"comma list of {','.join(TRANSFER_DATASETS)} (default: all)")
    p.add_argument("--data-root", required=True, help="folder holding the datasets in torchvision's layouts")
    p.add_argument("--download", action="store_true", help="fetch missing datasets through torchvision")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the md5 checks (files you made or converted yourself); structure is still checked")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=int_arg(1), default=256, help="images per feature batch")
    p.add_argument("--num-workers", type=int_arg(0), default=0, help="DataLoader worker processes")
    p.add_argument("--epochs", type=int_arg(1), default=100, help="linear classifier epochs")
    p.add_argument("--lr", type=float_arg(0, min_open=True), default=1e-2,    # = trainer.evaluate.LINEAR_LR (tested)
                   help="linear classifier learning rate (Adam, cosine)")
    p.add_argument("--weight-decay", type=float_arg(0), default=0.0, help="linear classifier weight decay")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--threads", type=int_arg(0), default=0, help=_THREADS_HELP)
    p.set_defaults(func=_cmd_transfer)


def _cmd_transfer(args) -> int:
    from .tools.transfer import run_transfer

    _set_threads(args.threads)
    r = run_transfer(args.run, args.datasets, args.data_root, download=args.download, verify=args.verify,
                     device=args.device, linear_epochs=args.epochs, linear_lr=args.lr,
                     linear_weight_decay=args.weight_decay, batch_size=args.batch_size, num_workers=args.num_workers,
                     progress=args.progress)
    for name in args.datasets:
        entry = r["datasets"][name]
        print(f"{name:14s} linear top-1 {100 * entry['top1']:6.2f}%  ({entry['n_train']} train / "
              f"{entry['n_test']} test images)")
    print(f"wrote {Path(args.run) / 'transfer.json'}")
    return 0


def _fmt(v, pct=False):
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


def _cmd_world(args) -> int:
    from .world import run_world

    r = run_world(args.lambda_a, args.lambda_b, args.bound, args.seed, world_seed=args.world_seed,
                  allow_negative_lambda=args.allow_negative_lambda, out=args.out, **_world_options(args))
    print(f"lambda={r['lambda']} lambda_b={r['lambda_b']} (final {r['lambda_final']:.4g}) bound={r['bound']} "
          f"seed={r['seed']}  "
          f"({r['seconds']:.1f} s)")
    if r["before"] is not None:
        b, a = r["before"], r["after"]
        print(f"{'exact nats':24s}{'before':>10s}{'after':>10s}")
        for key, label in (("superfluous_1", "I(z1;v1|v2) superfluous"), ("i_z1_s", "I(z1;s)"),
                           ("i_z1_t1", "I(z1;t1)"), ("i_z1_z2", "I(z1;z2)")):
            print(f"{label:24s}{b[key]:10.3f}{a[key]:10.3f}")
    print(f"probe accuracy: shared {_fmt(r['shared_probe_acc'], True)}  t1 {_fmt(r['t1_probe_acc'], True)}"
          f"  (Bayes: shared {_fmt(r['shared_bayes_acc'], True)}  t1 {_fmt(r['t1_bayes_acc'], True)})")
    print(f"wrote {args.out}/world.json")
    return 0


def _cmd_sweep(args) -> int:
    from .world import run_sweep

    def progress(r):
        print(f"  {r['bound']:4s} lambda={r['lambda']:<6g} seed={r['seed']}  superfluous={_fmt(r['superfluous_nats'])}"
              f"  shared acc={_fmt(r['shared_probe_acc'])}  t1 acc={_fmt(r['t1_probe_acc'])}  "
              f"({r['seconds']:.1f} s)", flush=True)

    sweep = run_sweep(args.lambdas, args.bounds, args.seeds, out=args.out, progress=progress,
                      world_seed=args.world_seed, allow_negative_lambda=args.allow_negative_lambda, **_world_options(args))
    print(f"\n{'bound':6s}{'lambda':>8s}{'superfluous nats':>20s}{'shared acc':>18s}{'t1 acc':>18s}")
    for row in sweep["summary"]:
        def ms(key):
            return f"{row[key]:.3f} ± {row[key + '_std']:.3f}" if key in row else "n/a"
        print(f"{row['bound']:6s}{row['lambda']:8g}{ms('superfluous_nats'):>20s}{ms('shared_probe_acc'):>18s}"
              f"{ms('t1_probe_acc'):>18s}")
    print(f"wrote {args.out}/sweep.json and {args.out}/world_sweep.png")
    return 0


def _dispatch(args) -> int:
    if args.command is None:
        build_parser().print_help()
        return 0
    from mi_toolkit.cli_support import (FolderLock, ReplaceOnSuccess, created_dir_guard, launched_rank,
                                        progress_default, resolve_threads)

    from .cli_checks import RESUMABLE, validate
    if hasattr(args, "progress") and args.command in ("demo", "train") and args.progress is None:
        args.progress = progress_default(None)      # before the config is built: it records the setting
    if args.command == "train":         # the one TrainConfig of this command line, built once
        args.train_config = train_config_from_args(args) if not args.resume and args.out is not None else None
    validate(args)  # every file, folder and cross-setting check, before any compute; deletes nothing
    import torch

    torch.set_num_threads(resolve_threads(getattr(args, "threads", 1)))
    out = getattr(args, "out", None) if args.command in ("world", "sweep-world", "train", "demo", "sweep") else None
    written = getattr(args, "resume", None) if args.command == "train" and args.resume else out
    # one live writer per folder (rank 0 under torchrun takes the lock for all); a command that fails leaves no
    # empty folder it created behind; the results --overwrite replaces are deleted only once the new ones exist
    rank0 = launched_rank() == 0
    lock = FolderLock(written if rank0 else None, "--resume" if written is not out else "--out")
    replaced = ReplaceOnSuccess(out if rank0 else None, args.replaces, prog=f"superinfo {args.command}",
                                resumable=RESUMABLE.get(args.command))
    args.replaced = replaced        # what Ctrl-C's message reads (interrupted)
    with created_dir_guard(out), lock, replaced:
        return args.func(args)


def main(argv=None) -> int:
    """The ``superinfo`` command; returns the exit status (2: a usage or data error, printed as ``error: ...``;
    1: a run that failed, e.g. a non-finite loss; 130: Ctrl-C)."""
    from mi_toolkit.cli_support import run_cli
    try:        # imports torch: seconds, during which Ctrl-C is an answer, not a traceback
        from .cli_checks import interrupted
        from .trainer.loop import NonFiniteLossError
    except KeyboardInterrupt:
        print("\nsuperinfo: interrupted while starting; nothing was run", file=sys.stderr)
        return 130
    # the run itself failed (exit 1): its message names the last good checkpoint
    return run_cli("superinfo", build_parser, argv, _dispatch, handlers=[(NonFiniteLossError, 1)],
                   interrupted=interrupted)


if __name__ == "__main__":
    sys.exit(main())
