"""The variational estimators with a Gaussian and with a mixture-density q(y|x), side by side on suite tasks.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/mixture_conditional.py \\
        --tasks 1v1-additive-0.1,3v3-spiral --estimators ba,doe,club,l1out \\
        --out benchmarks/results/mixture_conditional.json

estimate() with its defaults (copula, early stopping, 10,000 rows, seed 0) and ``conditional="gaussian"`` (the
default) or ``"mixture"`` (4 components).  Prints the held-out value, the training value and the time per fit.
Figures: benchmarks/README.md, section 7.
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch

import mi_toolkit
from mi_toolkit.atomic import write_json_atomically
from synthetic.suite import standard_suite


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="1v1-additive-0.1,3v3-spiral")
    parser.add_argument("--estimators", default="ba,doe,club,l1out")
    parser.add_argument("--conditionals", default="gaussian,mixture")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", mi_toolkit.MIEstimateWarning)
    suite = standard_suite()
    rows = []
    for task_name in args.tasks.split(","):
        _, task = suite[task_name]
        x, y = task.sample(args.samples, torch.Generator().manual_seed(args.seed))
        for name in args.estimators.split(","):
            for conditional in args.conditionals.split(","):
                start = time.perf_counter()
                r = mi_toolkit.estimate(x, y, name, conditional=conditional, seed=args.seed)
                row = {"task": task_name, "truth": float(task.mi), "estimator": name, "conditional": conditional,
                       "mi": r.mi, "train_mi": r.train_mi, "direction": r.direction, "best_step": r.best_step,
                       "steps_run": r.steps_run, "failure": r.failure,
                       "seconds": round(time.perf_counter() - start, 1)}
                rows.append(row)
                print(f"{task_name:<18} truth {task.mi:.3f}  {name:<6} {conditional:<9} {r.direction:<8} "
                      f"held-out {r.mi:.3f} train {r.train_mi:.3f}  steps {r.steps_run}  {row['seconds']:.0f} s "
                      f"{r.failure or ''}", flush=True)
    if args.out:
        write_json_atomically(args.out, {"samples": args.samples, "seed": args.seed, "threads": 1,
                                         "torch": torch.__version__, "results": rows})


if __name__ == "__main__":
    main()
