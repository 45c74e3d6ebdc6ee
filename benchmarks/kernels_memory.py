"""Chunked vs naive InfoNCE on CPU: forward + backward time and peak memory of the loss computation, to JSON.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/kernels_memory.py [--out benchmarks/results/kernels_cpu.json]

Configurations: N in {4096, 16384} pairs, d = 128, float32, the SimCLR shape (2N rows against 2N columns) and the
symmetric pairwise (CLIP) shape; loss = infonce(z1, z2, 0.1, normalize=True) and its backward to z1, z2.

Every measurement runs in a fresh subprocess (clean allocator, a meaningful process high-water mark):

* peak_alloc_bytes: torch.profiler(profile_memory=True, record_shapes=True, with_stack=True) logs every CPU tensor
  allocation and free; the MemoryProfile timeline built from it (the data behind ``export_memory_timeline``)
  gives live bytes over time, counted from zero at the start of the call, so the inputs are excluded: the
  maximum is the peak memory of the loss computation.
* peak_rss_delta_bytes: the process's high-water RSS (getrusage ru_maxrss) after one unprofiled call minus its
  RSS right before it: the operating system's view, allocator slack included.
* time: seconds of one warm call (after an unprofiled warm-up call in the same process).  The backends alternate
  in rounds, each round a new pair of processes, and the speed ratio is the median of per-round ratios, which
  is robust to other load on the machine drifting between rounds.

Safety: a worker caps its address space (RLIMIT_AS) at 80% of MemAvailable, so a configuration that does not fit
fails with an allocation error recorded in the JSON instead of waking the OOM killer (and it volunteers as the
OOM killer's first victim); configurations whose predicted peak (1.25 x the smallest N's, scaled by N^2) exceeds
that cap are skipped and reported as such.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "kernels_cpu.json")
BACKENDS = ("naive", "chunked")


# ------------------------------------------------------------------------------------------- worker side
def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cap_address_space(budget_bytes: int) -> None:
    """Limit further allocation to budget_bytes beyond what the process has mapped now, and volunteer this
    process as the OOM killer's first choice, so a shared machine's other work is never the victim."""
    with open("/proc/self/status") as f:
        vm_size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm_size + budget_bytes, resource.RLIM_INFINITY))
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def profiled_peak_bytes(call) -> int:
    """Peak live bytes allocated during call(), from the profiler's memory timeline (private torch API)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action, MemoryProfile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        call()
    live = peak = 0
    for _, action, _, size in sorted(MemoryProfile(prof.profiler.kineto_results).timeline, key=lambda e: e[0]):
        if action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)  # tensors alive before the call (PREEXISTING) are not counted
    return peak


def worker(spec: dict) -> dict:
    import torch

    sys.path.insert(0, REPO)
    from mi_toolkit.kernels import infonce

    torch.manual_seed(0)
    n, d = spec["n"], spec["d"]
    z1 = torch.randn(n, d)
    z2 = z1 + 0.5 * torch.randn(n, d)
    z1.requires_grad_()
    z2.requires_grad_()
    cap_address_space(spec["budget_bytes"])

    def call():
        z1.grad = z2.grad = None
        loss = infonce(z1, z2, 0.1, shape=spec["shape"], symmetric=True, backend=spec["backend"])
        loss.backward()
        return float(loss.detach())

    out = {}
    try:
        before = current_rss_bytes()
        start = time.perf_counter()
        out["loss"] = call()
        out["cold_time_s"] = time.perf_counter() - start
        out["peak_rss_delta_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        start = time.perf_counter()
        call()
        out["time_s"] = time.perf_counter() - start
        if spec["profile"]:
            try:
                out["peak_alloc_bytes"] = profiled_peak_bytes(call)
            except Exception as err:  # private API: keep the other figures if it moves
                out["peak_alloc_error"] = f"{type(err).__name__}: {err}"
    except (MemoryError, RuntimeError) as err:
        out["error"] = f"{type(err).__name__}: {err}"[:300]
    return out


# ------------------------------------------------------------------------------------------- parent side
def run_worker(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                          capture_output=True, text=True, cwd=REPO)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"worker exited {proc.returncode}: {proc.stderr.strip()[-300:]}"}
    return json.loads(lines[-1])


