"""Argument checks shared by every layer (bounds, kernels, estimators, synthetic tasks, the SuperInfo objective):
every error names the argument and what was expected.

Scalars:  ``check_number``, ``check_int``, ``check_bool``, ``check_choice``.
Tensors:  ``check_matrix`` (one [n, d] batch), ``check_pair`` (two batches of one shape), ``check_samples`` (paired
          x, y; arrays accepted), ``check_scores`` (a square score matrix), ``check_vector``, ``check_features``,
          ``check_rows``, ``check_same_kind``, ``check_finite``.

Every error is a ``mi_toolkit.errors.ArgumentError`` (a ValueError) or ``ArgumentTypeError`` (a TypeError).

Value checks.  Shape, dtype and device checks only read metadata; a NaN/inf scan (``check_finite``) reads the
values, which on an accelerator costs a host-device synchronisation.  Like ``torch.distributions``'
``validate_args`` they can be switched off::

    with mi_toolkit.value_checks(False):   # or value_checks(False) for the rest of the program
        loss = step(batch)                 # no NaN/inf scans (and no other value-reading check) in here

``value_checks_enabled()`` tells the current state (enabled by default).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .errors import ArgumentError, ArgumentTypeError

__all__ = [
    "value_checks", "value_checks_enabled", "NumberTypeError",
    "check_number", "check_int", "check_bool", "check_choice",
    "as_float_tensor", "check_float_tensor", "check_matrix", "check_features", "check_rows", "check_pair",
    "check_has_values", "check_same_kind", "check_samples", "check_scores", "check_vector", "check_finite",
    "as_numeric_array", "check_float32_range", "identical_columns", "duplicate_row_fraction", "degeneracy",
]


# ------------------------------------------------------------------------------------------------- the switch
_value_checks = True


class value_checks:
    """Turn value-reading checks (NaN/inf scans) on or off: takes effect at once, and when used as a context
    manager the previous state comes back on exit.  ``value_checks(False)`` alone switches them off globally."""

    def __init__(self, enabled: bool):
        global _value_checks
        if not isinstance(enabled, bool):
            raise ArgumentTypeError(f"enabled must be True or False, got {enabled!r}")
        self.enabled = enabled
        self._previous = _value_checks
        _value_checks = enabled

    def __enter__(self) -> "value_checks":
        return self

    def __exit__(self, *exc) -> bool:
        global _value_checks
        _value_checks = self._previous
        return False

    def __repr__(self) -> str:
        return f"value_checks({self.enabled})"


def value_checks_enabled() -> bool:
    """Whether NaN/inf scans and other value-reading checks run (see ``value_checks``)."""
    return _value_checks


# ------------------------------------------------------------------------------------------------- scalars
class NumberTypeError(ArgumentTypeError, ArgumentError):
    """A number argument that is not a real number at all (a string, a bool, None, ...).  Both a TypeError and a
    ValueError, so callers catching either keep working."""


def check_number(value, name: str, *, positive: bool = False, nonnegative: bool = False,
                 allow_none: bool = False) -> float | None:
    """A finite real number (not a bool), > 0 with ``positive``, >= 0 with ``nonnegative``; returned as float."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise NumberTypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ArgumentError(f"{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ArgumentError(f"{name} must be > 0, got {value!r}")
    if nonnegative and value < 0:
        raise ArgumentError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def check_int(value, name: str, minimum: int = 1) -> int:
    """An integer (Python or numpy, not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(value, valid, name: str) -> str:
    """One of the strings in ``valid``."""
    if not isinstance(value, str) or value not in valid:
        raise ArgumentError(f"{name} must be one of {', '.join(repr(v) for v in valid)}; got {value!r}")
    return value


# ------------------------------------------------------------------------------------------------- tensors
def check_finite(t: torch.Tensor, name: str) -> torch.Tensor:
    """Reject NaN/inf entries; does nothing while value checks are off (it reads the values: a device sync)."""
    if _value_checks and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ArgumentError(f"{name} contains {bad} NaN/inf value(s); expected finite numbers")
    return t


def _ragged(value) -> str:
    """Where a nested list stops being rectangular: 'row 0 has 2 entries, row 50 has 1'."""
    try:
        lengths = [len(row) if hasattr(row, "__len__") else None for row in value]
    except TypeError:
        return "its rows have different lengths"
    for i, length in enumerate(lengths):
        if length != lengths[0]:
            def say(j, m):
                return f"row {j} is a scalar" if m is None else f"row {j} has {m} entr{'y' if m == 1 else 'ies'}"
            return f"{say(0, lengths[0])} but {say(i, length)}"
    return "its rows have different lengths or nesting depths"


def as_numeric_array(value, name: str, allow_bool: bool = True) -> np.ndarray:
    """``np.asarray(value)`` for a user's data, every problem an error naming ``name``: a ragged nested list (numpy's
    "inhomogeneous shape"), non-numbers, and complex values (every estimator here takes real data; a cast would
    silently keep only the real part).  Tensors are moved to the CPU first.  The one entry point every estimator
    path (``estimate()``, the classical, conditional and discrete estimators) turns data into arrays through."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise ArgumentTypeError(f"{name} is a complex tensor ({value.dtype}): MI estimators here take real "
                                    f"values; pass the real and imaginary parts as separate columns "
                                    f"(torch.view_as_real(t).flatten(1)) or the magnitudes")
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except ValueError as err:
        if "inhomogeneous" in str(err) or "sequence" in str(err):
            raise ArgumentError(f"{name} must be a rectangular [n, d] array of numbers (every row the same length), "
                                f"but {_ragged(value)}") from None
        raise ArgumentError(f"{name} cannot be read as an [n, d] array of numbers: {err}") from None
    if np.iscomplexobj(array):
        raise ArgumentTypeError(f"{name} holds complex numbers ({array.dtype}): MI estimators here take real values "
                                f"(a cast would silently drop the imaginary part); pass the real and imaginary parts "
                                f"as separate columns (np.column_stack([a.real, a.imag])) or the magnitudes")
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or (allow_bool and array.dtype == bool)):
        raise NumberTypeError(f"{name} must hold numbers, got an array of dtype {array.dtype}")
    return array


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32_range(value, name: str):
    """Finite values too large for float32 (what ``estimate()`` computes in) would become inf in the cast and then
    be reported as NaN/inf the user never had: refuse them with their largest magnitude.  A value check (skipped
    while value checks are off); wider-than-float32 arrays and tensors only."""
    if not _value_checks:
        return value
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point() or value.element_size() <= 4:
            return value
        finite = value[torch.isfinite(value)].abs()
        biggest = float(finite.max()) if finite.numel() else 0.0
    elif isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.dtype.itemsize > 4:
        finite = np.abs(value[np.isfinite(value)])
        biggest = float(finite.max()) if finite.size else 0.0
    else:
        return value
    if biggest > FLOAT32_MAX:
        raise ArgumentError(f"{name} holds values up to {biggest:.3g} in magnitude, beyond float32's range "
                            f"(+-{FLOAT32_MAX:.3g}), which the estimators compute in: the cast would turn them into "
                            f"inf. Rescale {name} first (e.g. {name} / {name}.std(0), or log-transform a heavy "
                            f"tail: MI is unchanged by an invertible map of each variable)")
    return value


