"""``mi-toolkit``: the bias benchmark and one-off estimates from the command line."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from mi_toolkit.validation import parse_floats, parse_names


def build_parser() -> argparse.ArgumentParser:
    from mi_toolkit.estimators import available_estimators

    from .bench import DEFAULT_ESTIMATORS

    parser = argparse.ArgumentParser(prog="mi-toolkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="train estimators on a staircase of known MI; write results and bias.png")
    bench.add_argument("--task", default="gaussian", choices=["gaussian", "student-t"])
    bench.add_argument("--dim", type=int, default=20)
    bench.add_argument("--mi", type=parse_floats, default=[2.0, 4.0, 6.0, 8.0, 10.0], help="true MI levels (nats)")
    bench.add_argument("--batch-size", type=int, default=64)
    bench.add_argument("--steps-per-level", type=int, default=2000)
    bench.add_argument("--estimators", type=parse_names, default=list(DEFAULT_ESTIMATORS),
                       help=f"comma list from: {', '.join(available_estimators())}")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--lr", type=float, default=5e-4)
    bench.add_argument("--critic", default="separable", choices=["separable", "bilinear", "concat"])
    bench.add_argument("--hidden", type=int, default=256)
    bench.add_argument("--layers", type=int, default=2)
    bench.add_argument("--embed-dim", type=int, default=32)
    bench.add_argument("--transform", default=None, choices=["cubic", "asinh", "half-cube", "rotation"])
    bench.add_argument("--dof", type=float, default=5.0, help="degrees of freedom of the student-t task")
    bench.add_argument("--window", type=int, default=None, help="last steps per level averaged (default min(500, steps/4))")
    bench.add_argument("--threads", type=int, default=1)
    bench.add_argument("--grad-clip", type=float, default=None, help="clip the estimator's gradient norm")
    bench.add_argument("--out", default="bench-out", help="output folder")
    bench.add_argument("--no-progress", action="store_true")

    est = sub.add_parser("estimate", help="estimate I(X;Y) from two .npy/.csv files of paired rows")
    est.add_argument("--x", required=True)
    est.add_argument("--y", required=True)
    est.add_argument("--estimator", default="smile", help=f"one of: {', '.join(available_estimators())}")
    est.add_argument("--steps", type=int, default=2000)
    est.add_argument("--batch-size", type=int, default=64)
    est.add_argument("--lr", type=float, default=5e-4)
    est.add_argument("--heldout-fraction", type=float, default=0.2)
    est.add_argument("--seed", type=int, default=0)
    est.add_argument("--json", default=None, help="write the result here")

    sub.add_parser("list", help="list the registered estimators")
    return parser


def _load(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        array = np.load(path)
    else:
        array = np.loadtxt(path, delimiter=",", ndmin=2)
    return array.reshape(len(array), -1) if array.ndim == 1 else array


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        from mi_toolkit.estimators import ESTIMATORS
        for name, (cls, description) in sorted(ESTIMATORS.items()):
            print(f"{name:<12} {cls.direction:<9} {description}")
        return 0
    if args.command == "estimate":
        from mi_toolkit.atomic import write_json_atomically
        from mi_toolkit.fit import estimate
        result = estimate(_load(args.x), _load(args.y), args.estimator, steps=args.steps, batch_size=args.batch_size,
                          lr=args.lr, heldout_fraction=args.heldout_fraction, seed=args.seed, progress=True)
        print(result)
        if args.json:
            write_json_atomically(args.json, result.to_dict())
        return 0

    from .bench import BenchConfig, format_table, run_bench, write_outputs
    config = BenchConfig(task=args.task, dim=args.dim, levels=args.mi, batch_size=args.batch_size,
                         steps_per_level=args.steps_per_level, estimators=args.estimators, seed=args.seed, lr=args.lr,
                         critic=args.critic, hidden=args.hidden, layers=args.layers, embed_dim=args.embed_dim,
                         transform=args.transform, dof=args.dof,
                         window=args.window or min(500, max(1, args.steps_per_level // 4)), threads=args.threads,
                         grad_clip=args.grad_clip)
    try:
        records, traces = run_bench(config, progress=not args.no_progress)
    except ValueError as err:
        print(f"mi-toolkit bench: error: {err}", file=sys.stderr)
        return 2
    paths = write_outputs(args.out, records, traces, config)
    print(format_table(records))
    print(f"wrote {paths['results.json']}, {paths['results.csv']}, {paths['bias.png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
