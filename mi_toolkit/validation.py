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
    "check_same_kind", "check_samples", "check_scores", "check_vector", "check_finite",
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


def as_float_tensor(value, name: str, dtype=torch.float32) -> torch.Tensor:
    """Turn a tensor, numpy array or nested list into a floating tensor; reject anything else by name."""
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else value.to(dtype)
    if isinstance(value, (np.ndarray, list, tuple)):
        array = np.asarray(value)
        if array.dtype == object or not np.issubdtype(array.dtype, np.number):
            raise ArgumentTypeError(f"{name} must hold numbers, got an array of dtype {array.dtype}")
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
