"""The staircase bench is untouched by issue 16: its per-step traces are bit-identical to those of a given commit.

    git archive 0ad795a mi_toolkit synthetic | tar -x -C /tmp/old
    (PYTHONPATH=/tmp/old OMP_NUM_THREADS=1 .venv/bin/python benchmarks/staircase_unchanged.py /tmp/old.npz)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/staircase_unchanged.py /tmp/new.npz --compare /tmp/old.npz

Every default estimator of the bench, levels 2 and 6 nats, 150 steps each (the full run is the same code path for
longer); prints, per estimator, whether the two traces are identical.
"""
import argparse

import numpy as np
import torch

import mi_toolkit
from synthetic.bench import BenchConfig, run_bench

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("out")
parser.add_argument("--compare", default=None)
args = parser.parse_args()
torch.set_num_threads(1)
records, traces = run_bench(BenchConfig(levels=[2.0, 6.0], steps_per_level=150, window=50), progress=False)
np.savez(args.out, **traces)
print(f"mi_toolkit from {mi_toolkit.__file__}")
if args.compare:
    old = np.load(args.compare)
    for name in old.files:
        print(f"{name:<8} identical: {np.array_equal(old[name], traces[name], equal_nan=True)}")
