"""pytest-benchmark: InfoNCE forward + backward on CPU, naive (full 2N x 2N matrix) vs chunked (tiles, online
log-sum-exp, recomputing backward): SimCLR shape, N = 4096 pairs (8192 rows), d = 128, float32, T = 0.1.

    OMP_NUM_THREADS=2 .venv/bin/python -m pytest benchmarks/bench_kernels_cpu.py --benchmark-enable -p no:randomly

Peak memory is measured by benchmarks/kernels_memory.py (pytest-benchmark times only).
"""
import pytest
import torch

from mi_toolkit.kernels import infonce

N_PAIRS, DIM = 4096, 128


@pytest.fixture(scope="module")
def views():
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(N_PAIRS, DIM, generator=g)
    z2 = z1 + 0.5 * torch.randn(N_PAIRS, DIM, generator=g)  # correlated views, as after augmentations
    return z1, z2


@pytest.mark.parametrize("backend", ["naive", "chunked"])
def test_simclr_forward_backward(benchmark, views, backend):
    z1, z2 = (v.clone().requires_grad_() for v in views)

    def step():
        z1.grad = z2.grad = None
        loss = infonce(z1, z2, 0.1, shape="simclr", backend=backend)
        loss.backward()
        return float(loss.detach())

    loss = benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    benchmark.extra_info.update(n_pairs=N_PAIRS, dim=DIM, loss=loss)
    assert loss == pytest.approx(float(infonce(*views, 0.1, backend="naive")), rel=1e-5)
