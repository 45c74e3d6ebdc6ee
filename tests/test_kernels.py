"""The fused/tiled InfoNCE kernels against the naive full-matrix reference (and the naive one against the formula).

Triton kernels run on CPU through Triton's interpreter: TRITON_INTERPRET=1 must be set when the kernels are
defined (when ``mi_toolkit.kernels.triton_kernels`` is imported) and while they launch.  It is set for that import
and, by a module-scoped fixture, for this module's tests only: torch.compile also reads the variable, so no other
test module should see it.
"""
from __future__ import annotations

import importlib
import math
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mi_toolkit import kernels
from mi_toolkit.kernels import chunked, infonce, infonce_local


def _import_interpreted_triton():
    """The triton_kernels module with interpreter-mode kernels, or None when triton is not installed."""
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        module = importlib.import_module("mi_toolkit.kernels.triton_kernels")
        if not module.INTERPRETED:  # imported earlier without the interpreter: redefine the kernels
            module = importlib.reload(module)
        return module
    except ImportError:
        return None
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous


triton_kernels = _import_interpreted_triton()


@pytest.fixture(autouse=True, scope="module")
def triton_interpreter():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRITON_INTERPRET", "1")
        yield


needs_triton = pytest.mark.skipif(triton_kernels is None, reason="triton is not installed")
def fast(max_examples: int):
    """Hypothesis settings: no per-example deadline (shared CI cores), reproducible examples."""
    return settings(max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True)


# ----------------------------------------------------------------------------------------------------- helpers
def formula_loss(z1, z2, temperature, shape="simclr", symmetric=True, normalize=True):
    """The losses written out with logsumexp in float64: an independent check on the naive backend."""
    z1, z2 = z1.double(), z2.double()
    if normalize:
        z1, z2 = z1 / z1.norm(dim=1, keepdim=True), z2 / z2.norm(dim=1, keepdim=True)
    n = z1.shape[0]
    if shape == "simclr":
        z = torch.cat([z1, z2])
        s = z @ z.T / temperature
        s = s.masked_fill(torch.eye(2 * n, dtype=torch.bool), -math.inf)
        positives = torch.cat([s.diagonal(n), s.diagonal(-n)])
        return (torch.logsumexp(s, dim=1) - positives).mean()
    s = z1 @ z2.T / temperature
    rows = (torch.logsumexp(s, dim=1) - s.diagonal()).mean()
    if not symmetric:
        return rows
    return 0.5 * (rows + (torch.logsumexp(s, dim=0) - s.diagonal()).mean())


def make_inputs(n, d, seed, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64) * scale
    z2 = z1 + torch.randn(n, d, generator=g, dtype=torch.float64) * scale  # correlated views: varied losses
    return z1.to(dtype), z2.to(dtype)


def loss_and_grads(z1, z2, temperature, **kwargs):
    """Loss and gradients for z1, z2 and a learnable temperature."""
    z1 = z1.detach().clone().requires_grad_()
    z2 = z2.detach().clone().requires_grad_()
    t = torch.tensor(float(temperature), dtype=z1.dtype, requires_grad=True)
    loss = infonce(z1, z2, t, learn_temperature=True, **kwargs)
    loss.backward()
    return loss.detach(), z1.grad, z2.grad, t.grad


def assert_matches(result, reference, rtol=1e-5, atol=1e-6):
    """Loss and every gradient equal; atol scales with each reference's magnitude (gradients can be tiny).

    dL/dT sums N d products a_i . dL/da_i of either sign, so its float32 rounding is that of a long
    cancelling sum: it gets 10x the atol.
    """
    for name, got, want, slack in zip(("loss", "grad z1", "grad z2", "grad T"), result, reference, (1, 1, 1, 10)):
        scale = max(1.0, float(want.abs().max()))
        torch.testing.assert_close(got.to(want.dtype), want, rtol=rtol, atol=atol * slack * scale,
                                   msg=lambda m: f"{name}: {m}")


# the forms: (shape, symmetric)
FORMS = [("simclr", True), ("pairwise", True), ("pairwise", False)]


# ----------------------------------------------------------------------------------------- reference itself
@pytest.mark.parametrize("shape,symmetric", FORMS)
@pytest.mark.parametrize("normalize", [True, False])
def test_naive_matches_formula(shape, symmetric, normalize):
    z1, z2 = make_inputs(9, 5, seed=1, dtype=torch.float64)
    got = infonce(z1, z2, 0.3, shape=shape, symmetric=symmetric, normalize=normalize, backend="naive")
    torch.testing.assert_close(got, formula_loss(z1, z2, 0.3, shape, symmetric, normalize), rtol=1e-12, atol=1e-12)


