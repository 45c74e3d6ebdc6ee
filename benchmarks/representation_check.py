"""Representation-sized data: estimate() with its defaults on CorrelatedGaussian(dim, 4 nats), 20,000 rows.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/representation_check.py 128,512 smile,infonce \\
        [--kwargs '{"lr": 1e-4}'] [--mixed] [--out benchmarks/results/representation_check.json]

Prints the held-out estimate, the training value, the checkpoint kept and the failure (if the guards refused the
fit), and the ceiling of the ridge path on the same rows: the population value of the best a * C_hat (C_hat the
training rows' cross-covariance, a chosen with the truth), which no critic that treats every direction alike can beat
by much.  ``--mixed`` also runs each dim with y replaced by y A (A a random dense matrix: the same MI, the
dependence spread over every coordinate), the check that the default does not rely on the task's diagonal
structure.  ``--kwargs`` overrides estimate() keywords.  Figures: benchmarks/README.md, section 7.3.
"""
import argparse
import json
import time
import warnings

import numpy as np
import torch

import mi_toolkit
from mi_toolkit.atomic import write_json_atomically
from synthetic import CorrelatedGaussian


def ridge_ceiling(task, x, y, n_train):
    """Best population DV value of W = a C_hat over a in (0, 1] (whitened Gaussian: tr(W C^T) + logdet(I-WW^T)/2)."""
    x, y = x[:n_train].double().numpy(), y[:n_train].double().numpy()
    c_hat = x.T @ y / n_train
    best = -np.inf
    for a in np.linspace(0.01, 1.0, 100):
        w = a * c_hat
        sign, logdet = np.linalg.slogdet(np.eye(w.shape[0]) - w @ w.T)
        if sign > 0:
            best = max(best, task.rho * np.trace(w) + 0.5 * logdet)
    return float(best)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dims", nargs="?", default="128,512")
    parser.add_argument("names", nargs="?", default="smile,infonce")
    parser.add_argument("--kwargs", default="{}", help="JSON of estimate() keywords")
    parser.add_argument("--mixed", action="store_true", help="also y -> y A with a random dense A")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", mi_toolkit.MIEstimateWarning)
    kwargs = json.loads(args.kwargs)
    rows = []
    for dim in [int(d) for d in args.dims.split(",")]:
        task = CorrelatedGaussian(dim, 4.0)
        x, y = task.sample(20000, torch.Generator().manual_seed(0))
        ceiling = ridge_ceiling(task, x, y, 16000)
        print(f"dim {dim}: ridge-path ceiling on 16,000 training rows {ceiling:.3f} nats (truth 4.0)", flush=True)
        variants = [("diagonal", y)]
        if args.mixed:
            mix = torch.randn(dim, dim, generator=torch.Generator().manual_seed(1)) / dim ** 0.5
            variants.append(("mixed", y @ mix))
        for variant, yv in variants:
            for name in args.names.split(","):
                start = time.time()
                r = mi_toolkit.estimate(x, yv, name, **kwargs)
                row = {"dim": dim, "variant": variant, "estimator": name, "kwargs": kwargs, "heldout": r.mi,
                       "train": r.train_mi, "best_step": r.best_step, "steps_run": r.steps_run,
                       "seconds": round(time.time() - start, 1), "failure": r.failure, "ridge_ceiling": ceiling}
                rows.append(row)
                print(f"dim {dim} {variant:<8} {name:<8} {kwargs} held-out {r.mi:.3f} train {r.train_mi:.3f} "
                      f"best step {r.best_step} steps run {r.steps_run} {row['seconds']:.0f} s {r.failure or ''}",
                      flush=True)
    if args.out:
        write_json_atomically(args.out, {"task": "CorrelatedGaussian(dim, 4.0)", "rows": 20000, "threads": 1,
                                         "torch": torch.__version__, "results": rows})


if __name__ == "__main__":
    main()
