"""Host-device synchronisations per training step of ``superinfo train``, counted without a GPU.

Every read of a tensor's value on the host (``.item()``, ``bool()``, ``float()``, ``int()``, ``.tolist()``,
``.numpy()``, formatting) would stall a CUDA queue; a ``TorchFunctionMode`` counts those calls while a tiny model
trains on in-memory data.  Two runs of 1 and 2 epochs (40 steps each, the default ``log_every`` = 10) are counted and
subtracted, so set-up costs cancel and what is left is what one epoch of steps and its log rows add.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/host_syncs.py                  # this checkout
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/host_syncs.py --root ../old    # another checkout (before/after)

Prints and writes JSON (``--json FILE``): syncs per step, by kind; reads of tensors that stay on the host in a GPU
run too (``HOST_SIDE``) are listed apart and not counted as syncs.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import traceback
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

READS = {"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "__format__"}
# reads of tensors that live on the host in a GPU run too, so they cost no device sync: the optimisers' step
# counters (torch.optim keeps them on the CPU unless capturable), the sampler's indices, the loader's labels
HOST_SIDE = ("torch/optim/", "torch/utils/data/", "count_labelled")
STEPS, BATCH = 40, 8


class CountHostReads(TorchFunctionMode):
    """Counts the Tensor methods that copy a value to the host, by kind; host-side reads (``HOST_SIDE``) apart."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS:
            frames = traceback.extract_stack(limit=6)[:-1]
            host = any(marker in f"{f.filename}:{f.name}" for f in frames for marker in HOST_SIDE)
            self.counts[f"host-side {name}" if host else name] += 1
        return func(*args, **(kwargs or {}))


class Pairs(torch.utils.data.Dataset):
    """(view1, view2, label) of random 8x8 images."""

    def __init__(self, n: int = STEPS * BATCH):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 8, 8, generator=g)
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.num_classes = 3

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.x[i] + 0.1 * torch.randn_like(self.x[i]), self.y[i]


def _trainer():
    try:
        from superinfo.trainer import TrainConfig, train     # the layered package
    except ImportError:
        from superinfo.train import TrainConfig, train       # the flat one before it
    return TrainConfig, train


def count(epochs: int, **overrides) -> collections.Counter:
    TrainConfig, train = _trainer()
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(dataset="digits", out=str(Path(out) / "run"), arch="tiny", width=4, z_dim=8, epochs=epochs,
                          batch_size=BATCH, warmup_epochs=0, num_workers=0, device="cpu", final_eval="none",
                          progress=False, **overrides)
        with CountHostReads() as mode:
            train(cfg, pretrain_data=Pairs(), num_classes=3)
    return mode.counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", help="a checkout to import superinfo from (default: this one)")
    p.add_argument("--lambda-a", type=float, default=0.1)
    p.add_argument("--json", help="write the counts to this file")
    args = p.parse_args(argv)
    if args.root:
        sys.path.insert(0, str(Path(args.root).resolve()))
    torch.set_num_threads(1)
    one, two = count(1, lambda_a=args.lambda_a), count(2, lambda_a=args.lambda_a)
    per_step = {k: (two[k] - one[k]) / STEPS for k in sorted(set(one) | set(two)) if two[k] != one[k]}
    total = sum(v for k, v in per_step.items() if not k.startswith("host-side"))
    result = {"syncs_per_step": total, "by_kind": per_step, "steps_per_epoch": STEPS, "log_every": 10,
              "lambda_a": args.lambda_a, "root": args.root or "."}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
