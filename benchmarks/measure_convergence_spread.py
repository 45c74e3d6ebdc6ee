"""Measure the seed-to-seed spread of estimate() on the convergence-test setting of tests/test_fit.py.

The tolerances in tests/test_fit.py::MEASURED come from this script:
    .venv/bin/python benchmarks/measure_convergence_spread.py [--seeds 6]
"""
import argparse
import json
import warnings

import numpy as np
import torch

import mi_toolkit
from synthetic import CorrelatedGaussian


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", mi_toolkit.MIEstimateWarning)
    task = CorrelatedGaussian(2, 1.0)
    table = {}
    for name in mi_toolkit.available_estimators():
        values = []
        for seed in range(args.seeds):
            x, y = task.sample(3000, torch.Generator().manual_seed(100 + seed))
            # H(Y) is the raw y's: no preprocessing with it (as in tests/test_fit.py)
            kwargs = {"entropy_y": task.entropy_y, "preprocess": None} if name == "ba" else {}
            values.append(mi_toolkit.estimate(x, y, name, steps=400, batch_size=64, lr=1e-3, hidden=64, seed=seed,
                                              **kwargs).mi)
        table[name] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)), "values": values}
        print(f"{name:<12} {table[name]['mean']:.3f} ± {table[name]['std']:.3f}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(table, f, indent=2)


if __name__ == "__main__":
    main()