def test_pairwise_asymmetric_is_the_infonce_bound():
    """log N - loss is the InfoNCE lower bound on the critic scores s = z1 z2^T / T (mi_toolkit.bounds)."""
    from mi_toolkit.bounds import infonce_lower_bound

    z1, z2 = make_inputs(12, 4, seed=2, dtype=torch.float64)
    loss = infonce(z1, z2, 0.5, shape="pairwise", symmetric=False, normalize=False, backend="chunked")
    bound = infonce_lower_bound(z1 @ z2.T / 0.5)
    torch.testing.assert_close(math.log(12) - loss, bound, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------ chunked == naive
@fast(100)
@given(n=st.integers(2, 70), d=st.integers(1, 70), seed=st.integers(0, 2**16),
       temperature=st.floats(0.05, 1.0), form=st.sampled_from(FORMS), normalize=st.booleans(),
       block_rows=st.integers(3, 40), block_cols=st.integers(3, 40))
def test_chunked_matches_naive(n, d, seed, temperature, form, normalize, block_rows, block_cols):
    shape, symmetric = form
    z1, z2 = make_inputs(n, d, seed, scale=1.0 if normalize else d ** -0.5)
    options = dict(shape=shape, symmetric=symmetric, normalize=normalize)
    got = loss_and_grads(z1, z2, temperature, backend="chunked", block_size=(block_rows, block_cols), **options)
    assert_matches(got, loss_and_grads(z1, z2, temperature, backend="naive", **options))


@pytest.mark.parametrize("shape,symmetric", FORMS)
def test_chunked_one_by_one_tiles(shape, symmetric):
    """1 x 1 tiles: some tiles hold only a row's excluded column (nothing kept yet), the online merge must cope."""
    z1, z2 = make_inputs(5, 4, seed=15)
    options = dict(shape=shape, symmetric=symmetric)
    assert_matches(loss_and_grads(z1, z2, 0.1, backend="chunked", block_size=1, **options),
                   loss_and_grads(z1, z2, 0.1, backend="naive", **options))


@pytest.mark.parametrize("shape,symmetric", FORMS)
def test_chunked_default_blocks_span_several_tiles(shape, symmetric):
    """More rows than one default tile, so the online merge across column blocks is exercised at default size."""
    n = chunked.DEFAULT_BLOCK_COLS // 2 + 37
    z1, z2 = make_inputs(n, 3, seed=3)
    options = dict(shape=shape, symmetric=symmetric)
    assert_matches(loss_and_grads(z1, z2, 0.1, backend="chunked", **options),
                   loss_and_grads(z1, z2, 0.1, backend="naive", **options))


@pytest.mark.parametrize("shape,symmetric", FORMS)
@pytest.mark.parametrize("normalize", [True, False])
def test_chunked_gradcheck_float64(shape, symmetric, normalize):
    z1, z2 = make_inputs(5, 3, seed=4, dtype=torch.float64)
    z1.requires_grad_()
    z2.requires_grad_()
    t = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    def loss(a, b, temperature):
        return infonce(a, b, temperature, shape=shape, symmetric=symmetric, normalize=normalize,
                       backend="chunked", block_size=(2, 3))

    assert torch.autograd.gradcheck(loss, (z1, z2, t))


def test_temperature_gradient_equals_naive_and_finite_differences():
    z1, z2 = make_inputs(11, 6, seed=5, dtype=torch.float64)
    _, _, _, grad_chunked = loss_and_grads(z1, z2, 0.2, backend="chunked", block_size=4)
    _, _, _, grad_naive = loss_and_grads(z1, z2, 0.2, backend="naive")
    eps = 1e-6
    above, below = (infonce(z1, z2, 0.2 + step, backend="chunked") for step in (eps, -eps))
    numeric = (above - below) / (2 * eps)
    torch.testing.assert_close(grad_chunked, grad_naive, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad_chunked, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", ["chunked", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("shape,symmetric", FORMS)
def test_huge_logits_do_not_overflow(backend, shape, symmetric):
    """Raw vectors of norm ~1e3 at T = 1: logits ~1e6, far past exp's range; LSE keeps everything finite."""
    n, d = 19, 17
    z1, z2 = make_inputs(n, d, seed=6, dtype=torch.float64)
    z1 = 1e3 * z1 / z1.norm(dim=1, keepdim=True)
    z2 = 1e3 * z2 / z2.norm(dim=1, keepdim=True)
    options = dict(shape=shape, symmetric=symmetric, normalize=False)
    reference = loss_and_grads(z1, z2, 1.0, backend="naive", **options)
    assert torch.isfinite(reference[0]) and reference[0] > 1e3  # genuinely huge
    got = loss_and_grads(z1.float(), z2.float(), 1.0, backend=backend, block_size=16, **options)
    assert all(bool(torch.isfinite(t).all()) for t in got)
    # float32 logits of size 1e6 carry absolute rounding ~0.1: compare relative to the logit scale
    assert_matches(got, reference, rtol=1e-5, atol=1e-5)
    if backend == "chunked":  # in float64 the tiled path matches tightly
        assert_matches(loss_and_grads(z1, z2, 1.0, backend=backend, block_size=4, **options), reference,
                       rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_chunked_half_precision_inputs(dtype):
    """Half inputs give a float32 loss and half gradients, equal to naive float32 up to the half rounding of
    the normalised, temperature-scaled rows."""
    z1, z2 = make_inputs(33, 16, seed=7, dtype=dtype)
    got = loss_and_grads(z1, z2, 0.1, backend="chunked", block_size=8)
    assert got[0].dtype == torch.float32 and got[1].dtype == dtype
    want = loss_and_grads(z1.float(), z2.float(), 0.1, backend="naive")
    tol = 4 * torch.finfo(dtype).eps
    torch.testing.assert_close(got[0], want[0], rtol=tol, atol=tol)
    for g, w in zip(got[1:3], want[1:3]):
        torch.testing.assert_close(g.float(), w, rtol=10 * tol, atol=tol * float(w.abs().max()))


def test_chunked_saves_no_quadratic_tensor():
    """What autograd keeps for backward is O(N d): no tensor with anywhere near (2N)^2 entries."""
    n, d = 300, 8
    z1, z2 = make_inputs(n, d, seed=8)

    def largest_saved(backend):
        sizes = []
        a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            infonce(a, b, 0.1, backend=backend, block_size=64)
        return max(sizes)

    assert largest_saved("naive") >= (2 * n) ** 2
    assert largest_saved("chunked") <= 2 * n * (d + 1)


# ------------------------------------------------------------------------------- triton (interpreter) == naive
@needs_triton
@fast(16)
@given(n=st.integers(2, 40), d=st.integers(1, 40), seed=st.integers(0, 2**16), temperature=st.floats(0.05, 1.0),
       form=st.sampled_from(FORMS), normalize=st.booleans(), blocks=st.sampled_from([(16, 16), (16, 32), (32, 16)]))
def test_triton_matches_naive(n, d, seed, temperature, form, normalize, blocks):
    shape, symmetric = form
    z1, z2 = make_inputs(n, d, seed, scale=1.0 if normalize else d ** -0.5)
    options = dict(shape=shape, symmetric=symmetric, normalize=normalize)
    got = loss_and_grads(z1, z2, temperature, backend="triton", block_size=blocks, **options)
    assert_matches(got, loss_and_grads(z1, z2, temperature, backend="naive", **options))


@needs_triton
@pytest.mark.parametrize("shape,symmetric", [("simclr", True), ("pairwise", True)])
def test_triton_float16(shape, symmetric):
    z1, z2 = make_inputs(21, 24, seed=9, dtype=torch.float16)
    got = loss_and_grads(z1, z2, 0.2, backend="triton", shape=shape, symmetric=symmetric)
    want = loss_and_grads(z1.float(), z2.float(), 0.2, backend="naive", shape=shape, symmetric=symmetric)
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.float16
    torch.testing.assert_close(got[0], want[0], rtol=1e-3, atol=1e-3)
    for g, w in zip(got[1:3], want[1:3]):
        torch.testing.assert_close(g.float(), w, rtol=2e-2, atol=2e-2 * float(w.abs().max()))


@needs_triton
def test_triton_rejects_what_it_cannot_run(monkeypatch):
    z1, z2 = make_inputs(4, 3, seed=10, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="bfloat16"):  # numpy, hence the interpreter, has no bfloat16
        infonce(z1, z2, backend="triton")
    with pytest.raises(ValueError, match="block_rows"):
        infonce(z1.float(), z2.float(), backend="triton", block_size=(24, 16))
    big = torch.randn(4, triton_kernels.MAX_DIM + 1)
    with pytest.raises(ValueError, match="chunked"):
        infonce(big, big + 1, backend="triton")
    monkeypatch.setattr(triton_kernels, "INTERPRETED", False)
    with pytest.raises(ValueError, match="CUDA"):
        infonce(z1.float(), z2.float(), backend="triton")


# ------------------------------------------------------------------------------------------ backend choice
def test_auto_is_chunked_on_cpu():
    assert kernels.resolve_backend("auto", torch.zeros(2, 2)) == "chunked"


def test_missing_triton_gives_a_clear_error_and_auto_falls_back(monkeypatch):
    monkeypatch.setattr(kernels, "triton_module", lambda: ImportError("No module named 'triton'"))
    z1, z2 = make_inputs(6, 4, seed=11)
    with pytest.raises(RuntimeError, match="triton"):
        infonce(z1, z2, backend="triton")
    assert "triton" not in kernels.available_backends()
    torch.testing.assert_close(infonce(z1, z2, backend="auto"), infonce(z1, z2, backend="naive"))


# ---------------------------------------------------------------------------------------- distributed form
def split_sizes(n, ranks):
    base = [n // ranks] * ranks
    base[-1] += n - sum(base)  # uneven last rank
    return base


@pytest.mark.parametrize("backend", ["naive", "chunked", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("shape,symmetric", FORMS)
def test_local_shares_add_up_to_the_full_loss(backend, shape, symmetric):
    n, d, ranks = 23, 5, 3
    z1, z2 = make_inputs(n, d, seed=12)
    options = dict(shape=shape, symmetric=symmetric)
    want = loss_and_grads(z1, z2, 0.2, backend="naive", **options)

    a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    t = torch.tensor(0.2, requires_grad=True)
    total, offset = 0.0, 0
    for size in split_sizes(n, ranks):
        # this rank's rows are slices of the same leaves, so gradients add up as all_gather's backward would
        share = infonce_local(a[offset:offset + size], b[offset:offset + size], a, b, offset, t,
                              backend=backend, block_size=16, **options)
        total = total + share
        offset += size
    total.backward()
    assert_matches((total.detach(), a.grad, b.grad, t.grad), want)


def test_local_mean_reduction_is_the_mean_over_local_rows():
    z1, z2 = make_inputs(10, 4, seed=13)
    share = infonce_local(z1[2:6], z2[2:6], z1, z2, 2, 0.3, backend="chunked")
    mean = infonce_local(z1[2:6], z2[2:6], z1, z2, 2, 0.3, backend="chunked", reduction="mean")
    torch.testing.assert_close(mean, share * (2 * 10) / (2 * 4))


def test_local_rows_must_sit_at_the_offset():
    z1, z2 = make_inputs(10, 4, seed=14)
    with pytest.raises(ValueError, match="row_offset"):
        infonce_local(z1[2:6], z2[2:6], z1, z2, 3)
    with pytest.raises(ValueError, match="row_offset"):
        infonce_local(z1[2:6], z2[2:6], z1, z2, 7)
    with pytest.raises(ValueError, match="reduction"):
        infonce_local(z1[2:6], z2[2:6], z1, z2, 2, reduction="sum")


# ------------------------------------------------------------------------------------------------ bad input
GOOD = torch.randn(4, 3)


@pytest.mark.parametrize("args,kwargs,error,match", [
    ((torch.randn(1, 3), torch.randn(1, 3)), {}, ValueError, "no negatives"),
    ((GOOD, torch.randn(5, 3)), {}, ValueError, "same shape"),
    ((GOOD, torch.randn(4, 2)), {}, ValueError, "same shape"),
    ((torch.randn(4), torch.randn(4)), {}, ValueError, "2-D"),
    ((torch.randn(2, 4, 3), torch.randn(2, 4, 3)), {}, ValueError, "2-D"),
    ((GOOD.numpy(), GOOD), {}, TypeError, "z1 must be a torch.Tensor"),
    ((torch.ones(4, 3, dtype=torch.int64), GOOD), {}, TypeError, "floating"),
    ((GOOD, GOOD.double()), {}, TypeError, "dtype"),
    ((GOOD, torch.full((4, 3), math.nan)), {}, ValueError, "z2 contains 12 NaN/inf"),
    ((torch.full((4, 3), math.inf), GOOD), {}, ValueError, "z1 contains"),
    ((GOOD, GOOD), {"temperature": 0.0}, ValueError, "temperature"),
    ((GOOD, GOOD), {"temperature": -1.0}, ValueError, "temperature"),
    ((GOOD, GOOD), {"temperature": math.inf}, ValueError, "temperature"),
    ((GOOD, GOOD), {"temperature": math.nan}, ValueError, "temperature"),
    ((GOOD, GOOD), {"temperature": torch.tensor([0.1, 0.2])}, TypeError, "temperature"),
    ((GOOD, GOOD), {"temperature": "0.1"}, TypeError, "temperature"),
    ((GOOD, GOOD), {"temperature": 0.1, "learn_temperature": True}, ValueError, "learn_temperature"),
    ((GOOD, GOOD), {"backend": "cuda"}, ValueError, "backend must be one of 'auto', 'naive', 'chunked', 'triton'"),
    ((GOOD, GOOD), {"shape": "clip"}, ValueError, "shape must be one of 'simclr', 'pairwise'"),
    ((GOOD, GOOD), {"symmetric": False}, ValueError, "pairwise"),
    ((GOOD, GOOD), {"normalize": 1}, TypeError, "normalize"),
    ((GOOD, GOOD), {"block_size": 0}, ValueError, "block_size"),
    ((GOOD, GOOD), {"block_size": (4, 4, 4)}, ValueError, "block_size"),
])
def test_bad_input_is_rejected_by_name(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        infonce(*args, **kwargs)
