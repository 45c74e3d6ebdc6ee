import atexit
import os
import shutil
import tempfile

# Triton kernels run on CPU tensors under its interpreter, which must be on before triton is first imported
# (torchvision's import already pulls it in, and triton.language's own @jit helpers are built at that moment).
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.configuration import set_hypothesis_home_dir  # noqa: E402

# Small CPU work: one thread is fastest and makes timings and results repeatable.
torch.set_num_threads(1)

settings.register_profile("ci", max_examples=15, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# hypothesis keeps its caches in ./.hypothesis by default: a temporary folder instead, so no test writes into the tree
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def tiny_digits_run(tmp_path_factory):
    """A finished tiny digits run (``fixtures_state.tiny_train_argv``, through the CLI), trained once per session:
    read it, or copy it before changing anything in it."""
    from fixtures_state import tiny_train_argv
    from superinfo.cli import main

    run = tmp_path_factory.mktemp("tiny-digits") / "run"
    assert main(tiny_train_argv(run)) == 0
    return run
