"""Representation-sized data: estimate() with its defaults on CorrelatedGaussian(dim, 4 nats), 20,000 rows.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/representation_check.py 128,512 smile,infonce ['{"lr": 1e-4}']

Prints the held-out estimate, the training value, the checkpoint kept and the failure (if the guards refused the
fit).  The optional JSON argument overrides estimate() keywords.  Figures: benchmarks/README.md, section 7.
"""
import json
import sys
import time
import warnings

import torch

import mi_toolkit
from synthetic import CorrelatedGaussian

torch.set_num_threads(1)
warnings.simplefilter("ignore", mi_toolkit.MIEstimateWarning)
dims = [int(d) for d in sys.argv[1].split(",")] if len(sys.argv) > 1 else [128, 512]
names = sys.argv[2].split(",") if len(sys.argv) > 2 else ["smile", "infonce"]
kwargs = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
for dim in dims:
    task = CorrelatedGaussian(dim, 4.0)
    x, y = task.sample(20000, torch.Generator().manual_seed(0))
    for name in names:
        start = time.time()
        r = mi_toolkit.estimate(x, y, name, **kwargs)
        print(f"dim {dim} {name:<8} {kwargs} held-out {r.mi:.3f} train {r.train_mi:.3f} best step {r.best_step} "
              f"steps run {r.steps_run} {time.time() - start:.0f} s {r.failure or ''}", flush=True)
