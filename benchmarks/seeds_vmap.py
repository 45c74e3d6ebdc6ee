"""Seeds in one vectorised run: time of estimate(..., seeds=S) against one seed, side by side in one process.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/seeds_vmap.py --out benchmarks/results/seeds_vmap.json

Fixed step count (early stopping off, so both sides train the same number of steps), the suite's 5v5-dense task
(10,000 rows), estimate()'s default model (hidden 128, batch 128).  Runs alternate (1 seed, S seeds, 1 seed, ...)
so a change in machine load hits both; the median of ``--repeats`` is reported.  Also times S separate runs.

``--layer``: instead, one critic layer's forward and backward for 1 seed, S seeds as one plain batched op and S
seeds under vmap: what the arithmetic alone costs, the floor under any way of stacking seeds.

``--profile``: instead, where one step's time goes, for 1 and S seeds (torch.profiler, 100 steps each, self CPU
time per step): matrix products (bmm/mm/baddbmm/addmm), the optimizer (Adam's Python step + its fused kernel +
zero_grad), every other ATen op (the elementwise work on the score matrices and activations, indexing, copies), and
the rest of the wall time (Python, vmap's dispatch, autograd's engine).
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import mi_toolkit
from mi_toolkit.atomic import write_json_atomically
from synthetic.suite import standard_suite


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--estimators", default="smile,infonce,doe")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--task", default="5v5-dense")
    parser.add_argument("--out", default=None)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--layer", action="store_true",
                        help="instead, time one hidden layer of the separable critic (baddbmm + ReLU, forward and "
                             "backward) for 1 seed, S seeds as one plain batched op, and S seeds under vmap")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the timed runs (this VM has 2 cores); --one-seed-threads too")
    parser.add_argument("--one-seed-threads", default=None,
                        help="comma list of thread counts to time one seed with (default: --threads); the fastest "
                             "is the ratio's denominator, so more threads never flatter the vectorised run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", mi_toolkit.MIEstimateWarning)
    _, task = standard_suite()[args.task]
    x, y = task.sample(10000, torch.Generator().manual_seed(0))
    common = dict(steps=args.steps, early_stopping=False, eval_batches=10)
    if args.profile:
        return profile(x, y, args, common)
    if args.layer:
        return layer(args)
    table = {}
    for name in args.estimators.split(","):
        mi_toolkit.estimate(x, y, name, **{**common, "steps": 20})     # warm-up (first-call costs)
        one_threads = [int(t) for t in (args.one_seed_threads or str(args.threads)).split(",")]
        one_by_threads = {t: [] for t in one_threads}
        many = []
        for _ in range(args.repeats):
            for t in one_threads:
                torch.set_num_threads(t)
                start = time.perf_counter()
                mi_toolkit.estimate(x, y, name, **common)
                one_by_threads[t].append(time.perf_counter() - start)
            torch.set_num_threads(args.threads)
            start = time.perf_counter()
            mi_toolkit.estimate(x, y, name, seeds=args.seeds, **common)
            many.append(time.perf_counter() - start)
        start = time.perf_counter()
        for s in range(args.seeds):
            mi_toolkit.estimate(x, y, name, seed=s, **common)
        loop = time.perf_counter() - start
        best = min(one_threads, key=lambda t: statistics.median(one_by_threads[t]))
        one = one_by_threads[best]
        table[name] = {"one_seed_threads": best,
                       "one_seed_s_by_threads": {t: statistics.median(v) for t, v in one_by_threads.items()},
                       "one_seed_s": statistics.median(one), f"{args.seeds}_seeds_vmapped_s": statistics.median(many),
                       "ratio": statistics.median(many) / statistics.median(one), f"{args.seeds}_separate_runs_s": loop,
                       "one_seed_all": one, "vmapped_all": many}
        print(f"{name:<8} 1 seed {table[name]['one_seed_s']:.2f} s ({best} thr.)   {args.seeds} seeds vmapped "
              f"{table[name][f'{args.seeds}_seeds_vmapped_s']:.2f} s (x{table[name]['ratio']:.2f})   "
              f"{args.seeds} separate runs {loop:.2f} s", flush=True)
    result = {"task": args.task, "rows": 10000, "steps": args.steps, "seeds": args.seeds, "threads": args.threads,
              "torch": torch.__version__, "estimators": table}
    if args.out:
        write_json_atomically(args.out, result)


def layer(args, rows: int = 128, hidden: int = 128, calls: int = 200):
    """What S seeds' arithmetic costs against one seed's, without estimate() around it: one hidden layer of the
    separable critic (both branches stacked, as ``SeparableCritic`` runs them), forward and backward."""
    from torch.func import vmap
    S = args.seeds

    def inputs(batch):
        return [torch.randn(*shape, requires_grad=True) for shape in
                ((*batch, 2, 1, hidden), (*batch, 2, rows, hidden), (*batch, 2, hidden, hidden))]

    def step(fn, tensors):
        fn(*tensors).sum().backward()

    def timed(fn, tensors):
        step(fn, tensors)                                             # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(calls):
                step(fn, tensors)
            times.append((time.perf_counter() - start) / calls * 1e3)
        return statistics.median(times)

    def one_layer(bias, stack, weight):
        return torch.relu(torch.baddbmm(bias, stack, weight))

    def flat(bias, stack, weight):                                    # S seeds as one [2S, ...] batch, no vmap
        return one_layer(bias.flatten(0, 1), stack.flatten(0, 1), weight.flatten(0, 1))

    ms = {"one_seed": timed(one_layer, inputs(())), f"{S}_seeds_batched": timed(flat, inputs((S,))),
          f"{S}_seeds_vmapped": timed(vmap(one_layer), inputs((S,)))}
    ratios = {k: v / ms["one_seed"] for k, v in ms.items()}
    print("one critic layer, forward + backward, ms: "
          + "  ".join(f"{k} {v:.3f} (x{ratios[k]:.2f})" for k, v in ms.items()), flush=True)
    if args.out:
        write_json_atomically(args.out, {"rows": rows, "hidden": hidden, "seeds": S, "threads": args.threads,
                                         "calls": calls, "repeats": args.repeats, "torch": torch.__version__,
                                         "ms": ms, "ratio_to_one_seed": ratios})


MATMUL = ("aten::bmm", "aten::mm", "aten::baddbmm", "aten::addmm", "aten::matmul")


def profile(x, y, args, common):
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    steps = 100
    out = {}
    for name in args.estimators.split(","):
        for seeds in (1, args.seeds):
            kwargs = {**common, "steps": steps, "eval_batches": 1, "seeds": seeds if seeds > 1 else None}
            mi_toolkit.estimate(x, y, name, **{**kwargs, "steps": 20})
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                start = time.perf_counter()
                mi_toolkit.estimate(x, y, name, **kwargs)
                wall = time.perf_counter() - start
            split = {"matmul": 0.0, "optimizer": 0.0, "other_ops": 0.0}
            for event in prof.key_averages():
                key = ("matmul" if event.key in MATMUL else
                       "optimizer" if "Optimizer" in event.key or "adam" in event.key else
                       "other_ops" if event.key.startswith("aten::") else None)
                if key:
                    split[key] += event.self_cpu_time_total / 1e3 / steps
            split["rest"] = wall * 1e3 / steps - sum(split.values())
            out[f"{name}_{seeds}"] = {k: round(v, 3) for k, v in split.items()}
            print(f"{name:<8} {seeds} seed(s), ms per step under the profiler: "
                  + "  ".join(f"{k} {v:.2f}" for k, v in split.items()) + f"  (wall {wall * 1e3 / steps:.2f})",
                  flush=True)
    if args.out:
        write_json_atomically(args.out, {"task": args.task, "rows": 10000, "steps": steps, "threads": 1,
                                         "torch": torch.__version__, "ms_per_step": out})


if __name__ == "__main__":
    main()
