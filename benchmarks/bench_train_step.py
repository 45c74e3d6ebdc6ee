"""pytest-benchmark: one SuperInfo training step at CIFAR scale on CPU: ResNet-18 (CIFAR stem), two 32x32 views of
a batch of 64, projection head to 128, NT-Xent + KL superfluous terms (lambda 0.1), Adam.  Reports images/second
(pairs of views per second) in extra_info.

    OMP_NUM_THREADS=2 .venv/bin/python -m pytest benchmarks/bench_train_step.py --benchmark-enable -p no:randomly

A step costs seconds on a laptop-class CPU, so rounds are few; GPU throughput: benchmarks/gpu_train_throughput.py.
"""
import os

import pytest
import torch

from superinfo.trainer.models import build_model
from superinfo.objective import GaussianPosterior, SuperInfoLoss
from superinfo.trainer.optim import build_optimizer

BATCH, SIZE = 64, 32


@pytest.mark.parametrize("arch", ["resnet18"])
def test_train_step_cpu(benchmark, arch):
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    torch.manual_seed(0)
    model = build_model(arch, cifar_stem=True)
    loss_fn = SuperInfoLoss(128, lambda_a=0.1, temperature=0.5)
    opt = build_optimizer("adam", [model, loss_fn], 1e-3, 1e-6)
    x1, x2 = torch.randn(BATCH, 3, SIZE, SIZE), torch.randn(BATCH, 3, SIZE, SIZE)

    def step():
        _, post = model(torch.cat([x1, x2]))
        p1 = GaussianPosterior(post.mean[:BATCH], post.logvar[:BATCH])
        p2 = GaussianPosterior(post.mean[BATCH:], post.logvar[BATCH:])
        loss = loss_fn(p1, p2).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(arch=arch, batch=BATCH, image_size=SIZE, threads=torch.get_num_threads(),
                                images_per_s=BATCH / mean, seconds_per_50k_epoch=50_000 / BATCH * mean)
    print(f"\n{arch} CIFAR step, batch {BATCH}: {mean:.2f} s/step = {BATCH / mean:.1f} images/s "
          f"({torch.get_num_threads()} threads)")
