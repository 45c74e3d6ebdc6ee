"""One rank's share of the NT-Xent loss at ImageNet scale: peak memory of forward + backward, to JSON.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/distributed_memory.py [--out benchmarks/results/distributed_memory.json]

The trainer's loss on rank r of W is ``ntxent_loss_local``: its n = N / W rows of z1 scored against all N gathered
rows of z2 (the global batch, N = 4096 for the imagenet preset, d = 128).  This script measures, on CPU, the peak
live bytes of that call and its backward (``profiled_peak_bytes`` from kernels_memory.py: the profiler's memory
timeline, inputs excluded), for

* ``naive``: the n x N score matrix of the local rows (what the trainer runs below 2048 global rows, and what
  ``--kernel-backend matrix`` / ``naive`` runs at any size);
* ``chunked``: the fused O(n + N) kernel (the trainer's default from 2048 rows; ``triton`` on GPU has the same
  memory profile, tile buffers aside);
* ``full-matrix``: the N x N matrix that a rank would build if it scored the whole gathered batch (for comparison).

Float32 everywhere: bf16 autocast halves the embeddings but the loss kernels compute in float32.  The gathered
embeddings themselves (2 x N x d floats = 4 MiB) are an input, not counted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "distributed_memory.json")


def measure(global_batch: int, world: int, d: int, backend: str) -> dict:
    import torch

    from kernels_memory import profiled_peak_bytes
    from superinfo.objective import ntxent_loss, ntxent_loss_local

    torch.manual_seed(0)
    z1_all = torch.randn(global_batch, d)
    z2_all = z1_all + 0.5 * torch.randn(global_batch, d)
    n = global_batch // world
    z1, z2 = z1_all[:n].clone().requires_grad_(), z2_all[:n].clone().requires_grad_()
    z1_cols, z2_cols = torch.cat([z1, z1_all[n:]]), torch.cat([z2, z2_all[n:]])   # rank 0's gathered batch

    def call():
        z1.grad = z2.grad = None
        if backend == "full-matrix":
            loss = ntxent_loss(z1_cols, z2_cols, 0.1, backend="matrix")
        else:
            loss = ntxent_loss_local(z1, z2, z1_cols, z2_cols, 0, 0.1, backend=backend)
        loss.backward(retain_graph=False)

    call()  # warm-up
    peak = profiled_peak_bytes(call)
    return dict(global_batch=global_batch, world_size=world, rows_per_rank=n, d=d, backend=backend,
                peak_alloc_bytes=peak, peak_alloc_mib=round(peak / 2**20, 2),
                score_matrix_mib=round((global_batch if backend == "full-matrix" else n) * global_batch * 4 / 2**20, 2))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--global-batch", type=int, default=4096)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--worlds", default="1,8,32", help="comma list of world sizes (GPUs)")
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    import torch

    records = []
    for world in (int(w) for w in args.worlds.split(",")):
        for backend in ("naive", "chunked", "full-matrix"):
            if backend == "full-matrix" and world != 1:
                continue        # independent of W: the same N x N on every rank
            r = measure(args.global_batch, world, args.d, backend)
            records.append(r)
            print(f"W={world:>3} n={r['rows_per_rank']:>5} {backend:<12} peak {r['peak_alloc_mib']:>9.2f} MiB "
                  f"(score matrix alone {r['score_matrix_mib']:.2f} MiB)", flush=True)
    result = dict(machine=platform.machine(), torch=torch.__version__, threads=torch.get_num_threads(),
                  command="OMP_NUM_THREADS=2 .venv/bin/python benchmarks/distributed_memory.py", records=records)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