def mem_available_bytes() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))


def measure_config(shape: str, n: int, d: int, rounds: int, predicted_peak: dict) -> dict:
    budget = int(0.8 * mem_available_bytes())
    record = dict(shape=shape, n_pairs=n, rows=2 * n if shape == "simclr" else n, d=d, dtype="float32",
                  budget_bytes=budget, rounds=[])
    runnable = [b for b in BACKENDS if predicted_peak.get(b, 0) < budget]
    for backend in set(BACKENDS) - set(runnable):
        record[backend] = dict(skipped=f"predicted peak {predicted_peak[backend] / 2**30:.1f} GiB exceeds the "
                                       f"{budget / 2**30:.1f} GiB budget (80% of MemAvailable)")
    for r in range(rounds):
        this_round = {}
        for backend in runnable:
            spec = dict(shape=shape, n=n, d=d, backend=backend, profile=(r == 0), budget_bytes=budget)
            this_round[backend] = run_worker(spec)
            print(f"{shape:<8} N={n:<6} round {r} {backend:<8} {this_round[backend]}", flush=True)
        record["rounds"].append(this_round)
    for backend in runnable:
        first = record["rounds"][0][backend]
        times = [rnd[backend]["time_s"] for rnd in record["rounds"] if "time_s" in rnd[backend]]
        record[backend] = {k: first[k] for k in ("loss", "peak_alloc_bytes", "peak_rss_delta_bytes", "error",
                                                 "peak_alloc_error") if k in first}
        if times:
            record[backend].update(time_s=times, time_median_s=statistics.median(times))
    summarize(record)
    return record


def summarize(record: dict) -> None:
    """Ratios against naive and the targets: chunked peak <= 10% of naive's, speed >= 0.8x naive's."""
    naive, chunked = record.get("naive", {}), record.get("chunked", {})
    ratios = [rnd["naive"]["time_s"] / rnd["chunked"]["time_s"] for rnd in record["rounds"]
              if "time_s" in rnd.get("naive", {}) and "time_s" in rnd.get("chunked", {})]
    if ratios:
        record["chunked_speed_vs_naive"] = statistics.median(ratios)  # > 1: chunked faster
        record["speed_target_met"] = record["chunked_speed_vs_naive"] >= 0.8
    if naive.get("peak_alloc_bytes") and "peak_alloc_bytes" in chunked:
        record["chunked_memory_fraction"] = chunked["peak_alloc_bytes"] / naive["peak_alloc_bytes"]
        record["memory_target_met"] = record["chunked_memory_fraction"] <= 0.10
    if "loss" in naive and "loss" in chunked:
        record["loss_abs_diff"] = abs(naive["loss"] - chunked["loss"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--sizes", default="4096,16384")
    parser.add_argument("--shapes", default="simclr,pairwise")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds at the smallest size")
    parser.add_argument("--big-rounds", type=int, default=1, help="timing rounds at the larger sizes (minutes each)")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    import torch

    started = time.time()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    result = dict(
        machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                     omp_num_threads=os.environ.get("OMP_NUM_THREADS"), torch=torch.__version__,
                     torch_threads=torch.get_num_threads(),
                     mem_total_bytes=os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")),
        command=" ".join(["OMP_NUM_THREADS=" + str(os.environ.get("OMP_NUM_THREADS")), ".venv/bin/python"]
                         + [os.path.relpath(os.path.abspath(__file__), REPO)] + (argv or sys.argv[1:])),
        method=__doc__.split("Every measurement", 1)[1].strip(), configs=[])
    for shape in args.shapes.split(","):
        smallest = {}
        for n in sizes:
            scale = (n / sizes[0]) ** 2
            # naive's peak grows as N^2 (chunked's slower: this over-predicts it); +25% for allocator slack
            predicted = {b: 1.25 * smallest[b] * scale for b in smallest}
            record = measure_config(shape, n, args.dim, args.rounds if n == sizes[0] else args.big_rounds, predicted)
            if n == sizes[0]:
                smallest = {b: record[b].get("peak_alloc_bytes", 0) for b in BACKENDS if b in record}
            result["configs"].append(record)
    result["total_s"] = time.time() - started
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out} in {result['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
