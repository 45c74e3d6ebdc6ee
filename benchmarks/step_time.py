"""Seconds per training step of our critic-based estimators: the protocol of the bias benchmark (dim-20 Gaussian,
batch 64, separable critic 20->256->256->32, Adam 5e-4, one thread, a fresh batch sampled in every step).

    .venv/bin/python benchmarks/step_time.py [--out benchmarks/results/step_time.json]

Run torch-mist's twin (benchmarks/torch_mist_step_time.py, in its scratch environment) right after it on the same
quiet machine to compare them side by side: benchmarks/side_by_side.sh does both.
"""
import argparse
import json
import os
import platform
import time

import numpy as np
import torch

import mi_toolkit
from mi_toolkit.fit import make_adam
from synthetic import CorrelatedGaussian


def time_steps(name: str, steps: int, warmup: int, batch_size: int = 64, dim: int = 20) -> np.ndarray:
    torch.manual_seed(0)
    task = CorrelatedGaussian(dim, 6.0)
    generator = torch.Generator().manual_seed(0)
    est = mi_toolkit.estimator(name, dim, dim, critic="separable", hidden=256, layers=2, embed_dim=32)
    optimizer = make_adam(est.parameters(), 5e-4)
    times = np.empty(steps)
    for i in range(warmup + steps):
        start = time.perf_counter()
        x, y = task.sample(batch_size, generator)
        out = est(x, y)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        out.mi.item()
        if i >= warmup:
            times[i - warmup] = time.perf_counter() - start
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--estimators", default="infonce,nwj,mine,js,smile")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "step_time.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = []
    for name in args.estimators.split(","):
        times = time_steps(name, args.steps, args.warmup)
        records.append({"library": f"mi_toolkit {mi_toolkit.__version__}", "estimator": name, "batch_size": 64,
                        "median_ms": 1000 * float(np.median(times)), "mean_ms": 1000 * float(times.mean()),
                        "p90_ms": 1000 * float(np.percentile(times, 90)), "steps": args.steps,
                        "torch": torch.__version__, "machine": platform.processor() or platform.machine()})
        print(f"{name:<8} median {records[-1]['median_ms']:.2f} ms/step", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(records, f, indent=2)


if __name__ == "__main__":
    main()
