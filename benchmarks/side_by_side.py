"""Step time of ours and torch-mist's estimators, measured back to back in one run on the same machine.

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/side_by_side.py \
        --torch-mist-python /work/scratch/tmist-venv/bin/python

torch-mist runs in its own scratch environment (see benchmarks/torch_mist_staircase.py for how to build it; it is
never a dependency of this project). Writes benchmarks/results/side_by_side_step_time.json and prints the ratios.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from step_time import time_steps  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--torch-mist-python", required=True)
    parser.add_argument("--estimators", default="infonce,nwj,smile,mine")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "side_by_side_step_time.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.estimators.split(",")
    ours = {name: 1000 * float(np.median(time_steps(name, args.steps, args.warmup))) for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        theirs_path = os.path.join(tmp, "tm.json")
        subprocess.run([args.torch_mist_python, os.path.join(HERE, "torch_mist_step_time.py"), "--estimators",
                        args.estimators, "--steps", str(args.steps), "--warmup", str(args.warmup), "--out",
                        theirs_path], check=True)
        theirs_records = json.load(open(theirs_path))
    theirs_records = theirs_records["results"] if isinstance(theirs_records, dict) else theirs_records
    theirs = {r["estimator"]: 1000 * r["seconds_per_step"] for r in theirs_records}
    rows = [{"estimator": n, "ours_ms": ours[n], "torch_mist_ms": theirs.get(n),
             "speedup": theirs[n] / ours[n] if n in theirs else None} for n in names]
    for r in rows:
        print(f"{r['estimator']:<8} ours {r['ours_ms']:6.2f} ms   torch-mist {r['torch_mist_ms'] or float('nan'):6.2f} ms"
              f"   x{r['speedup'] or float('nan'):.1f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"protocol": "dim 20, batch 64, separable critic 20-256-256-32, Adam 5e-4, one thread, median of "
                               f"{args.steps} steps after {args.warmup} warm-up", "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