def as_float_tensor(value, name: str, dtype=torch.float32) -> torch.Tensor:
    """Turn a tensor, numpy array or nested list into a floating tensor; reject anything else by name (ragged
    lists, complex values and float32 overflow too: ``as_numeric_array``, ``check_float32_range``)."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            as_numeric_array(value, name)        # raises: complex
        return value if value.is_floating_point() else value.to(dtype)
    if isinstance(value, (np.ndarray, list, tuple)):
        array = as_numeric_array(value, name, allow_bool=False)
        if dtype == torch.float32:
            check_float32_range(array, name)
        return torch.as_tensor(array, dtype=dtype)
    raise ArgumentTypeError(f"{name} must be a torch.Tensor or numpy array of shape [n, d], got {type(value).__name__}")


def check_float_tensor(t, name: str, shape: str = "[n, d]") -> torch.Tensor:
    """A floating torch.Tensor (``shape`` only words the error)."""
    if not isinstance(t, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ArgumentTypeError(f"{name} must be a floating tensor, got dtype {t.dtype}")
    return t


def check_features(t: torch.Tensor, expected: int, name: str, built_for: str | None = None) -> torch.Tensor:
    """``t.shape[1] == expected``; ``built_for`` names what was built for that width (e.g. "infonce estimator")."""
    if t.shape[1] != expected:
        if built_for is not None:
            raise ArgumentError(f"{name} has {t.shape[1]} features but the {built_for} was built for {expected}")
        raise ArgumentError(f"{name} must have {expected} features, got shape {tuple(t.shape)}")
    return t


def check_rows(t: torch.Tensor, name: str, minimum: int) -> torch.Tensor:
    """At least ``minimum`` rows; for contrastive bounds (minimum >= 2) the other rows are the negatives."""
    n = t.shape[0]
    if n < minimum:
        why = "; the other rows are the negatives, and with one pair there are no negatives" if minimum >= 2 else ""
        raise ArgumentError(f"{name} has {n} row{'' if n == 1 else 's'}, but the batch size must be at least {minimum} "
                         f"rows (N >= {minimum}){why}")
    return t


def check_matrix(t, name: str, *, features: int | None = None, built_for: str | None = None, min_rows: int = 0,
                 finite: bool = True) -> torch.Tensor:
    """A floating [n, d] tensor with d >= 1 (``features`` columns when given), at least ``min_rows`` rows and,
    with ``finite``, no NaN/inf (a value check)."""
    check_float_tensor(t, name)
    if t.dim() != 2:
        raise ArgumentError(f"{name} must have shape [n, d] (2 dims), got {t.dim()} dims with shape {tuple(t.shape)} "
                         "(reshape it to 2-D)")
    if t.shape[1] < 1:
        raise ArgumentError(f"{name} must have at least one feature column, got shape {tuple(t.shape)}")
    if features is not None:
        check_features(t, features, name, built_for)
    if min_rows:
        check_rows(t, name, min_rows)
    if finite:
        check_finite(t, name)
    return t


def check_same_kind(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    """One dtype and one device."""
    if a.dtype != b.dtype:
        raise ArgumentTypeError(f"{names[0]} and {names[1]} must share a dtype, got {a.dtype} and {b.dtype}")
    if a.device != b.device:
        raise ArgumentError(f"{names[0]} and {names[1]} must be on one device, got {a.device} and {b.device}")


def check_pair(a, b, names: tuple[str, str], *, min_rows: int = 1, same_kind: bool = True,
               finite: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Two [n, d] floating tensors of one shape (with ``same_kind``: one dtype and device too), n >= ``min_rows``,
    and with ``finite`` no NaN/inf."""
    check_matrix(a, names[0], finite=False)
    check_matrix(b, names[1], finite=False)
    if a.shape != b.shape:
        raise ArgumentError(f"{names[0]} and {names[1]} must have the same shape [n, d], got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if same_kind:
        check_same_kind(a, b, names)
    check_rows(a, names[0], min_rows)
    if finite:
        check_finite(a, names[0])
        check_finite(b, names[1])
    return a, b


def check_samples(x, y, *, min_batch: int = 2, x_name: str = "x", y_name: str = "y"):
    """A paired batch: tensors or arrays, both [n, d] floating with the same n >= min_batch and finite values."""
    x = as_float_tensor(x, x_name)
    y = as_float_tensor(y, y_name, dtype=x.dtype)
    check_matrix(x, x_name, finite=False)
    check_matrix(y, y_name, finite=False)
    if x.shape[0] != y.shape[0]:
        raise ArgumentError(f"{x_name} and {y_name} must have the same batch size, got {x.shape[0]} and {y.shape[0]}")
    check_rows(x, x_name, min_batch)
    check_finite(x, x_name)
    check_finite(y, y_name)
    return x, y


def check_scores(scores, name: str = "scores", min_batch: int = 2) -> torch.Tensor:
    """A score matrix S[i, j] = f(x_i, y_j): square, floating, finite, at least min_batch rows."""
    check_float_tensor(scores, name, "[N, N]")
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ArgumentError(f"{name} must be a square [N, N] matrix with positives on the diagonal, got shape {tuple(scores.shape)}")
    check_rows(scores, name, min_batch)
    return check_finite(scores, name)


def check_vector(v, name: str, n: int | None = None) -> torch.Tensor:
    """A 1-D floating tensor (of length ``n`` when given), finite."""
    if not isinstance(v, torch.Tensor) or not v.is_floating_point():
        raise ArgumentTypeError(f"{name} must be a floating torch.Tensor, got {type(v).__name__}")
    if v.dim() != 1:
        raise ArgumentError(f"{name} must be 1-D [N], got shape {tuple(v.shape)}")
    if n is not None and v.shape[0] != n:
        raise ArgumentError(f"{name} must have length {n}, got {v.shape[0]}")
    return check_finite(v, name)


# ------------------------------------------------------------------------------------------------- degenerate data
def identical_columns(x, y) -> list[tuple[int, int]]:
    """(i, j) for every non-constant column x[:, i] exactly equal to y[:, j] (columns matched by their bytes: one
    pass over the data, exact)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        return []
    dtype = np.result_type(x.dtype, y.dtype)
    by_bytes: dict = {}
    for j in range(y.shape[1]):
        by_bytes.setdefault(np.ascontiguousarray(y[:, j], dtype=dtype).tobytes(), []).append(j)
    pairs = []
    for i in range(x.shape[1]):
        column = np.ascontiguousarray(x[:, i], dtype=dtype)
        for j in by_bytes.get(column.tobytes(), ()):
            if np.ptp(column) > 0:          # a constant column is no relation
                pairs.append((i, j))
    return pairs


def duplicate_row_fraction(*arrays) -> float:
    """The share of rows whose whole joint row (the arrays side by side) occurs more than once (rows compared by
    their bytes, one sort)."""
    arrays = [np.asarray(a).reshape(len(a), -1) for a in arrays]
    n = arrays[0].shape[0]
    if n < 2:
        return 0.0
    dtype = np.result_type(*(a.dtype for a in arrays))
    joint = np.ascontiguousarray(np.concatenate([a.astype(dtype, copy=False) for a in arrays], axis=1))
    joint = joint + 0    # -0.0 -> 0.0, so equal values have equal bytes
    rows = joint.view(np.dtype((np.void, joint.dtype.itemsize * joint.shape[1]))).reshape(-1)
    _, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
    return float((counts[inverse.reshape(-1)] > 1).sum() / n)


DUPLICATE_LIMIT = 0.10   # k-NN estimators are refused above this share of duplicated (x, y) rows ...
DUPLICATE_WARN = 0.01    # ... and every estimator warns above this share


def degeneracy(x, y, name: str, *, knn: bool, z=None) -> tuple[str | None, list[str]]:
    """The one check of degenerate continuous data every continuous estimator path runs (``estimate()``'s neural
    and classical paths, ``estimate_cmi``): (why no estimate can be given, or None; warnings).

    * x equal to y, or a column of x equal to a column of y: y (a part of it) is a deterministic function of x, so
      for continuous variables I(X;Y) is infinite; any finite number only reflects the sample size.  Refused.
    * exact duplicate (x, y) rows: k-NN estimators (``knn``) are invalid with them (a copy is a neighbour at
      distance 0) and are refused above ``DUPLICATE_LIMIT``; otherwise a warning saying what they do to the
      estimate (``name`` words the messages).
    A value check: nothing is checked while value checks are off."""
    if not _value_checks:
        return None, []
    x, y = np.asarray(x), np.asarray(y)
    what = "I(X;Y|Z)" if z is not None else "I(X;Y)"
    pairs = identical_columns(x, y)
    if pairs:
        if x.shape == y.shape and len(pairs) >= x.shape[1] and np.array_equal(x, y):
            relation = "x and y are identical"
        else:
            i, j = pairs[0]
            more = f" (and {len(pairs) - 1} more such pair{'s' if len(pairs) > 2 else ''})" if len(pairs) > 1 else ""
            relation = f"column {i} of x is identical to column {j} of y{more}"
        return (f"{relation}: y is (partly) a deterministic function of x, so for continuous variables {what} is "
                f"infinite; {name} would report a finite number that only reflects the sample size. Remove the "
                f"copied column(s); for discrete data use name='plugin' (then the MI is H(X), finite)"), []
    arrays = (x, y) if z is None else (x, y, np.asarray(z))
    fraction = duplicate_row_fraction(*arrays)
    rows = "(x, y" + (", z" if z is not None else "") + ") rows"
    if knn and fraction > DUPLICATE_LIMIT:
        return (f"{fraction:.0%} of the {rows} are exact duplicates of another row: k-NN estimators such as {name} "
                f"are invalid with duplicate rows (a copy is a neighbour at distance 0, so the counts break and the "
                f"estimate is meaningless), and read literally, a relation observed only through repeated points "
                f"has infinite MI for continuous variables. Drop the duplicates (np.unique(np.c_[x, y], axis=0)); "
                f"for discrete data use name='plugin' or discrete_x / discrete_y"), []
    notes = []
    if fraction > DUPLICATE_WARN:
        if knn:
            effect = "k-NN counts treat the copies as neighbours at distance 0, which biases the estimate"
        elif name in ("gaussian", "gaussian-cmi"):
            effect = ("the standard error treats the copies as independent samples, so it is too small")
        else:
            effect = ("copies land in both the training and the held-out rows, so the held-out estimate is not "
                      "independent of training and the overfitting check cannot see memorisation")
        notes.append(f"{fraction:.1%} of the {rows} are exact duplicates of another row: {effect}; drop the "
                     f"duplicates if they are not genuine repeated draws")
    return None, notes


def check_has_values(a, name: str) -> None:
    """Refuses a meta tensor (a shape without values): no estimate can be made from it."""
    if isinstance(a, torch.Tensor) and a.device.type == "meta":
        raise ArgumentError(f"{name} is a meta tensor (a shape without values): an estimate needs the values; "
                            "create it on 'cpu' or an accelerator")
