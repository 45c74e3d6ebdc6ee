"""Seconds per two-view epoch of ``superinfo train`` itself: the real CLI (``python -m superinfo train``) on synthetic
uint8 images, ``--data-pipeline device`` (images resident on the device, the trainer's batched augmentation
``superinfo.data.device_augment``), bf16 autocast and channels_last (the CUDA defaults), ``--compile`` off and on.
No second copy of the augmentation or the step: this script only launches the CLI and reads its ``log.csv``.

    python benchmarks/gpu_train_throughput.py --json benchmarks/results/gpu_train_throughput.json   # one GPU
    python benchmarks/gpu_train_throughput.py --kernels          # also runs benchmarks/gpu_kernels.py after it
    python benchmarks/gpu_train_throughput.py --dry-run          # anywhere: a tiny model, 1024 images, on the CPU

The default command (CIFAR-10-sized, the issue's target of <= 3 s per epoch on one H100/H200):

    python -m superinfo train --dataset synthetic --synthetic-size 50000 --image-size 32 --arch resnet18
        --epochs 3 --batch-size 512 --data-pipeline device --final-eval none --no-progress --log-every 50
        --out RUN [--compile]

Per epoch: the wall time between the log rows that end two epochs (``elapsed_s``; the row read is the step's one
host synchronisation, so the GPU's queue is drained there), which includes the previous epoch's checkpoint write,
and ``train_s``, the same without it (the sum over the epoch's log intervals).  Epoch 1 holds the warm-up
(cuDNN autotuning, torch.compile's compilation); the summary's ``seconds_per_epoch`` is the best later epoch.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def command(out: str, args, compile_: bool) -> list:
    cmd = [sys.executable, "-m", "superinfo", "train", "--dataset", "synthetic",
           "--synthetic-size", str(args.images), "--image-size", str(args.image_size), "--arch", args.arch,
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--data-pipeline", "device",
           "--final-eval", "none", "--no-progress", "--log-every", str(args.log_every), "--out", out]
    if args.width:
        cmd += ["--width", str(args.width)]
    if args.device:
        cmd += ["--device", args.device]
    if compile_:
        cmd += ["--compile"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return cmd


def epoch_times(log_csv: Path, batch_size: int) -> list:
    rows = list(csv.DictReader(open(log_csv, newline="")))
    out, prev_end, prev_step = [], 0.0, 0
    by_epoch = {}
    for r in rows:
        by_epoch.setdefault(int(r["epoch"]), []).append(r)
    for epoch in sorted(by_epoch):
        rs = by_epoch[epoch]
        train_s, step = 0.0, prev_step
        for r in rs:
            images = (int(r["step"]) - step) * batch_size
            train_s += images / float(r["images_per_s"])
            step = int(r["step"])
        end = float(rs[-1]["elapsed_s"])
        out.append({"epoch": epoch, "seconds": round(end - prev_end, 3), "train_s": round(train_s, 3),
                    "steps": step - prev_step, "images": (step - prev_step) * batch_size,
                    "loss": float(rs[-1]["loss"])})
        prev_end, prev_step = end, step
    return out


def run_one(args, compile_: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "run")
        cmd = command(out, args, compile_)
        print("$", " ".join(cmd[1:]), flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            return {"compile": compile_, "error": proc.stderr[-3000:], "wall_s": round(wall, 1)}
        epochs = epoch_times(Path(out) / "log.csv", args.batch_size)
        config = json.loads((Path(out) / "config.json").read_text())
    later = [e["seconds"] for e in epochs[1:]] or [epochs[0]["seconds"]]
    result = {"compile": compile_, "epochs": epochs, "seconds_per_epoch": min(later),
              "images_per_s": round(epochs[-1]["images"] / min(later), 1), "first_epoch_s": epochs[0]["seconds"],
              "process_wall_s": round(wall, 1), "data_pipeline": config["data_pipeline"], "amp": config["amp"]}
    for e in epochs:
        print(json.dumps(dict(e, compile=compile_)), flush=True)
    return result


def sync_check(args, steps: int = 20) -> dict:
    """CUDA synchronisations inside the trainer's own steps (``build_training`` + ``train_step`` on the device
    pipeline), counted by ``torch.cuda.set_sync_debug_mode("warn")`` over ``steps`` steps after 3 warm-up steps:
    what the CPU counter (benchmarks/host_syncs.py) cannot see, e.g. a boolean index or a host-to-device copy."""
    import warnings

    import torch
    sys.path.insert(0, str(ROOT))
    from superinfo import data
    from superinfo.trainer import TrainConfig, build_training
    from superinfo.trainer.loop import MetricInterval, train_step

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(dataset="synthetic", synthetic_size=4096, image_size=args.image_size, arch=args.arch,
                          width=args.width, batch_size=args.batch_size, epochs=1, data_pipeline="device",
                          final_eval="none", progress=False, out=tmp, lambda_a=0.1)
        pretrain, _ = data.load_datasets(cfg)
        t = build_training(cfg, pretrain, num_classes=10)
        interval = MetricInterval()
        batches = iter(t.loader)
        for _ in range(3):
            interval.add(train_step(t, next(batches)), args.batch_size, 0.0)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                done = 0
                for batch in batches:
                    interval.add(train_step(t, batch), args.batch_size, 0.0)
                    done += 1
                    if done == steps:
                        break
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]
    return {"steps": done, "syncs": len(syncs), "syncs_per_step": len(syncs) / max(done, 1),
            "first_messages": sorted(set(syncs))[:5]}


def _device() -> str:
    import torch
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--compile", choices=["both", "off", "on"], default="both")
    p.add_argument("--kernels", action="store_true", help="then run benchmarks/gpu_kernels.py")
    p.add_argument("--no-sync-check", action="store_true", help="skip the in-process CUDA sync count")
    p.add_argument("--dry-run", action="store_true", help="tiny: 1024 images, arch tiny, CPU, 2 epochs, no compile")
    p.add_argument("--json", help="write the summary here")
    args = p.parse_args(argv)
    if args.dry_run:
        args.images, args.arch, args.width, args.device, args.epochs = 1024, "tiny", 8, "cpu", 2
        args.batch_size, args.threads, args.compile = 128, args.threads or 1, "off"
    modes = {"both": (False, True), "off": (False,), "on": (True,)}[args.compile]
    summary = {"device": _device()}
    if not args.no_sync_check:
        summary["sync_check"] = sync_check(args)
        print("CUDA syncs inside steps:", json.dumps(summary["sync_check"]), flush=True)
    results = [run_one(args, c) for c in modes]
    summary.update({"command": " ".join(command("RUN", args, False)[1:]), "runs": results,
                    "images": args.images, "batch_size": args.batch_size, "dry_run": args.dry_run})
    for r in results:
        if "error" not in r:
            print(f"compile={'on' if r['compile'] else 'off'}: {r['seconds_per_epoch']:.2f} s per two-view epoch of "
                  f"{r['epochs'][-1]['images']} images ({r['images_per_s']:.0f} images/s; epoch 1: "
                  f"{r['first_epoch_s']:.1f} s)", flush=True)
        else:
            print(f"compile={'on' if r['compile'] else 'off'}: FAILED\n{r['error']}", flush=True)
    if args.kernels:
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_kernels.py")], cwd=ROOT,
                              capture_output=True, text=True)
        print(proc.stdout[-6000:], proc.stderr[-3000:], flush=True)
        summary["gpu_kernels"] = {"returncode": proc.returncode, "stdout_tail": proc.stdout[-6000:]}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
