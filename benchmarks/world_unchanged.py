"""The world's results are untouched by a refactoring: four short runs (kl, automatic lambda, club, the entangled
world with a backbone) give the same numbers, bit for bit, as those of a given commit.

    git archive c5cc6bc | tar -x -C /tmp/old
    (cd /tmp && PYTHONPATH=/tmp/old /work/main/.venv/bin/python /work/main/benchmarks/world_unchanged.py /tmp/world_old.json)
    .venv/bin/python benchmarks/world_unchanged.py /tmp/world_new.json --compare /tmp/world_old.json

Prints, per run, the keys whose values differ (timings excluded).
"""
import argparse
import json

import torch

import superinfo
from superinfo.world import run_world

RUNS = {"kl0.1": dict(lambda_a=0.1, bound="kl"), "auto": dict(lambda_a="auto", bound="kl"),
        "club": dict(lambda_a=0.1, bound="club"),
        "entangled": dict(lambda_a=0.03, bound="kl", world="entangled", backbone_dim=8)}
TIMINGS = ("seconds", "train_seconds")

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("out")
parser.add_argument("--compare", default=None)
args = parser.parse_args()
torch.set_num_threads(1)
results = {}
for name, kw in RUNS.items():
    r = run_world(seed=1, steps=300, probe_samples=500, probe_steps=20, **kw)
    results[name] = {k: v for k, v in r.items() if k not in TIMINGS}
with open(args.out, "w") as f:
    json.dump(results, f, sort_keys=True, default=str)
print(f"superinfo from {superinfo.__file__}")
if args.compare:
    old = json.load(open(args.compare))
    new = json.loads(json.dumps(results, sort_keys=True, default=str))
    for name in old:
        differ = [k for k in old[name] if old[name][k] != new[name].get(k)]
        print(f"{name:<10} identical: {not differ}" + (f" (differ: {differ})" if differ else ""))
