"""GPU check and benchmark of the InfoNCE backends: naive vs chunked vs triton, forward + backward.

    python benchmarks/gpu_kernels.py [--out PATH]          # on a CUDA machine, < 8 minutes
    python benchmarks/gpu_kernels.py --dry-run              # anywhere: tiny sizes, CPU (triton via its interpreter)
    python benchmarks/gpu_kernels.py --compile-only         # no GPU needed: compile every kernel for sm_90

1. Correctness first (seconds): triton and chunked against naive in float32 on small, odd shapes (both shapes,
   with and without normalisation), and float16 / bfloat16 against float32 naive with half-precision tolerances.
   This is what the CPU test suite cannot do: run the compiled kernels.
2. Benchmark: SimCLR shape (2N rows), d = 128, N in {4096, 16384, 65536, 131072} pairs, float32 and bfloat16.
   Time: CUDA events around one forward + backward (median of a few after a warm-up that includes compilation).
   Memory: torch.cuda.max_memory_allocated() during the call minus what was allocated before it (inputs excluded).
   Out-of-memory is caught per configuration and recorded.  A time budget skips what is left once spent.

Writes JSON to --out (default $OUT/kernels_gpu.json when $OUT is set, else benchmarks/results/kernels_gpu.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: mi_toolkit

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BACKENDS = ("naive", "chunked", "triton")


def parse_args(argv=None):
    default_out = (os.path.join(os.environ["OUT"], "kernels_gpu.json") if os.environ.get("OUT")
                   else os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "kernels_gpu.json"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=default_out)
    parser.add_argument("--sizes", default="4096,16384,65536,131072", help="numbers of pairs N (2N rows)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--shapes", default="simclr", help="comma list of simclr,pairwise")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (1 when a run > 2 s)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip the remaining benchmarks after this")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (or the GPU if present)")
    parser.add_argument("--compile-only", type=int, nargs="?", const=90, metavar="CAPABILITY",
                        help="compile the kernels for this CUDA capability (default 90) without a GPU, then exit")
    return parser.parse_args(argv)


def setup_device(dry_run: bool) -> torch.device:
    """CUDA if present; a dry run without CUDA runs on CPU with Triton's interpreter."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if not dry_run:
        sys.exit("no CUDA device: run with --dry-run to exercise the script on CPU")
    os.environ["TRITON_INTERPRET"] = "1"  # before mi_toolkit.kernels imports triton (lazily, on first use)
    return torch.device("cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_inputs(n: int, d: int, dtype: torch.dtype, device: torch.device, seed: int = 0, scale: float = 1.0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    z1 = torch.randn(n, d, generator=g) * scale
    z2 = z1 + 0.5 * scale * torch.randn(n, d, generator=g)  # correlated views
    return z1.to(device, dtype), z2.to(device, dtype)


def loss_and_grads(z1, z2, backend: str, shape: str = "simclr", normalize: bool = True):
    """Loss and gradients (z1, z2, T); raw vectors use T = 1 like a separable critic, cosines T = 0.1."""
    from mi_toolkit.kernels import infonce

    temperature = 0.1 if normalize else 1.0
    a = z1.detach().clone().requires_grad_()
    b = z2.detach().clone().requires_grad_()
    t = torch.tensor(temperature, device=z1.device, requires_grad=True)
    loss = infonce(a, b, t, shape=shape, normalize=normalize, backend=backend, learn_temperature=True)
    loss.backward()
    return [loss.detach().float(), a.grad.float(), b.grad.float(), t.grad.float()]


def relative_error(got, want) -> float:
    """max |got - want| / max(1, max |want|) over the loss and every gradient."""
    return max(float((g - w).abs().max()) / max(1.0, float(w.abs().max())) for g, w in zip(got, want))


# ------------------------------------------------------------------------------------------------ correctness
def correctness_checks(device: torch.device, dtypes, small: bool) -> list[dict]:
    """Compiled kernels vs naive float32 on odd sizes: masks, padding and the online LSE all get exercised."""
    records = []
    cases = [(37, 21, "simclr", True), (300, 100, "pairwise", True), (513, 128, "simclr", False),
             (1000, 64, "pairwise", False)]
    if small:  # the CPU interpreter is slow
        cases = [(37, 21, "simclr", True), (20, 40, "pairwise", False)]
    for n, d, shape, normalize in cases:
        z1, z2 = make_inputs(n, d, torch.float32, device, seed=n, scale=1.0 if normalize else d ** -0.5)
        want = loss_and_grads(z1, z2, "naive", shape, normalize)
        for dtype_name in dtypes:
            dtype = DTYPES[dtype_name]
            for backend in ("chunked", "triton"):
                record = dict(n=n, d=d, shape=shape, normalize=normalize, dtype=dtype_name, backend=backend)
                # float32 should match to rounding; half inputs are rounded once, so their bound is looser
                tolerance = 1e-4 if dtype == torch.float32 else 8 * torch.finfo(dtype).eps
                try:
                    got = loss_and_grads(z1.to(dtype), z2.to(dtype), backend, shape, normalize)
                    error = relative_error(got, want if dtype == torch.float32 else
                                           loss_and_grads(z1.to(dtype).float(), z2.to(dtype).float(), "naive",
                                                          shape, normalize))
                    record.update(relative_error=error, tolerance=tolerance, ok=bool(error <= tolerance))
                except Exception as err:  # record and go on: one broken case must not hide the others
                    record.update(ok=False, error=f"{type(err).__name__}: {err}")
                records.append(record)
                print(f"check {backend:<8} {dtype_name:<9} {shape:<8} N={n:<5} d={d:<4} norm={normalize!s:<5} "
                      f"{'ok' if record['ok'] else 'FAIL'} {record.get('relative_error', record.get('error'))}",
                      flush=True)
    return records


# -------------------------------------------------------------------------------------------------- benchmark
def timed_call(fn, device: torch.device) -> float:
    """Seconds for fn(), by CUDA events on a GPU (perf_counter on CPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000.0
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def peak_extra_bytes(fn, device: torch.device):
    """Peak bytes allocated by fn() above what was allocated before it (None on CPU)."""
    if device.type != "cuda":
        fn()
        return None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def is_out_of_memory(err: Exception) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def bench_one(backend: str, n: int, d: int, dtype: torch.dtype, shape: str, device: torch.device, repeats: int):
    from mi_toolkit.kernels import infonce

    z1, z2 = make_inputs(n, d, dtype, device)
    z1.requires_grad_()
    z2.requires_grad_()

    def step():
        z1.grad = z2.grad = None
        infonce(z1, z2, 0.1, shape=shape, backend=backend).backward()

    first = timed_call(step, device)  # warm-up: Triton compiles here, cuBLAS picks its kernels
    peak = peak_extra_bytes(step, device)
    times = [timed_call(step, device) for _ in range(1 if first > 2.0 else repeats)]
    return dict(first_call_s=first, times_s=times, median_s=statistics.median(times), peak_extra_bytes=peak)


def run_benchmarks(args, dtypes, device: torch.device, started: float) -> list[dict]:
    sizes = [48, 100] if args.dry_run else [int(s) for s in args.sizes.split(",")]
    records = []
    for shape in args.shapes.split(","):
        for dtype_name in dtypes:
            for n in sizes:
                for backend in BACKENDS:
                    record = dict(shape=shape, dtype=dtype_name, n_pairs=n,
                                  rows=2 * n if shape == "simclr" else n, d=args.dim, backend=backend)
                    if time.time() - started > args.budget_s:
                        record["skipped"] = f"time budget of {args.budget_s:.0f} s spent"
                    else:
                        try:
                            record.update(bench_one(backend, n, args.dim, DTYPES[dtype_name], shape, device,
                                                    args.repeats))
                        except Exception as err:
                            record["oom" if is_out_of_memory(err) else "error"] = f"{type(err).__name__}: {err}"[:500]
                        finally:
                            if device.type == "cuda":
                                torch.cuda.empty_cache()
                    records.append(record)
                    summary = (f"{record['median_s'] * 1e3:9.1f} ms  peak {record['peak_extra_bytes'] / 2**20:9.1f} MiB"
                               if "median_s" in record and record["peak_extra_bytes"] is not None
                               else f"{record['median_s'] * 1e3:9.1f} ms" if "median_s" in record
                               else record.get("oom") or record.get("error") or record.get("skipped"))
                    print(f"bench {shape} {dtype_name:<9} N={n:<7} {backend:<8} {summary}", flush=True)
    return records


def compile_only(capability: int, dims=(128,)) -> int:
    """Ahead-of-time compile every kernel variant (Triton codegen + ptxas) for a CUDA target, no GPU needed.

    Catches what the interpreter cannot: compiled-mode type errors, unsupported constructs, shared memory use.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from mi_toolkit.kernels import triton_kernels as tk

    pointer = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
    failures = 0
    for dtype, d, has_exclude in [(t, d, e) for t in pointer for d in dims for e in (True, False)]:
        meta, warps = tk._launch_config(torch.empty(1, d, dtype=dtype), None, None)
        meta["HAS_EXCLUDE"] = has_exclude
        for kernel in (tk._forward_kernel, tk._grad_rows_kernel, tk._grad_cols_kernel):
            kinds = {"A": pointer[dtype], "B": pointer[dtype], "DA": pointer[dtype], "DB": pointer[dtype],
                     "POS": "*i32", "EXCL": "*i32", "M": "i32", "K": "i32", "D": "i32"}
            # the rest: strides are ints, other upper-case names float32 buffers (row stats, losses, grad)
            signature = {name: "constexpr" if name in meta else kinds.get(name, "i32" if name.startswith("stride")
                                                                          else "*fp32")
                         for name in kernel.arg_names}
            try:
                compiled = triton.compile(ASTSource(kernel, signature, constexprs=dict(meta)),
                                          target=GPUTarget("cuda", capability, 32), options={"num_warps": warps})
                status = f"ok, shared memory {compiled.metadata.shared} B"
            except Exception as err:
                failures += 1
                status = f"FAILED {type(err).__name__}: {str(err)[:300]}"
            print(f"sm_{capability} {kernel.__name__:<18} {str(dtype):<15} d={d} exclude={has_exclude!s:<5} {status}",
                  flush=True)
    return 1 if failures else 0


def machine_info(device: torch.device) -> dict:
    info = dict(torch=torch.__version__, python=platform.python_version(), device=str(device))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_bytes=props.total_memory,
                    allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.compile_only:
        return compile_only(args.compile_only)
    started = time.time()
    device = setup_device(args.dry_run)
    if args.dry_run:
        args.dim = min(args.dim, 32)
    # numpy, hence Triton's CPU interpreter, has no bfloat16
    dtypes = [d for d in args.dtypes.split(",") if not (device.type == "cpu" and d == "bfloat16")]
    result = dict(machine=machine_info(device), args=vars(args),
                  method="fwd+bwd of infonce(z1, z2, 0.1, normalize=True); CUDA-event time; "
                         "max_memory_allocated minus memory_allocated before the call")
    check_dtypes = dtypes if device.type == "cpu" else ["float32", "float16", "bfloat16"]
    result["checks"] = correctness_checks(device, check_dtypes, small=device.type == "cpu")
    result["benchmarks"] = run_benchmarks(args, dtypes, device, started)
    result["total_s"] = time.time() - started
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    failed = [c for c in result["checks"] if not c["ok"]]
    print(f"wrote {args.out} in {result['total_s']:.0f} s; {len(failed)} failed check(s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
