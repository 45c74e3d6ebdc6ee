import os

# Triton kernels run on CPU tensors under its interpreter, which must be on before triton is first imported
# (torchvision's import already pulls it in, and triton.language's own @jit helpers are built at that moment).
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Small CPU work: one thread is fastest and makes timings and results repeatable.
torch.set_num_threads(1)

settings.register_profile("ci", max_examples=15, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)
