"""The lambda sweep on the entangled world with a noisy backbone (issue: "a world where the paper's claim can show").

t1 rides on the shared directions (``synthetic.EntangledMultiViewWorld``) and a noisy linear backbone h sits
between each view and its head; the probes read h, as the paper evaluates the backbone.  For each lambda (and
automatic lambda) and seed it records the exact superfluous information of z1 and h1, I(z1;t1|v2), I(h1;t1|v2),
I(z1;s) and the probes' accuracies, then writes ``--out``/entangled_sweep.json, a markdown table on stdout and
``--out``/entangled_sweep.png (t1 curves against lambda).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/entangled_world_sweep.py --out docs/img      # ~10 min, 2 cores
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from mi_toolkit.atomic import write_json_atomically
from superinfo.world import run_world

KEYS = {"superfluous_nats": "I(z1;v1|v2)", "h_superfluous": "I(h1;v1|v2)", "t1_given_v2_nats": "I(z1;t1|v2)",
        "h_t1_given_v2": "I(h1;t1|v2)", "shared_nats": "I(z1;s)", "shared_probe_acc": "shared acc (h)",
        "t1_probe_acc": "t1 acc (h)"}


def record(r: dict) -> dict:
    bb = r["backbone"]
    return {"lambda": r["lambda"], "seed": r["seed"], "lambda_final": r["lambda_final"],
            "superfluous_nats": r["superfluous_nats"], "h_superfluous": bb["superfluous"],
            "t1_given_v2_nats": r["t1_given_v2_nats"], "h_t1_given_v2": bb["i_h_t1_given_v2"],
            "shared_nats": r["shared_nats"], "shared_probe_acc": r["shared_probe_acc"],
            "t1_probe_acc": r["t1_probe_acc"], "shared_bayes_acc": r["shared_bayes_acc"],
            "t1_bayes_acc": r["t1_bayes_acc"], "seconds": r["seconds"]}


def summarize(records: list[dict]) -> list[dict]:
    rows = []
    for lam in dict.fromkeys(r["lambda"] for r in records):
        group = [r for r in records if r["lambda"] == lam]
        row = {"lambda": lam, "seeds": len(group),
               "lambda_final": statistics.mean(r["lambda_final"] for r in group)}
        for key in KEYS:
            values = [r[key] for r in group]
            row[key], row[key + "_std"] = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fixed = [r for r in summary if r["lambda"] != "auto"]
    auto = [r for r in summary if r["lambda"] == "auto"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    panels = [(("t1_given_v2_nats", "h_t1_given_v2"), "non-shared task info I(·;t1|v2) [nats]"),
              (("superfluous_nats", "h_superfluous"), "superfluous I(·;v·|v2) [nats]"),
              (("shared_probe_acc", "t1_probe_acc"), "probe accuracy on h")]
    for ax, (keys, title) in zip(axes, panels):
        for i, key in enumerate(keys):
            x = [max(r["lambda"], 1e-3) for r in fixed]
            ax.errorbar(x, [r[key] for r in fixed], yerr=[r[key + "_std"] for r in fixed], marker="o", capsize=3,
                        color=f"C{i}", label=KEYS[key])
            for r in auto:
                ax.errorbar([r["lambda_final"]], [r[key]], yerr=[r[key + "_std"]], marker="*", ms=12, color=f"C{i}",
                            ls="none", label=f"{KEYS[key]}, auto λ")
        ax.set_xscale("log")
        ax.set_xlabel("λ (λ = 0 drawn at 1e-3; auto at its final λ)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=90)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lambdas", default="0,0.01,0.03,0.1,0.3,1,auto")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the world's)")
    p.add_argument("--backbone-dim", type=int, default=16)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = dict(world="entangled", backbone_dim=args.backbone_dim)
    if args.steps:
        options["steps"] = args.steps
    records = []
    started = time.perf_counter()
    for seed in [int(s) for s in args.seeds.split(",")]:
        for lam in args.lambdas.split(","):
            lam = lam if lam == "auto" else float(lam)
            records.append(record(run_world(lam, bound="kl", seed=seed, **options)))
            print(f"lambda={lam} seed={seed}: " + ", ".join(f"{k}={records[-1][k]:.3f}" for k in KEYS),
                  file=sys.stderr, flush=True)
    summary = summarize(records)
    write_json_atomically(out / "entangled_sweep.json", {"options": options, "records": records, "summary": summary,
                                                         "seconds": time.perf_counter() - started})
    plot(summary, out / "entangled_sweep.png")
    head = ["λ", "final λ"] + list(KEYS.values())
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in summary:
        cells = [str(r["lambda"]), f"{r['lambda_final']:.3g}"] + [f"{r[k]:.3f} ± {r[k + '_std']:.3f}" for k in KEYS]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
