"""Per-step training time of torch-mist 0.2.17 estimators (side-by-side reference).

Measures the third-party library torch-mist, NOT this project; run it in the scratch venv
described in ``benchmarks/torch_mist_staircase.py`` (never a project dependency; this script
does not import ``mi_toolkit``)::

    python3 -m venv /work/scratch/tmist-venv
    /work/scratch/tmist-venv/bin/pip install torch==2.14.1
    /work/scratch/tmist-venv/bin/pip install torch-mist==0.2.17 "numpy<2" pandas

    # on a quiet machine, pinned to one core:
    OMP_NUM_THREADS=1 taskset -c 1 /work/scratch/tmist-venv/bin/python \
        benchmarks/torch_mist_step_time.py

One timed step = sample a fresh batch of the dim-20 correlated Gaussian (rho for
``--mi`` nats, default 6) + ``estimator.loss`` (forward) + backward + Adam(lr 5e-4) step.
The MI estimate itself is not evaluated inside the timed step. Critic: torch-mist
``separable_critic`` 20 -> 256 -> 256 -> 32 (hidden_dims [256, 256], k_dim 32), batch 64,
torch-mist's default number of negatives per estimator, ``torch.set_num_threads(1)``.
Reports the median (and p10 / p90 / mean) over ``--steps`` timed steps after ``--warmup``
untimed ones; estimators are timed one after another.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

LIBRARY = "torch-mist 0.2.17"
DIM = 20
HIDDEN = [256, 256]
K_DIM = 32
LR = 5e-4
DEFAULT_OUT = "/work/main/benchmarks/results/torch_mist_step_time.json"


def build(name: str):
    import torch_mist.estimators as E

    crit = dict(x_dim=DIM, y_dim=DIM, hidden_dims=list(HIDDEN), critic_type="separable", k_dim=K_DIM)
    factories = {"infonce": E.infonce, "nwj": E.nwj, "smile": E.smile, "mine": E.mine, "js": E.js}
    if name not in factories:
        raise ValueError(f"unknown estimator {name!r}; choose from {sorted(factories)}")
    return factories[name](**crit)


def time_one(name: str, batch: int, steps: int, warmup: int, mi: float, seed: int) -> dict:
    torch.manual_seed(seed)
    est = build(name)
    est.train()
    opt = torch.optim.Adam(est.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed + 1)
    rho = math.sqrt(1.0 - math.exp(-2.0 * mi / DIM))
    s = math.sqrt(1.0 - rho * rho)

    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        x = torch.randn(batch, DIM, generator=gen)
        y = rho * x + s * torch.randn(batch, DIM, generator=gen)
        loss = est.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        if i >= warmup:
            times.append(t1 - t0)
    q = statistics.quantiles(times, n=10) if len(times) >= 2 else [times[0]] * 9
    return {
        "estimator": name,
        "seconds_per_step": statistics.median(times),
        "p10": q[0],
        "p90": q[-1],
        "mean": statistics.fmean(times),
        "steps": steps,
        "warmup": warmup,
        "batch_size": batch,
        "neg_samples": getattr(est, "neg_samples", None),
        "n_params": sum(p.numel() for p in est.parameters() if p.requires_grad),
        "final_loss": float(loss.detach()),
        "library": LIBRARY,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--estimators", default="infonce,nwj,smile,mine", help="comma list (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=500, help="timed steps per estimator")
    p.add_argument("--warmup", type=int, default=50, help="untimed warm-up steps per estimator")
    p.add_argument("--mi", type=float, default=6.0, help="true MI (nats) of the sampled data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    results = []
    for name in [s.strip().lower() for s in args.estimators.split(",") if s.strip()]:
        r = time_one(name, args.batch_size, args.steps, args.warmup, args.mi, args.seed)
        results.append(r)
        print(
            f"{name:8s} median {r['seconds_per_step'] * 1e3:7.3f} ms/step "
            f"(p10 {r['p10'] * 1e3:.3f}, p90 {r['p90'] * 1e3:.3f}, mean {r['mean'] * 1e3:.3f})",
            flush=True,
        )

    doc = {
        "meta": {
            "library": LIBRARY,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "num_threads": torch.get_num_threads(),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "critic": f"separable {DIM}->{HIDDEN[0]}->{HIDDEN[1]}->{K_DIM}",
            "step": "sample batch + loss forward + backward + Adam step (no MI evaluation)",
            "mi": args.mi,
            "lr": LR,
            "seed": args.seed,
        },
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
