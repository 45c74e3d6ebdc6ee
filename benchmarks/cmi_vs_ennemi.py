"""KSG-CMI (``mi_toolkit.estimate_cmi``) against the closed form of ``synthetic.ConditionalGaussian`` and against
ennemi (Laarne et al., an independent KSG / Frenzel-Pompe implementation) on the same saved samples.

Two commands (ennemi lives in a scratch venv outside the repository, never in pyproject):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cmi_vs_ennemi.py --samples-dir /tmp/cmi_samples \\
        --out benchmarks/results/cmi_vs_ennemi.json
    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install ennemi numpy scipy
    /tmp/peers/bin/python benchmarks/cmi_vs_ennemi.py --ennemi --samples-dir /tmp/cmi_samples \\
        --out benchmarks/results/cmi_vs_ennemi.json

The first samples every case (5000 rows, seed 0), saves x, y, z as .npy and records ours: ``estimate_cmi`` with its
defaults (copula, k=3, SE over 10 half-samples) and with ``preprocess="standardize"`` (closest to ennemi's own
preprocessing: unit variance plus tiny noise).  The second adds ennemi's ``estimate_mi(y, x, cond=z, k=3)`` to the
same JSON.  ennemi takes a 1-D y and treats each column of x separately (z is used jointly), so it is compared on
the dim_x = dim_y = 1 cases; the others are against the truth only.  Tolerance: max(0.15 nats, 15%).
"""
from __future__ import annotations

import argparse
import json
import os
import time

CASES = [  # (dim_x, dim_y, dim_z, cmi)
    (1, 1, 1, 0.5), (1, 1, 2, 0.5), (1, 1, 3, 0.5), (1, 1, 5, 0.5), (1, 1, 10, 0.5),
    (1, 1, 1, 0.0), (1, 1, 5, 0.0), (1, 1, 1, 1.0), (1, 1, 3, 1.0),
    (2, 2, 2, 0.5), (3, 3, 3, 0.5), (1, 5, 3, 0.5), (5, 5, 5, 0.5), (10, 10, 10, 0.5), (10, 10, 1, 0.5),
]
TOLERANCE = (0.15, 0.15)


def case_key(dx, dy, dz, cmi):
    return f"dx{dx}-dy{dy}-dz{dz}-cmi{cmi:g}"


def run_ours(args):
    import warnings

    import numpy as np
    import torch

    import mi_toolkit
    from mi_toolkit.atomic import write_json_atomically
    from synthetic import ConditionalGaussian

    torch.set_num_threads(1)
    warnings.simplefilter("ignore", mi_toolkit.MIEstimateWarning)
    os.makedirs(args.samples_dir, exist_ok=True)
    rows = []
    for dx, dy, dz, cmi in CASES:
        task = ConditionalGaussian(dx, dy, dz, cmi=cmi, seed=dx + 10 * dy + 100 * dz)
        x, y, z = (t.double().numpy() for t in task.sample(args.samples, torch.Generator().manual_seed(args.seed)))
        key = case_key(dx, dy, dz, cmi)
        for name, a in (("x", x), ("y", y), ("z", z)):
            np.save(os.path.join(args.samples_dir, f"{key}-{name}.npy"), a)
        start = time.perf_counter()
        ours = mi_toolkit.estimate_cmi(x, y, z)
        seconds = time.perf_counter() - start
        std = mi_toolkit.estimate_cmi(x, y, z, preprocess="standardize", subsamples=0)
        truth = task.cmi_closed_form
        tol = max(TOLERANCE[0], TOLERANCE[1] * truth)
        row = {"case": key, "dim_x": dx, "dim_y": dy, "dim_z": dz, "truth": truth, "n": args.samples,
               "ours_copula": ours.mi, "ours_copula_stderr": ours.stderr, "ours_standardize": std.mi,
               "ours_error": ours.mi - truth, "tolerance": tol, "within_tolerance": bool(abs(ours.mi - truth) <= tol),
               "ours_seconds_with_10_halves": round(seconds, 2), "ennemi": None}
        rows.append(row)
        print(f"{key:28s} truth {truth:.3f}  ours {ours.mi:.3f} ± {ours.stderr:.3f} (standardize {std.mi:.3f})  "
              f"error {ours.mi - truth:+.3f}  {'ok' if row['within_tolerance'] else 'MISS'}  {seconds:.1f}s",
              flush=True)
    record = {"what": "I(X;Y|Z) on synthetic.ConditionalGaussian (z_strength=1), KSG-CMI k=3 vs closed form vs "
                      "ennemi.estimate_mi(y, x, cond=z, k=3) on the same samples", "samples": args.samples,
              "seed": args.seed, "tolerance": "max(0.15 nats, 15%)", "rows": rows}
    write_json_atomically(args.out, record)


def _dump(path, record):        # the scratch venv has no mi_toolkit: a plain atomic write
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(record, handle, indent=1)
    os.replace(tmp, path)


def run_ennemi(args):
    import ennemi
    import numpy as np

    with open(args.out) as handle:
        record = json.load(handle)
    for row in record["rows"]:
        if row["dim_x"] != 1 or row["dim_y"] != 1:
            row["ennemi"] = None
            row["ennemi_note"] = "not comparable: ennemi takes a 1-D y and each x column separately"
            continue
        x, y, z = (np.load(os.path.join(args.samples_dir, f"{row['case']}-{name}.npy")) for name in ("x", "y", "z"))
        start = time.perf_counter()
        value = float(np.asarray(ennemi.estimate_mi(y[:, 0], x[:, 0], cond=z, k=3, max_threads=1)).reshape(-1)[0])
        row["ennemi"] = value
        row["ennemi_seconds"] = round(time.perf_counter() - start, 2)
        row["ennemi_error"] = value - row["truth"]
        row["ours_minus_ennemi"] = row["ours_copula"] - value
        row["ours_standardize_minus_ennemi"] = row["ours_standardize"] - value
        print(f"{row['case']:28s} truth {row['truth']:.3f}  ours {row['ours_copula']:.3f} "
              f"(standardize {row['ours_standardize']:.3f})  ennemi {value:.3f}", flush=True)
    record["ennemi_version"] = getattr(ennemi, "__version__", None) or _version("ennemi")
    _dump(args.out, record)


def _version(package):
    from importlib.metadata import version
    return version(package)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ennemi", action="store_true", help="add ennemi's estimates to --out (scratch venv)")
    parser.add_argument("--samples-dir", default="/tmp/cmi_samples")
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/cmi_vs_ennemi.json")
    args = parser.parse_args()
    (run_ennemi if args.ennemi else run_ours)(args)


if __name__ == "__main__":
    main()
