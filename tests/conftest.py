import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Small CPU work: one thread is fastest and makes timings and results repeatable.
torch.set_num_threads(1)

settings.register_profile("ci", max_examples=15, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)
