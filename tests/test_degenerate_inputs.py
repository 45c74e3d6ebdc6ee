"""Nothing lost, nothing silent: inputs that used to give a traceback, a confident wrong number, a silently ignored
argument or a message blaming the wrong thing.  One test per kind of problem, one row per case; each kind is fixed
by one check every estimator path goes through (see the comments)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import mi_toolkit
from mi_toolkit.classical import ksg_mi
from mi_toolkit.errors import ArgumentError, UserError
from synthetic.cli import main as cli_main


def _gaussians(n=400, rho=0.8, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, 2))
    b = rho * a + math.sqrt(1 - rho ** 2) * rng.standard_normal((n, 2))
    return a.astype(np.float32), b.astype(np.float32)


X, Y = _gaussians()
RAGGED = [[1., 2.], [3.]] * 50
DUP_X, DUP_Y = np.repeat(X[:20], 20, axis=0), np.repeat(Y[:20], 20, axis=0)


def _quiet(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call()


def _cli(tmp_path, capsys, argv, files):
    for name, content in files.items():
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content)
        else:
            np.save(path, content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli_main([a.replace("{W}", str(tmp_path)) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# --------------------------------------------------------------------- 1. shapes: validation.as_numeric_array
SHAPE_CASES = [
    ("ksg-ragged-x", lambda: mi_toolkit.estimate(RAGGED, Y[:100].tolist(), "ksg"), r"^x must be a rectangular"),
    ("smile-ragged-y", lambda: mi_toolkit.estimate(X[:100].tolist(), RAGGED, "smile", steps=1),
     r"^y must be a rectangular"),
    ("cmi-ragged-z", lambda: mi_toolkit.estimate(X[:100], Y[:100], "ksg", z=RAGGED), r"^z must be a rectangular"),
    ("plugin-ragged-x", lambda: mi_toolkit.estimate(RAGGED, Y[:100].tolist(), "plugin"), r"^x must be a rectangular"),
    ("ksg_mi-ragged-y", lambda: ksg_mi(X[:100], RAGGED), r"^y must be a rectangular"),
]


@pytest.mark.parametrize("call, match", [c[1:] for c in SHAPE_CASES], ids=[c[0] for c in SHAPE_CASES])
def test_bad_shapes_are_argument_errors_naming_the_variable(call, match):
    with pytest.raises(ArgumentError, match=match) as info:
        call()
    assert "row 0 has 2 entries but row 1 has 1 entry" in str(info.value)
    assert "inhomogeneous" not in str(info.value)


# --------------------------------------------------------------------- 2. degenerate data: validation.degeneracy
COLUMN_Y = np.c_[X[:, 0], Y[:, 1]]
DEGENERATE_CASES = [
    # (id, call, failed, what the warnings must say)
    ("ksg-x-equals-y", lambda: mi_toolkit.estimate(X, X, "ksg"), True, "x and y are identical.*infinite"),
    ("gaussian-x-equals-y", lambda: mi_toolkit.estimate(X, X, "gaussian"), True, "identical.*infinite"),
    ("smile-x-equals-y", lambda: mi_toolkit.estimate(X, X, "smile", steps=2, batch_size=32), True,
     "identical.*infinite"),
    ("ksg-column-equal", lambda: mi_toolkit.estimate(X, COLUMN_Y, "ksg"), True,
     "column 0 of x is identical to column 0 of y.*infinite"),
    ("cmi-x-equals-y", lambda: mi_toolkit.estimate(X, X, "ksg", z=Y[:, :1]), True, r"I\(X;Y\|Z\) is infinite"),
    ("ksg-duplicate-rows", lambda: mi_toolkit.estimate(DUP_X, DUP_Y, "ksg"), True,
     "100% of the .* rows are exact duplicates.*k-NN estimators such as ksg are invalid with duplicate rows"),
    ("gaussian-duplicate-rows", lambda: mi_toolkit.estimate(DUP_X, DUP_Y, "gaussian"), False,
     "exact duplicates.*standard error .* too small"),
    ("infonce-duplicate-rows", lambda: mi_toolkit.estimate(DUP_X, DUP_Y, "infonce", steps=2, batch_size=32), False,
     "exact duplicates.*held-out estimate is not independent"),
]


@pytest.mark.parametrize("call, failed, match", [c[1:] for c in DEGENERATE_CASES],
                         ids=[c[0] for c in DEGENERATE_CASES])
def test_degenerate_data_is_detected_and_named(call, failed, match):
    with pytest.warns(mi_toolkit.MIEstimateWarning, match=match):
        result = call()
    assert result.failed is failed
    if failed:
        assert math.isnan(result.mi) and "lr" not in result.failure


def test_degenerate_data_from_the_cli_is_named(tmp_path, capsys):
    code, out = _cli(tmp_path, capsys, ["estimate", "--x", "{W}/x.npy", "--y", "{W}/x.npy", "--estimator", "ksg"],
                     {"x.npy": X})
    assert code == 0 and "FAILED" in out and "identical" in out and "infinite" in out and "0.0000" not in out
    with pytest.raises(mi_toolkit.EstimationFailed, match="identical"):
        mi_toolkit.estimate(X, X, "ksg", on_failure="raise")


# --------------------------------------------------------------------- 3. the float32 cast: check_float32_range,
#                                                                          as_numeric_array (complex)
BIG = X.astype(np.float64) * 1e300
CAST_CASES = [
    ("ksg-float64-overflow", lambda: mi_toolkit.estimate(BIG, Y, "ksg"), ArgumentError,
     r"x holds values up to 3\.9e\+300 .*float32's range.*Rescale x"),
    ("smile-float64-tensor-overflow", lambda: mi_toolkit.estimate(X, torch.from_numpy(BIG), "smile", steps=1),
     ArgumentError, r"y holds values up to .*float32's range"),
    ("cmi-z-overflow", lambda: mi_toolkit.estimate(X, Y, "ksg", z=BIG), ArgumentError,
     "z holds values up to"),
    ("ksg-complex", lambda: mi_toolkit.estimate(X.astype(complex), Y, "ksg"), TypeError, "x holds complex numbers"),
    ("smile-complex-tensor", lambda: mi_toolkit.estimate(X, torch.from_numpy(Y.astype(np.complex64)), "smile"),
     TypeError, "y is a complex tensor"),
    ("plugin-complex", lambda: mi_toolkit.estimate(np.ones(10, complex), np.ones(10), "plugin"), TypeError,
     "x holds complex numbers"),
]


@pytest.mark.parametrize("call, error, match", [c[1:] for c in CAST_CASES], ids=[c[0] for c in CAST_CASES])
def test_values_the_float32_cast_destroys_are_refused(call, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # no ComplexWarning / silent cast on the way
        with pytest.raises(error, match=match) as info:
            call()
    assert "NaN/inf" not in str(info.value) and isinstance(info.value, UserError)


# --------------------------------------------------------------------- 4. ignored arguments: check_arguments_used
UNUSED_CASES = [
    ("ksg-seeds", lambda: mi_toolkit.estimate(X, Y, "ksg", seeds=3), r"seeds=3: 'ksg' has no training"),
    ("gaussian-seeds", lambda: mi_toolkit.estimate(X, Y, "gaussian", seeds=2), r"seeds=2: 'gaussian'"),
    ("ksg-steps", lambda: mi_toolkit.estimate(X, Y, "ksg", steps=5), r"steps=5 is a training setting, but 'ksg'"),
    ("ksg-batch-size", lambda: mi_toolkit.estimate(X, Y, "ksg", batch_size=32), r"batch_size=32 .* 'ksg'"),
    ("gaussian-lr", lambda: mi_toolkit.estimate(X, Y, "gaussian", lr=1e-3), r"lr=0\.001 .* 'gaussian'"),
    ("plugin-steps", lambda: mi_toolkit.estimate(X > 0, Y > 0, "plugin", steps=10), r"steps=10 .* 'plugin'"),
    ("cmi-heldout", lambda: mi_toolkit.estimate(X, Y, "ksg", z=Y[:, :1], heldout_fraction=0.5),
     r"heldout_fraction=0\.5 .* 'ksg'"),
    ("mixed-optimizer", lambda: mi_toolkit.estimate(X[:, 0] > 0, Y, "ksg", discrete_x=True, optimizer="sgd"),
     r"optimizer='sgd' .* 'ksg'"),
    ("smile-patience-without-early-stopping",
     lambda: mi_toolkit.estimate(X, Y, "smile", early_stopping=False, patience=2), r"patience=2 sets early stopping"),
    ("smile-eval-every-without-heldout",
     lambda: mi_toolkit.estimate(X, Y, "smile", heldout_fraction=0.0, eval_every=10), r"eval_every=10 sets early"),
]


@pytest.mark.parametrize("call, match", [c[1:] for c in UNUSED_CASES], ids=[c[0] for c in UNUSED_CASES])
def test_arguments_a_path_would_ignore_are_refused(call, match):
    with pytest.raises(ArgumentError, match=match):
        call()


def test_ignored_cli_flags_are_refused_by_flag(tmp_path, capsys):
    for flags, match in ((["--seeds", "3"], "--seeds 3: 'ksg'"), (["--steps", "10"], "--steps 10 is a training"),
                         (["--lr", "0.01"], "--lr 0.01 is a training")):
        code, out = _cli(tmp_path, capsys, ["estimate", "--x", "{W}/x.npy", "--y", "{W}/y.npy", "--estimator", "ksg",
                                            *flags], {"x.npy": X, "y.npy": Y})
        assert code == 2 and match in out and "Traceback" not in out, out


# --------------------------------------------------------------------- 5. the right culprit in the message
BLAME_CASES = [
    ("ksg-5-rows", lambda: mi_toolkit.estimate(X[:5], Y[:5], "ksg"), r"ksg needs at least 8 rows .* x has 5 rows"),
    ("gaussian-7-rows", lambda: mi_toolkit.estimate(X[:7], Y[:7], "gaussian"),
     r"gaussian needs at least 10 rows .* x has 7 rows"),
    ("cmi-6-rows", lambda: mi_toolkit.estimate(X[:6], Y[:6], "ksg", z=X[:6, :1] + Y[:6, :1]),
     r"ksg-cmi needs at least 8 rows .* x has 6 rows"),
    ("smile-conditional", lambda: mi_toolkit.estimate(X, Y, "smile", conditional="mixture"),
     r"conditional= applies to ba, club, club_sample, doe, l1out only; smile is a critic bound"),
    ("infonce-clip", lambda: mi_toolkit.estimate(X, Y, "infonce", clip=5.0), r"clip= applies to smile only"),
    ("club-critic", lambda: mi_toolkit.estimate(X, Y, "club", critic="bilinear"),
     r"critic= applies to .*infonce.*; club is a conditional"),
]


@pytest.mark.parametrize("call, match", [c[1:] for c in BLAME_CASES], ids=[c[0] for c in BLAME_CASES])
def test_messages_name_the_users_input_not_an_internal(call, match):
    with pytest.raises((ArgumentError, TypeError), match=match) as info:
        call()
    text = str(info.value)
    assert "got 2" not in text and "Critic" not in text and "__init__" not in text


CSV_CASES = [
    ("header-row", "a,b\n" + "\n".join(f"{u},{v}" for u, v in X), r"line 1 \(a, b\) is a header row.*tail -n \+2"),
    ("bad-cell", "\n".join(f"{u},{v}" for u, v in X[:5]) + "\n1,foo\n", "line 6, column 2 holds 'foo', not a number"),
]


@pytest.mark.parametrize("text, match", [c[1:] for c in CSV_CASES], ids=[c[0] for c in CSV_CASES])
def test_a_csv_with_non_numeric_cells_is_named_not_called_corrupt(tmp_path, capsys, text, match):
    import re
    code, out = _cli(tmp_path, capsys, ["estimate", "--x", "{W}/x.csv", "--y", "{W}/y.npy", "--estimator", "ksg"],
                     {"x.csv": text, "y.npy": Y[:len(text.splitlines())]})
    assert code == 2 and re.search(match, out) and "corrupt" not in out, out


# --------------------------------------------------------------------- 6. small data with the defaults
SMALL_CASES = [
    # (id, n, kwargs, expected batch size (None: refused), a note expected)
    ("400-rows-default", 400, {}, 40, True),
    ("200-rows-default", 200, {}, 20, True),
    ("400-rows-no-early-stopping", 400, {"early_stopping": False}, 80, True),
    ("640-rows-default", 640, {}, 128, False),
    ("400-rows-explicit-128", 400, {"batch_size": 128}, None, False),
    ("10-rows-default", 10, {}, None, False),
]


@pytest.mark.parametrize("n, kwargs, batch, note", [c[1:] for c in SMALL_CASES], ids=[c[0] for c in SMALL_CASES])
def test_the_default_batch_size_adapts_to_small_data_and_a_given_one_stays_strict(n, kwargs, batch, note):
    x, y = _gaussians(max(n, 10))
    x, y = x[:n], y[:n]
    if batch is None:
        with pytest.raises(ArgumentError, match="batch_size=128 needs at least 128 training"):
            mi_toolkit.estimate(x, y, "infonce", steps=2, **kwargs)
        return
    result = _quiet(lambda: mi_toolkit.estimate(x, y, "infonce", steps=2, **kwargs))
    assert result.batch_size == batch and math.isfinite(result.train_mi)
    assert any("batch_size was not given" in w for w in result.warnings) is note


def test_the_default_batch_size_is_unchanged_where_it_fits():
    x, y = _gaussians(640)
    a = _quiet(lambda: mi_toolkit.estimate(x, y, "infonce", steps=30))
    b = _quiet(lambda: mi_toolkit.estimate(x, y, "infonce", steps=30, batch_size=128))
    assert a.mi == b.mi and a.train_mi == b.train_mi and a.batch_size == 128


def test_the_cli_adapts_the_default_batch_size_too(tmp_path, capsys):
    code, out = _cli(tmp_path, capsys, ["estimate", "--x", "{W}/x.npy", "--y", "{W}/y.npy", "--estimator", "infonce",
                                        "--steps", "2", "--no-progress"], {"x.npy": X, "y.npy": Y})
    assert code == 0 and "using batch_size=40" in out, out
    code, out = _cli(tmp_path, capsys, ["estimate", "--x", "{W}/x.npy", "--y", "{W}/y.npy", "--estimator", "infonce",
                                        "--steps", "2", "--batch-size", "128"], {"x.npy": X, "y.npy": Y})
    assert code == 2 and "--batch-size 128 needs at least 128" in out, out
