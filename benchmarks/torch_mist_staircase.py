"""torch-mist 0.2.17 on the Poole et al. (2019) staircase benchmark (side-by-side reference).

This script measures the third-party library torch-mist, NOT this project. It must run in a
scratch virtual environment outside the repository and must never be added to the project's
dependencies. It does not import ``mi_toolkit``.

Scratch environment (worked on Python 3.11, CPU-only, torch 2.14.1)::

    python3 -m venv /work/scratch/tmist-venv
    /work/scratch/tmist-venv/bin/pip install torch==2.14.1
    /work/scratch/tmist-venv/bin/pip install torch-mist==0.2.17 "numpy<2" pandas
    /work/scratch/tmist-venv/bin/python -c "import torch_mist"

torch-mist itself pins numpy<2 (plus hydra-core, mpld3, pyro-ppl, scikit-learn); pandas is
imported at package import time (torch_mist/utils/estimation.py:8) but is not declared, so it
has to be installed by hand.

Run (one core, one thread)::

    OMP_NUM_THREADS=1 taskset -c 1 /work/scratch/tmist-venv/bin/python \
        benchmarks/torch_mist_staircase.py > /work/scratch/tmist_staircase.log 2>&1

Protocol: x, y in R^20 standard normal with per-dimension correlation
rho = sqrt(1 - exp(-2 * mi / 20)); true MI 2, 4, 6, 8, 10 nats; one estimator trained
continuously across the levels (``--steps-per-level`` steps each, default 2000), batch 64,
fresh samples every step, Adam lr 5e-4, ``torch.set_num_threads(1)``, fixed seed.
Discriminative estimators use a separable critic f(x, y) = g(x)^T h(y) with
g, h: 20 -> 256 -> 256 -> 32 (torch-mist ``separable_critic(hidden_dims=[256, 256], k_dim=32)``);
generative ones (BA, DoE, CLUB, L1Out) use torch-mist's conditional Gaussian
q(y|x) whose mean / log-scale come from a 20 -> 256 -> 256 -> (20, 20) network
(DoE's marginal q(y) is torch-mist's learnable diagonal Gaussian). BA is given the true
H(Y) = 10 * (1 + log(2 pi)) nats. The number of negatives is torch-mist's own default for each
estimator (InfoNCE 0 = whole batch incl. the positive; NWJ/MINE/SMILE/JS 1) unless
``--neg-samples`` overrides it.

Per step the estimate is torch-mist's ``mutual_information(x, y)`` on the training batch,
evaluated before the parameter update (as torch-mist's own ``train_mi_estimator`` loop logs it).
Per level the record holds the mean / std of the last 500 steps' estimates and the median
wall time of a step: ``seconds_per_step`` covers sampling + loss + estimate + backward + Adam
step; ``seconds_per_train_step`` is the same without the estimate evaluation.

Output: ``--out`` (a JSON list of records) and ``<out stem>_traces.json`` with the per-step
estimates.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

LIBRARY = "torch-mist 0.2.17"
DIM = 20
HIDDEN = [256, 256]
K_DIM = 32
LR = 5e-4
TAIL = 500
ENTROPY_Y = DIM / 2 * (1.0 + math.log(2.0 * math.pi))  # H(N(0, I_20)) = 10 (1 + log 2 pi)
DEFAULT_ESTIMATORS = "infonce,nwj,mine,smile,js,ba,doe,club,l1out"
DEFAULT_OUT = "/work/main/benchmarks/results/torch_mist_staircase.json"
DISCRIMINATIVE = {"infonce", "nwj", "mine", "smile", "js"}


def rho_for(mi: float, dim: int = DIM) -> float:
    return math.sqrt(1.0 - math.exp(-2.0 * mi / dim))


def sample(batch: int, rho: float, gen: torch.Generator):
    x = torch.randn(batch, DIM, generator=gen)
    eps = torch.randn(batch, DIM, generator=gen)
    y = rho * x + math.sqrt(1.0 - rho * rho) * eps
    return x, y


def build(name: str, neg_samples: int | None):
    import torch_mist.estimators as E

    crit = dict(x_dim=DIM, y_dim=DIM, hidden_dims=list(HIDDEN), critic_type="separable", k_dim=K_DIM)
    neg = {} if neg_samples is None else {"neg_samples": neg_samples}
    if name == "infonce":
        return E.infonce(**crit, **neg)
    if name == "nwj":
        return E.nwj(**crit, **neg)
    if name == "mine":
        return E.mine(**crit, **neg)
    if name == "smile":
        return E.smile(**crit, tau=5.0, **neg)
    if name == "js":
        return E.js(**crit, **neg)
    gen = dict(x_dim=DIM, y_dim=DIM, hidden_dims=list(HIDDEN))
    if name == "ba":
        return E.ba(entropy_y=float(ENTROPY_Y), **gen)
    if name == "doe":
        return E.doe(**gen)
    if name == "club":
        return E.club(**gen)
    if name == "l1out":
        return E.l1out(**gen)
    raise ValueError(f"unknown estimator {name!r}")


def _finite(v: float):
    return v if math.isfinite(v) else None


def run_one(name, levels, steps_per_level, batch, seed, neg_samples):
    torch.manual_seed(seed)
    est = build(name, neg_samples if name in DISCRIMINATIVE else None)
    est.train()
    opt = torch.optim.Adam(est.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed + 1)
    n_params = sum(p.numel() for p in est.parameters() if p.requires_grad)
    used_neg = getattr(est, "neg_samples", None)

    records, trace = [], []
    for mi in levels:
        rho = rho_for(mi)
        ests, t_step, t_train = [], [], []
        for _ in range(steps_per_level):
            t0 = time.perf_counter()
            x, y = sample(batch, rho, gen)
            loss = est.loss(x, y)
            t1 = time.perf_counter()
            with torch.no_grad():
                val = float(est.mutual_information(x, y))
            t2 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t3 = time.perf_counter()
            ests.append(val)
            t_step.append(t3 - t0)
            t_train.append((t1 - t0) + (t3 - t2))
        tail = ests[-TAIL:] if len(ests) >= TAIL else ests
        finite = [v for v in tail if math.isfinite(v)]
        mean = statistics.fmean(finite) if finite else float("nan")
        std = statistics.pstdev(finite) if len(finite) > 1 else float("nan")
        rec = {
            "estimator": name,
            "true_mi": float(mi),
            "mean": _finite(mean),
            "std": _finite(std),
            "bias": _finite(mean - mi),
            "seconds_per_step": statistics.median(t_step),
            "seconds_per_train_step": statistics.median(t_train),
            "steps_per_level": steps_per_level,
            "batch_size": batch,
            "tail_steps": len(tail),
            "nonfinite_in_tail": len(tail) - len(finite),
            "neg_samples": used_neg,
            "n_params": n_params,
            "seed": seed,
            "library": LIBRARY,
        }
        records.append(rec)
        trace.extend(round(v, 5) if math.isfinite(v) else None for v in ests)
        print(
            f"{name:8s} true={mi:5.1f} mean={mean:8.3f} std={std:7.3f} bias={mean - mi:+8.3f} "
            f"s/step={rec['seconds_per_step'] * 1e3:6.2f}ms (train-only {rec['seconds_per_train_step'] * 1e3:6.2f}ms)",
            flush=True,
        )
    return records, trace


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--estimators", default=DEFAULT_ESTIMATORS, help="comma list (default: %(default)s)")
    p.add_argument("--steps-per-level", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--levels", default="2,4,6,8,10", help="true MI levels in nats, comma list")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--neg-samples",
        type=int,
        default=None,
        help="override torch-mist's neg_samples for the discriminative estimators "
        "(default: the library default; 0 = whole batch incl. positive, -1 = all but the positive)",
    )
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    import torch_mist

    names = [s.strip().lower() for s in args.estimators.split(",") if s.strip()]
    levels = [float(s) for s in args.levels.split(",") if s.strip()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    traces_path = out.with_name(out.stem + "_traces.json")

    meta = {
        "library": LIBRARY,
        "torch_mist_version": getattr(torch_mist, "__version__", "?"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "num_threads": torch.get_num_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "levels": levels,
        "steps_per_level": args.steps_per_level,
        "batch_size": args.batch_size,
        "lr": LR,
        "seed": args.seed,
        "neg_samples_override": args.neg_samples,
        "critic": f"separable {DIM}->{HIDDEN[0]}->{HIDDEN[1]}->{K_DIM}",
        "entropy_y_for_ba": ENTROPY_Y,
        "tail_steps": TAIL,
        "argv": sys.argv,
    }
    print(json.dumps(meta), flush=True)

    all_records, traces = [], {}
    for name in names:
        t0 = time.perf_counter()
        try:
            recs, trace = run_one(name, levels, args.steps_per_level, args.batch_size, args.seed, args.neg_samples)
        except Exception as exc:  # keep going: one broken estimator should not lose the others
            traceback.print_exc()
            recs = [
                {"estimator": name, "true_mi": mi, "mean": None, "std": None, "bias": None,
                 "seconds_per_step": None, "steps_per_level": args.steps_per_level,
                 "batch_size": args.batch_size, "library": LIBRARY, "error": repr(exc)}
                for mi in levels
            ]
            trace = []
        all_records.extend(recs)
        traces[name] = trace
        print(f"{name}: done in {time.perf_counter() - t0:.1f}s", flush=True)
        # rewrite after every estimator so that a partial run still leaves results
        out.write_text(json.dumps(all_records, indent=1) + "\n")
        traces_path.write_text(json.dumps({"meta": meta, "traces": traces}) + "\n")

    print(f"\nwrote {out} and {traces_path}")
    print(f"{'estimator':10s}" + "".join(f"{mi:>9g}" for mi in levels) + "   ms/step")
    for name in names:
        rs = [r for r in all_records if r["estimator"] == name]
        cells = "".join(f"{r['mean']:9.2f}" if r.get("mean") is not None else f"{'nan':>9s}" for r in rs)
        sps = [r["seconds_per_step"] for r in rs if r.get("seconds_per_step")]
        print(f"{name:10s}{cells}   {statistics.median(sps) * 1e3 if sps else float('nan'):7.2f}")


if __name__ == "__main__":
    main()
