"""``superinfo``: the SuperInfo objective's experiments (and, later, its trainer).

    superinfo world --lambda 0.1 --bound kl --seed 0 --out DIR          one run on the multi-view world
    superinfo sweep-world --lambdas 0,0.01,0.1,1 --bounds kl,club --seeds 0,1,2 --out DIR
"""
from __future__ import annotations

import argparse
import sys


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


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
                   help="lower bound on I(z1;z2): ntxent (default) or a lower bound of the mi_toolkit registry")
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
    g.add_argument("--world", default=DEFAULTS["world"], choices=["linear", "nonlinear"])
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
            "world", "shared_dim", "nuisance_dim", "t1_dim", "noise_std", "probe_samples"]
    opts = {k: getattr(args, k) for k in keys}
    if opts["lower_bound"] != "ntxent":
        opts.pop("temperature")
    return opts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="superinfo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")

    world = sub.add_parser("world", help="train on the multi-view world with one lambda; write DIR/world.json")
    world.add_argument("--lambda", dest="lambda_a", type=float, required=True,
                       help="lambda_a: weight of the superfluous term I(v1;z1|v2)")
    world.add_argument("--lambda-b", type=float, default=None, help="weight of I(v2;z2|v1) (default: --lambda)")
    world.add_argument("--bound", default="kl", choices=["kl", "club"], help="upper bound on the conditional term")
    world.add_argument("--seed", type=int, default=0)
    world.add_argument("--out", required=True, help="output folder")
    _add_world_options(world)
    world.set_defaults(func=_cmd_world)

    sweep = sub.add_parser("sweep-world", help="lambda sweep over bounds and seeds; write sweep.json and a plot")
    sweep.add_argument("--lambdas", type=_floats, default=[0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0])
    sweep.add_argument("--bounds", type=_names, default=["kl", "club"])
    sweep.add_argument("--seeds", type=_ints, default=[0, 1, 2])
    sweep.add_argument("--out", required=True, help="output folder")
    _add_world_options(sweep)
    sweep.set_defaults(func=_cmd_sweep)
    return parser


def _fmt(v, pct=False):
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


def _cmd_world(args) -> int:
    from .world import run_world

    r = run_world(args.lambda_a, args.lambda_b, args.bound, args.seed, world_seed=args.world_seed,
                  allow_negative_lambda=args.allow_negative_lambda, out=args.out, **_world_options(args))
    print(f"lambda={r['lambda']:g} lambda_b={r['lambda_b']:g} bound={r['bound']} seed={r['seed']}  "
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


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    import torch

    torch.set_num_threads(max(1, getattr(args, "threads", 1)))
    try:
        return args.func(args)
    except (ValueError, TypeError) as err:
        parser.exit(2, f"superinfo {args.command}: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
