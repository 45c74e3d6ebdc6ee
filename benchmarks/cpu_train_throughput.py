"""Images per second of the trainer's ``train()`` (what ``superinfo train`` calls) on the CPU, side by side in one run:
this checkout against another one (e.g. the previous main: ``git worktree add /tmp/oldmain be8a456``), the same tiny
model and settings, on digits (16 px) and on synthetic random 32x32 images, each pipeline the checkout has
(``--data-pipeline loader`` and ``device`` here; the old main has only the DataLoader).

    nice .venv/bin/python benchmarks/cpu_train_throughput.py --old /tmp/oldmain --json benchmarks/results/cpu_train_throughput.json

Each measurement is its own process (one thread, ``--threads``, DataLoader without workers), trains 2 epochs and
times the second one from the log's ``elapsed_s`` at the end of each epoch (steps, log rows and the first epoch's
checkpoint write included; set-up, data loading and the first epoch's warm-up excluded).  By default the clock is
the process's CPU time (``--clock cpu``: ``time.perf_counter`` is replaced by ``time.process_time`` in the worker,
so the trainer's own ``elapsed_s`` counts CPU seconds): on a machine shared with other jobs, wall time measures the
load; with one thread and no worker processes, CPU time is the single-core cost.  ``--clock wall`` keeps wall time.
Rounds interleave the configurations; the JSON keeps every round and the median.  Images are source images
(each gives two views).  The synthetic set goes in through ``train(pretrain_data=...)`` because the old checkout
has no ``--dataset synthetic``; digits go through each checkout's own ``pretrain_dataset`` as its CLI does.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
SETTINGS = dict(arch="tiny", width=16, z_dim=32, batch_size=128, lr=1e-3, warmup_epochs=0, lambda_a=0.1,
                epochs=2, num_workers=0, device="cpu", final_eval="none", progress=False, log_every=10, seed=0)
SYNTHETIC_N = 2048


def _worker(spec: dict) -> dict:
    """Runs in a subprocess with the checkout's root first on sys.path."""
    sys.path.insert(0, spec["root"])
    import torch
    from PIL import Image

    torch.set_num_threads(spec["threads"])
    if spec.get("clock", "cpu") == "cpu":
        time.perf_counter = time.process_time       # the trainer's elapsed_s and images_per_s in CPU seconds
    from superinfo import data
    try:
        from superinfo.trainer import TrainConfig, train
    except ImportError:             # the flat layout before superinfo/trainer
        from superinfo.train import TrainConfig, train

    class RandomImages(torch.utils.data.Dataset):
        """Random uint8 RGB images with labels 0..9 (PIL for the loader; images_uint8 for the device pipeline)."""
        classes = [str(c) for c in range(10)]

        def __init__(self, n, size):
            g = torch.Generator().manual_seed(0)
            self.images_uint8 = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
            self.labels = torch.randint(0, 10, (n,), generator=g)

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return Image.fromarray(self.images_uint8[i].permute(1, 2, 0).numpy()), int(self.labels[i])

    settings = dict(SETTINGS)
    if spec["pipeline"] != "old":
        settings["data_pipeline"] = spec["pipeline"]
    if spec["dataset"] == "digits":
        preset = data.preset_for("digits", 16)
        pretrain = data.pretrain_dataset("digits", None, preset)
        settings.update(dataset="digits", image_size=16)
    else:
        preset = data.preset_for("cifar10", 32)
        pretrain = data.TwoViews(RandomImages(SYNTHETIC_N, 32), data.two_view_transform(preset))
        settings.update(dataset="cifar10", image_size=32)
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(out=str(Path(out) / "run"), **settings)
        start = time.perf_counter()
        train(cfg, pretrain_data=pretrain, num_classes=10)
        total = time.perf_counter() - start
        with open(Path(out) / "run" / "log.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    ends = {}
    for r in rows:
        ends[int(r["epoch"])] = (int(r["step"]), float(r["elapsed_s"]))
    steps = ends[2][0] - ends[1][0]
    seconds = ends[2][1] - ends[1][1]
    images = steps * SETTINGS["batch_size"]
    return {"images_per_s": images / seconds, "epoch_s": seconds, "steps_per_epoch": steps, "images": images,
            "total_s": total}


def _measure(root: str, dataset: str, pipeline: str, threads: int, clock: str) -> dict:
    spec = dict(root=root, dataset=dataset, pipeline=pipeline, threads=threads, clock=clock)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, str(HERE), "--worker", json.dumps(spec)], capture_output=True, text=True,
                         env=env, cwd=root)
    if out.returncode != 0:
        raise RuntimeError(f"{spec}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", help="the other checkout (its root); default: this one alone")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0
    configs = []
    for dataset in ("digits", "synthetic"):
        if args.old:
            configs.append(("old", str(Path(args.old).resolve()), dataset, "old"))
        configs += [("new", str(ROOT), dataset, "loader"), ("new", str(ROOT), dataset, "device")]
    runs = {f"{who}/{dataset}/{pipe}": [] for who, _, dataset, pipe in configs}
    for r in range(args.rounds):
        for who, root, dataset, pipe in configs:
            key = f"{who}/{dataset}/{pipe}"
            res = _measure(root, dataset, pipe, args.threads, args.clock)
            runs[key].append(res)
            print(f"round {r + 1}: {key:24s} {res['images_per_s']:8.1f} images/s  ({res['epoch_s']:.2f} {args.clock} s per "
                  f"epoch of {res['images']} images)", flush=True)
    median = {k: statistics.median(x["images_per_s"] for x in v) for k, v in runs.items()}
    result = {"what": f"images per {args.clock} second (source images, two views each) of train() on the CPU, "
                      f"epoch 2 of 2, median of {args.rounds} interleaved rounds", "clock": args.clock, "settings": SETTINGS, "synthetic_images": SYNTHETIC_N,
              "threads": args.threads, "old": args.old, "old_commit": _commit(args.old), "new_commit": _commit(ROOT),
              "median_images_per_s": median, "runs": runs, "cpu_count": os.cpu_count(),
              "note": "a 2-core machine shared with other sessions; run under nice"}
    if args.old:
        result["speedup_vs_old"] = {k: median[k] / median[f"old/{k.split('/')[1]}/old"]
                                    for k in median if k.startswith("new/")}
    print(json.dumps({"median_images_per_s": median, "speedup_vs_old": result.get("speedup_vs_old")}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _commit(root) -> str | None:
    if root is None:
        return None
    out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or None


if __name__ == "__main__":
    sys.exit(main())
