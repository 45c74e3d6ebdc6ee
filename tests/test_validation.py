"""The shared argument checks and the value-check switch (NaN/inf scans cost a device sync, so they can be off)."""
import math

import numpy as np
import pytest
import torch

import mi_toolkit
from mi_toolkit import bounds as B
from mi_toolkit.kernels import infonce, infonce_local
from mi_toolkit.cli_support import float_list, name_list
from mi_toolkit.validation import (NumberTypeError, check_int, check_number, check_pair, check_rows, value_checks,
                                   value_checks_enabled)


@pytest.fixture
def nan_scores():
    scores = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    scores[2, 3] = float("nan")
    return scores


@pytest.fixture
def isfinite_calls(monkeypatch):
    """Counts the NaN/inf scans (every one goes through torch.isfinite)."""
    calls = []
    original = torch.isfinite

    def spy(t):
        calls.append(tuple(t.shape))
        return original(t)

    monkeypatch.setattr(torch, "isfinite", spy)
    return calls


def test_value_checks_default_on_and_restored_by_the_context_manager():
    assert mi_toolkit.value_checks is value_checks and value_checks_enabled()
    with value_checks(False):
        assert not value_checks_enabled()
        with value_checks(True):
            assert value_checks_enabled()
        assert not value_checks_enabled()
    assert value_checks_enabled()
    try:
        value_checks(False)          # without `with`: off from here on
        assert not value_checks_enabled()
    finally:
        value_checks(True)
    with pytest.raises(TypeError, match="enabled"):
        value_checks("off")
    assert value_checks_enabled()


def test_nan_scores_raise_with_value_checks_and_pass_unscanned_without(nan_scores, isfinite_calls):
    with pytest.raises(ValueError, match="scores contains 1 NaN/inf"):
        B.infonce_lower_bound(nan_scores)
    assert isfinite_calls
    isfinite_calls.clear()
    with value_checks(False):
        for bound in (B.infonce_lower_bound, B.nwj_lower_bound, B.dv_lower_bound, B.js_lower_bound,
                      B.smile_lower_bound, B.club_upper_bound, B.l1out_upper_bound):
            bound(nan_scores)       # no error: the NaN flows into the value
        assert torch.isnan(B.dv_lower_bound(nan_scores))
        B.gaussian_kl_diag(nan_scores, nan_scores, nan_scores, nan_scores)
        B.ba_lower_bound(nan_scores[0], float("nan"))
    assert isfinite_calls == []
    with pytest.raises(ValueError, match="mu1 contains"):
        B.gaussian_kl_diag(nan_scores, nan_scores, nan_scores, nan_scores)


def test_kernels_skip_the_scan_and_the_temperature_read_without_value_checks(isfinite_calls):
    z1 = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    z2 = z1.clone()
    z2[0, 0] = float("nan")
    for backend in ("naive", "chunked"):
        with pytest.raises(ValueError, match="z2 contains 1 NaN/inf"):
            infonce(z1, z2, backend=backend)
        isfinite_calls.clear()
        with value_checks(False):
            assert torch.isnan(infonce(z1, z2, backend=backend))
        assert isfinite_calls == []
    # a tensor temperature's value is only read (a sync on a GPU) while value checks are on
    bad_temperature = torch.tensor(-0.5)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        infonce(z1, z1, temperature=bad_temperature)
    with value_checks(False):
        infonce(z1, z1, temperature=bad_temperature)
    # shape, dtype and option checks read no values: they stay on
    with value_checks(False):
        with pytest.raises(ValueError, match="same shape"):
            infonce(z1, z1[:4])
        with pytest.raises(TypeError, match="dtype"):
            infonce(z1, z1.double())
        with pytest.raises(ValueError, match="backend must be one of"):
            infonce(z1, z1, backend="gpu")


def test_local_row_comparison_is_a_value_check():
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(2))
    kwargs = dict(shape="pairwise", symmetric=False, backend="naive")
    with pytest.raises(ValueError, match="row_offset"):
        infonce_local(z[:4], z[:4], z, z, 2, **kwargs)
    with value_checks(False):
        infonce_local(z[:4], z[:4], z, z, 2, **kwargs)


def test_estimators_skip_the_sample_scan_without_value_checks():
    est = mi_toolkit.estimator("infonce", 2, 2, hidden=8)
    x = torch.zeros(4, 2)
    x[0, 0] = float("inf")
    with pytest.raises(ValueError, match="x contains 1 NaN/inf"):
        est(x, torch.zeros(4, 2))
    with value_checks(False):
        est(x, torch.zeros(4, 2))


def test_number_checks_name_the_argument():
    assert check_number(3, "lr", positive=True) == 3.0 and check_number(np.float32(0.5), "lr") == 0.5
    assert check_number(None, "clip", allow_none=True) is None
    with pytest.raises(ValueError, match="lr must be > 0, got 0"):
        check_number(0, "lr", positive=True)
    with pytest.raises(ValueError, match="mi must be >= 0"):
        check_number(-1.0, "mi", nonnegative=True)
    with pytest.raises(ValueError, match="lambda_a must be finite"):
        check_number(math.nan, "lambda_a")
    for bad in ("0.1", True, None):
        with pytest.raises(NumberTypeError, match="lr must be a real number") as info:
            check_number(bad, "lr")
        assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert check_int(np.int64(3), "dim") == 3
    for bad in (0, 2.5, "3", True):
        with pytest.raises(ValueError, match="dim must be an integer >= 1"):
            check_int(bad, "dim")


def test_tensor_checks_name_the_argument():
    a = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"a has 1 row, but the batch size must be at least 2 rows \(N >= 2\)"):
        check_rows(a[:1], "a", 2)
    with pytest.raises(ValueError, match=r"a must have shape \[n, d\] \(2 dims\), got 1 dims"):
        check_pair(a[0], a[0], ("a", "b"))
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        check_pair(a, a[:2], ("a", "b"))
    check_pair(a, a.double(), ("a", "b"), same_kind=False)
    with pytest.raises(TypeError, match="a and b must share a dtype"):
        check_pair(a, a.double(), ("a", "b"))


def test_list_parsers():
    """The one comma-list reader (``settings.split_items``) behind every list flag of both commands."""
    import argparse
    parse_floats, parse_names = float_list(), name_list()
    assert parse_floats("2, 4.5,6,") == [2.0, 4.5, 6.0]        # one trailing comma is harmless
    assert parse_names(" infonce, smile,") == ["infonce", "smile"]
    for bad in ("0,,1", ",", "inf", ""):                           # "0,,1" is a typo, never [0, 1]
        with pytest.raises(argparse.ArgumentTypeError):
            parse_floats(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="must be a finite number, got 'four'"):
        parse_floats("2,four")
