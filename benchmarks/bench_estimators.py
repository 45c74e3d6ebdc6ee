"""pytest-benchmark: one training step (sample, forward, backward, Adam) of the critic-based estimators under the bias
benchmark's protocol (dim 20, batch 64, separable critic 20->256->256->32, one thread).

    .venv/bin/python -m pytest benchmarks/bench_estimators.py --benchmark-enable -p no:randomly
"""
import pytest
import torch

import mi_toolkit
from mi_toolkit.fit import make_adam
from synthetic import CorrelatedGaussian


@pytest.mark.parametrize("name", ["infonce", "nwj", "mine", "js", "smile", "club", "ba"])
def test_training_step(benchmark, name):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    task = CorrelatedGaussian(20, 6.0)
    generator = torch.Generator().manual_seed(0)
    kwargs = dict(critic="separable", embed_dim=32) if name not in ("club", "ba") else {}
    est = mi_toolkit.estimator(name, 20, 20, hidden=256, layers=2, **kwargs)
    optimizer = make_adam(est.parameters(), 5e-4)

    def step():
        x, y = task.sample(64, generator)
        out = est(x, y)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        return out.mi.item()

    benchmark.pedantic(step, rounds=300, warmup_rounds=30)
