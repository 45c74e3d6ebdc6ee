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

from mi_toolkit.errors import ArgumentError
from mi_toolkit.validation import parse_floats, parse_ints, parse_names


def _sigma(text: str):
    if text in ("learned", "amortized"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sigma takes a number > 0, 'learned' or 'amortized', got {text!r}") from None


def _add_world_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``world`` and ``sweep-world`` (defaults from ``superinfo.world.DEFAULTS``)."""
    from .world import DEFAULTS

    g = p.add_argument_group("training and world")
    g.add_argument("--lower-bound", default=DEFAULTS["lower_bound"],
                   help="lower bound on I(z1;z2): pairwise (default: the one-direction InfoNCE bound, so that the "
                        "exact I(z1;z2) and its bound compare), ntxent (SimCLR's) or one of the mi_toolkit registry")
    g.add_argument("--temperature", type=float, default=DEFAULTS["temperature"], help="NT-Xent temperature")
    g.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    g.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    g.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    g.add_argument("--z-dim", type=int, default=DEFAULTS["z_dim"])
    g.add_argument("--sigma", type=_sigma, default=DEFAULTS["sigma"],
                   help="encoder noise: a fixed number, 'learned' (bounded, per dimension) or 'amortized'")
    g.add_argument("--encoder-layers", type=int, default=DEFAULTS["encoder_layers"],
                   help="hidden layers of each head (0: linear, the only case with exact information)")
    g.add_argument("--hidden", type=int, default=DEFAULTS["hidden"])
    g.add_argument("--world", default=DEFAULTS["world"], choices=["linear", "nonlinear", "entangled"],
                   help="linear (t1 in view 1's nuisance), entangled (t1 on the shared directions) or nonlinear")
    g.add_argument("--backbone-dim", type=int, default=DEFAULTS["backbone_dim"],
                   help="width of a noisy linear backbone between each view and its head (0: none); the probes "
                        "read it")
    g.add_argument("--backbone-noise", type=float, default=DEFAULTS["backbone_noise"],
                   help="std of the backbone's noise")
    g.add_argument("--t1-std", type=float, default=DEFAULTS["t1_std"], help="entangled world: std of t1")
    g.add_argument("--shared-dim", type=int, default=DEFAULTS["shared_dim"])
    g.add_argument("--nuisance-dim", type=int, default=DEFAULTS["nuisance_dim"])
    g.add_argument("--t1-dim", type=int, default=DEFAULTS["t1_dim"])
    g.add_argument("--noise-std", type=float, default=DEFAULTS["noise_std"],
                   help="std of e1, e2: how differently the two views see the shared part")
    g.add_argument("--world-seed", type=int, default=None, help="seed of the mixing matrices (default: --seed)")
    g.add_argument("--probe-samples", type=int, default=DEFAULTS["probe_samples"])
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--allow-negative-lambda", action="store_true",
                   help="accept lambda < 0 (rewards superfluous information)")


def _world_options(args) -> dict:
    keys = ["lower_bound", "temperature", "steps", "batch_size", "lr", "z_dim", "sigma", "encoder_layers", "hidden",
            "world", "shared_dim", "nuisance_dim", "t1_dim", "noise_std", "probe_samples", "backbone_dim",
            "backbone_noise", "t1_std"]
    opts = {k: getattr(args, k) for k in keys}
    if opts["lower_bound"] not in ("ntxent", "pairwise"):
        opts.pop("temperature")
    return opts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="superinfo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")

    world = sub.add_parser("world", help="train on the multi-view world with one lambda; write DIR/world.json")
    world.add_argument("--lambda", dest="lambda_a", type=_lambda, required=True,
                       help="lambda_a: weight of the superfluous term I(v1;z1|v2), or 'auto' (world.json gets "
                            "lambda_final)")
    world.add_argument("--lambda-b", type=float, default=None, help="weight of I(v2;z2|v1) (default: --lambda)")
    world.add_argument("--bound", default="kl", choices=["kl", "club"], help="upper bound on the conditional term")
    world.add_argument("--seed", type=int, default=0)
    world.add_argument("--out", required=True, help="output folder")
    _add_world_options(world)
    world.set_defaults(func=_cmd_world)

    sweep = sub.add_parser("sweep-world", help="lambda sweep over bounds and seeds; write sweep.json and a plot")
    sweep.add_argument("--lambdas", type=parse_floats, default=[0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0])
    sweep.add_argument("--bounds", type=parse_names, default=["kl", "club"])
    sweep.add_argument("--seeds", type=parse_ints, default=[0, 1, 2])
    sweep.add_argument("--out", required=True, help="output folder")
    _add_world_options(sweep)
    sweep.set_defaults(func=_cmd_sweep)

    _add_train_parser(sub)
    _add_eval_parser(sub)
    _add_demo_parser(sub)
    _add_sweep_parser(sub)
    _add_export_parser(sub)
    _add_transfer_parser(sub)
    _add_probe_parser(sub)
    from mi_toolkit.cli_support import add_version

    from .cli_checks import harden
    add_version(parser)
    return harden(parser)       # every option's range, help and default; --overwrite where results are written


def _lambda(text: str):
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def _lambdas(text: str) -> list:
    """A comma list of numbers and 'auto' (sweep --lambda-a)."""
    items = text.split(",")
    if not text.strip() or any(not item.strip() for item in items):
        raise argparse.ArgumentTypeError(f"expected a comma list of numbers or 'auto' with no empty item, got {text!r}")
    return [_lambda(item.strip()) for item in items]


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


# (flag, TrainConfig field, type, help) of the train overrides: every one defaults to None = "keep the preset's"
_TRAIN_OVERRIDES = [
    ("--dataset", "dataset", str, "dataset name of superinfo.data (cifar10, stl10, imagenet, imagefolder, digits)"),
    ("--arch", "arch", str, "tiny, resnet18 or resnet50"),
    ("--width", "width", int, "backbone width (64 for the standard ResNets)"),
    ("--cifar-stem", "cifar_stem", _bool, "3x3 stride-1 stem without max-pool (true/false)"),
    ("--image-size", "image_size", int, "crop size (default: the data preset's)"),
    ("--epochs", "epochs", int, None), ("--batch-size", "batch_size", int, None),
    ("--optimizer", "optimizer", str, "adam, adamw, sgd or lars"),
    ("--lr", "lr", float, "peak learning rate"), ("--weight-decay", "weight_decay", float, None),
    ("--momentum", "momentum", float, None), ("--warmup-epochs", "warmup_epochs", float, None),
    ("--final-lr-factor", "final_lr_factor", float, "cosine floor as a fraction of the peak lr"),
    ("--method", "method", str, "simclr (NT-Xent alone) or superinfo (NT-Xent + the superfluous penalty)"),
    ("--lambda-a", "lambda_a", _lambda, "weight of the superfluous term I(v1;z1|v2), or 'auto' (one multiplier for "
                                         "both terms, tuned to keep the contrastive estimate within --lambda-slack)"),
    ("--lambda-b", "lambda_b", float, "weight of I(v2;z2|v1) (default: --lambda-a).  With one head and a fixed or "
                                      "learned sigma KL(p1||p2) = KL(p2||p1), so only lambda_a + lambda_b matters; "
                                      "they differ only with --sigma amortized"),
    ("--lambda-warmup-epochs", "lambda_warmup_epochs", float, "epochs at lambda = 0 first (default: 20%% of "
                                                              "--epochs)"),
    ("--lambda-ramp-epochs", "lambda_ramp_epochs", float, "epochs of the linear ramp to lambda after the warm-up "
                                                          "(default: 20%% of --epochs; not used by auto)"),
    ("--lambda-slack", "lambda_slack", float, "auto: the share of the contrastive estimate the penalty may cost "
                                              "(default 0.05)"),
    ("--contrastive", "lower_bound", str, "the contrastive term: ntxent (SimCLR's, default), pairwise (the "
                                          "one-direction InfoNCE bound) or a lower bound of the mi_toolkit registry"),
    ("--conditional", "conditional", str, "upper bound on the conditional terms: kl or club"),
    ("--temperature", "temperature", float, "NT-Xent temperature"),
    ("--kernel-backend", "kernel_backend", str, "NT-Xent path: auto (fused kernel from 2048 rows), matrix, naive, "
                                                "chunked or triton"),
    ("--z-dim", "z_dim", int, "projection dimension (128)"), ("--head-hidden", "head_hidden", int, None),
    ("--head-layers", "head_layers", int, None),
    ("--sigma", "sigma", _sigma, "head noise: a number, 'learned' or 'amortized'"),
    ("--mean-on-sphere", "mean_on_sphere", _bool, "the head's mean on the unit sphere, so the kl term is bounded by "
                                                  "2 / sigma^2 (--mean-on-sphere, or true/false; on in the digits "
                                                  "preset)"),
    ("--probe-lr", "probe_lr", float, "online linear probe learning rate"),
    ("--final-eval", "final_eval", str, "evaluation at the end of training: knn, linear or none"),
    ("--knn-k", "knn_k", int, None), ("--knn-temperature", "knn_temperature", float, None),
    ("--seed", "seed", int, None), ("--num-workers", "num_workers", int, None),
    ("--device", "device", str, "auto, cpu, cuda, cuda:1, ..."), ("--amp", "amp", str, "auto, none, bf16, fp16"),
    ("--channels-last", "channels_last", _bool, "true/false (default: on CUDA)"),
    ("--log-every", "log_every", int, "steps per CSV row"),
    ("--stop-after-epochs", "stop_after_epochs", int, "stop (resumably) after this many epochs of this call"),
    ("--max-steps-per-epoch", "max_steps_per_epoch", int, "cap on steps per epoch (smoke runs)"),
    ("--data-pipeline", "data_pipeline", str, "device (uint8 images on the device, batched augmentation there), "
                                              "loader (DataLoader, per-image CPU transforms) or auto (default: device "
                                              "on CUDA when the images fit in 8 GiB and a quarter of the GPU)"),
    ("--compile", "compile", _bool, "torch.compile the model and the loss (--compile, or true/false; default "
                                    "false)"),
    ("--synthetic-size", "synthetic_size", int, "images of --dataset synthetic (random uint8 images; default 50000)"),
]

_BARE_TRUE = {"compile", "mean_on_sphere"}      # true/false overrides that also stand alone as a switch


def _add_train_parser(sub) -> None:
    from .trainer.config import PRESETS

    p = sub.add_parser("train", help="contrastive pre-training with the SuperInfo loss",
                       description="Train an encoder; RUN_DIR gets config.json, checkpoint.pt (each epoch), "
                                   "log.csv and eval.json.  Every preset value can be overridden.")
    p.add_argument("--preset", choices=sorted(PRESETS), help="paper protocol (sets --dataset too)")
    p.add_argument("--data-root", help="dataset folder")
    p.add_argument("--out", help="run folder")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    g = p.add_argument_group("overrides (default: the preset's value)")
    for flag, dest, typ, hlp in _TRAIN_OVERRIDES:
        bare = {"nargs": "?", "const": True} if dest in _BARE_TRUE else {}    # --compile = --compile true
        g.add_argument(flag, dest=dest, type=typ, default=None, help=hlp, **bare)
    g.add_argument("--allow-negative-lambda", action="store_true", default=None)
    g.add_argument("--no-probe", dest="probe", action="store_false", default=None, help="no online linear probe")
    g.add_argument("--download", action="store_true", default=None)
    g.add_argument("--no-verify", dest="verify", action="store_false", default=None)
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    g.add_argument("--sync-bn", dest="sync_bn", action="store_true", default=None,
                   help="BatchNorm statistics over the global batch (needs torchrun with >1 process; imagenet preset)")
    g.add_argument("--no-sync-bn", dest="sync_bn", action="store_false", default=None)
    p.add_argument("--dist-backend", default="auto", choices=["auto", "nccl", "gloo"],
                   help="torch.distributed backend under torchrun (auto: nccl on CUDA, gloo on CPU)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    p.set_defaults(func=_cmd_train)


def _add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="the embedded default: untrained vs SimCLR vs SuperInfo (automatic lambda) on "
                                    "scikit-learn's digits, with the superfluous bracket (CPU, minutes)")
    p.add_argument("--out", default="demo-out", help="folder for the runs, eval.json and demo.png")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    p.add_argument("--lambda", dest="lambda_superinfo", type=_lambda, default="auto",
                   help="SuperInfo's lambda_a (= lambda_b), or 'auto' (default: automatic lambda, no hand tuning)")
    p.add_argument("--no-bracket", dest="bracket", action="store_false",
                   help="skip the superfluous-information bracket (superinfo probe) of each run")
    p.add_argument("--conditional", default=None, choices=["kl", "club"])
    p.add_argument("--epochs", type=int, default=None, help="pre-training epochs (default: the digits preset's)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--max-steps-per-epoch", type=int, default=None,
                   help="cap on steps per epoch (smoke runs; default: every batch)")
    p.add_argument("--width", type=int, default=None, help="backbone width (default: the digits preset's, 8)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from .tools.demo import format_summary, run_demo

    _set_threads(args.threads)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ArgumentError(f"--seeds must be a comma list of integers, got {args.seeds!r}") from None
    smoke = {k: v for k, v in (("max_steps_per_epoch", args.max_steps_per_epoch), ("width", args.width))
             if v is not None}
    result = run_demo(args.out, seeds=seeds, lambda_superinfo=args.lambda_superinfo, epochs=args.epochs,
                      progress=args.progress, conditional=args.conditional, bracket=args.bracket, **smoke)
    print(format_summary(result))
    print(f"wrote {Path(args.out) / 'eval.json'} and {Path(args.out) / 'demo.png'} in {result['seconds']:.0f} s")
    return 0


# the sweep's grid axes replace these train overrides
_SWEEP_GRID_DESTS = ("lambda_a", "lambda_b", "epochs", "seed")


def _add_sweep_parser(sub) -> None:
    from .trainer.config import PRESETS

    p = sub.add_parser("sweep", help="ablation grid over lambda_a, lambda_b, epochs and seeds from a preset; "
                                     "writes DIR/sweep.csv, sweep.json, sweep.png",
                       description="Train and evaluate every grid point as a run folder DIR/runs/<name>, then "
                                   "collect one table (every run; mean and std over seeds) and a plot.  Rerunning "
                                   "the command skips finished runs and resumes interrupted ones.")
    p.add_argument("--preset", required=True, choices=sorted(PRESETS))
    p.add_argument("--lambda-a", dest="lambdas_a", type=_lambdas, required=True,
                   help="comma list of lambda_a; 'auto' is a point too (automatic lambda, lambda_b tied)")
    p.add_argument("--lambda-b", dest="lambdas_b", type=parse_floats, default=None,
                   help="comma list of lambda_b (default: tied to lambda_a; given: the product grid)")
    p.add_argument("--epochs", dest="epoch_grid", type=parse_ints, default=None,
                   help="comma list of pre-training epochs (default: the preset's)")
    p.add_argument("--seeds", type=parse_ints, default=[0], help="comma list of seeds (default: 0)")
    p.add_argument("--protocols", type=parse_names, default=["linear", "knn"], help="evaluations: linear,knn")
    p.add_argument("--out", required=True, help="sweep folder")
    p.add_argument("--extend", action="store_true",
                   help="add this grid's points to an existing sweep folder that holds another grid")
    p.add_argument("--data-root", help="dataset folder")
    g = p.add_argument_group("train overrides (default: the preset's value)")
    for flag, dest, typ, hlp in _TRAIN_OVERRIDES:
        if dest not in _SWEEP_GRID_DESTS:
            g.add_argument(flag, dest=dest, type=typ, default=None, help=hlp)
    g.add_argument("--allow-negative-lambda", action="store_true", default=None)
    g.add_argument("--no-probe", dest="probe", action="store_false", default=None, help="no online linear probe")
    g.add_argument("--download", action="store_true", default=None)
    g.add_argument("--no-verify", dest="verify", action="store_false", default=None)
    g.add_argument("--no-progress", dest="progress", action="store_false", default=True,
                   help="no progress bars (grid points and epochs)")
    p.add_argument("--bracket", action="store_true",
                   help="also measure each run's superfluous-information bracket (superinfo probe: RUN/probe.json; "
                        "columns superfluous_lower_nats, superfluous_upper_nats_head; sweep_bracket.png)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    p.set_defaults(func=_cmd_sweep_grid)


def _cmd_sweep_grid(args) -> int:
    from .tools.sweep import SweepSpec, format_table, run_sweep

    _set_threads(args.threads)
    overrides = {dest: getattr(args, dest) for _, dest, _, _ in _TRAIN_OVERRIDES if dest not in _SWEEP_GRID_DESTS}
    for dest in ("allow_negative_lambda", "probe", "download", "verify", "data_root"):
        overrides[dest] = getattr(args, dest)
    spec = SweepSpec(args.preset, lambdas_a=tuple(args.lambdas_a),
                     lambdas_b=None if args.lambdas_b is None else tuple(args.lambdas_b),
                     epochs=None if args.epoch_grid is None else tuple(args.epoch_grid), seeds=tuple(args.seeds),
                     protocols=tuple(args.protocols), overrides={k: v for k, v in overrides.items() if v is not None})
    table = run_sweep(spec, args.out, extend=args.extend, progress=args.progress, bracket=args.bracket)
    print(format_table(table))
    print(f"wrote {Path(args.out) / 'sweep.csv'}, sweep.json and sweep.png ({table['wall_seconds']:.0f} s)")
    return 0


def _add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="linear or kNN evaluation of a run on frozen features; writes RUN_DIR/eval.json")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--protocol", required=True, choices=["linear", "knn"])
    p.add_argument("--dataset", help="default: the run's dataset")
    p.add_argument("--data-root", help="default: the run's data root")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("--k", type=int, default=200, help="kNN neighbours")
    p.add_argument("--temperature", type=float, default=0.1, help="kNN vote temperature")
    p.add_argument("--epochs", type=int, default=100, help="linear classifier epochs")
    p.add_argument("--lr", type=float, default=1e-2,    # = trainer.evaluate.LINEAR_LR (tested)
                   help="linear classifier learning rate (Adam, cosine)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="linear classifier weight decay")
    p.add_argument("--bracket", action="store_true",
                   help="also measure the superfluous-information bracket (superinfo probe) and add it to eval.json "
                        "(a probe.json of the same checkpoint is added without this flag)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    p.set_defaults(func=_cmd_eval)


def _set_threads(n: int) -> None:
    import os

    import torch
    torch.set_num_threads(n if n > 0 else (os.cpu_count() or 1))


def train_config_from_args(args):
    """The ``TrainConfig`` a ``superinfo train`` command line asks for (not for --resume)."""
    from .trainer.config import PRESETS, preset_config

    overrides = {dest: getattr(args, dest) for _, dest, _, _ in _TRAIN_OVERRIDES}
    for dest in ("allow_negative_lambda", "probe", "download", "verify", "progress", "sync_bn"):
        overrides[dest] = getattr(args, dest)
    overrides.update(data_root=args.data_root, out=args.out)
    if args.preset is not None:
        return preset_config(args.preset, **overrides)
    if overrides["dataset"] is None:
        raise ArgumentError("give --preset NAME or --dataset NAME")
    # a dataset with a preset of the same name starts from it; others (imagefolder, digits) from cifar10's
    base = overrides["dataset"] if overrides["dataset"] in PRESETS else "cifar10"
    return preset_config(base, **overrides)


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
        overrides = {dest: getattr(args, dest) for _, dest, _, _ in _TRAIN_OVERRIDES}
        overrides.update(data_root=args.data_root, progress=args.progress, download=args.download,
                         verify=args.verify, sync_bn=args.sync_bn)
        if args.out is not None and args.out != args.resume:
            raise ArgumentError("--out must be left out (or equal --resume) when resuming")
        summary = resume(args.resume, **overrides)
    else:
        from .trainer.config import PRESETS
        dataset = args.dataset or (PRESETS[args.preset]["dataset"] if args.preset else None)
        if args.out is None or (args.data_root is None and dataset not in ("digits", "synthetic")):
            raise ArgumentError("--out RUN_DIR and --data-root DIR are required (or --resume RUN_DIR); "
                                "only --dataset digits needs no data root")
        summary = train(train_config_from_args(args))
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
    print(f"{r['protocol']} top-1: {100 * r['top1']:.2f}%  ({r['n_train']} train / {r['n_test']} test images; "
          f"checkpoint epoch {r['checkpoint_epoch']})")
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
    p = sub.add_parser("export", help="export a run's backbone for torchvision or detectron2 (writes FILE and "
                                      "FILE.json); see docs/export.md")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run folder (or a checkpoint file)")
    p.add_argument("--format", default="torchvision", choices=["torchvision", "detectron2"],
                   help="torchvision: a plain ResNet state dict (.pt); detectron2: its .pkl model-zoo layout")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--with-probe", action="store_true",
                   help="torchvision only: include the run's online linear probe as fc")
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
    p = sub.add_parser("probe", help="the superfluous-information bracket of a run: a lower bound from what its "
                                     "features know about their own view's augmentation, the kl upper bound; "
                                     "writes RUN_DIR/probe.json")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--features", default="backbone", choices=["backbone", "head"],
                   help="backbone features h (what evaluation reads) or the head's z (default: backbone)")
    p.add_argument("--estimator", default="infonce",
                   help="mi_toolkit estimator of I(features; augmentation parameters) (default: infonce, a lower "
                        "bound)")
    p.add_argument("--images", type=int, default=2000, help="images per split (default: 2000)")
    p.add_argument("--views", type=int, default=4, help="recorded views per image (default: 4)")
    p.add_argument("--steps", type=int, default=None, help="estimator training steps (default: estimate()'s)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="estimator batch size (default: estimate()'s; small data sets need a smaller one)")
    p.add_argument("--data-root", default=None, help="the data (default: the run's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
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

    p = sub.add_parser("transfer", help="linear evaluation of a run's frozen backbone on transfer datasets; "
                                        "writes RUN_DIR/transfer.json")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--datasets", type=parse_names, default=list(TRANSFER_DATASETS),
                   help=f"comma list of {','.join(TRANSFER_DATASETS)} (default: all)")
    p.add_argument("--data-root", required=True, help="folder holding the datasets in torchvision's layouts")
    p.add_argument("--download", action="store_true", help="fetch missing datasets through torchvision")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the md5 checks (files you made or converted yourself); structure is still checked")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--epochs", type=int, default=100, help="linear classifier epochs")
    p.add_argument("--lr", type=float, default=1e-2,    # = trainer.evaluate.LINEAR_LR (tested)
                   help="linear classifier learning rate (Adam, cosine)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="linear classifier weight decay")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
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
    from mi_toolkit.cli_support import resolve_threads

    from .cli_checks import validate
    validate(args, train_config_from_args)  # every file, folder and cross-setting check, before any compute
    import torch

    torch.set_num_threads(resolve_threads(getattr(args, "threads", 1)))
    from mi_toolkit.cli_support import created_dir_guard
    out = getattr(args, "out", None) if args.command in ("world", "sweep-world", "train", "demo", "sweep") else None
    with created_dir_guard(out):            # a command that fails leaves no empty folder it created behind
        return args.func(args)


def main(argv=None) -> int:
    """The ``superinfo`` command; returns the exit status (2: a usage or data error, printed as ``error: ...``;
    1: a run that failed, e.g. a non-finite loss; 130: Ctrl-C)."""
    from mi_toolkit.cli_support import run_cli

    from .cli_checks import interrupted
    from .trainer.loop import NonFiniteLossError
    # the run itself failed (exit 1): its message names the last good checkpoint
    return run_cli("superinfo", build_parser(), argv, _dispatch, handlers=[(NonFiniteLossError, 1)],
                   interrupted=interrupted)


if __name__ == "__main__":
    sys.exit(main())
