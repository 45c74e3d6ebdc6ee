"""Input checks shared by bounds, critics and estimators: every error names the argument and what was expected."""
from __future__ import annotations

import math

import numpy as np
import torch


def as_float_tensor(value, name: str, dtype=torch.float32) -> torch.Tensor:
    """Turn a tensor, numpy array or nested list into a floating tensor; reject anything else by name."""
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else value.to(dtype)
    if isinstance(value, (np.ndarray, list, tuple)):
        array = np.asarray(value)
        if array.dtype == object or not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"{name} must hold numbers, got an array of dtype {array.dtype}")
        return torch.as_tensor(array, dtype=dtype)
    raise TypeError(f"{name} must be a torch.Tensor or numpy array of shape [n, d], got {type(value).__name__}")


def check_finite(t: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN/inf value(s); expected finite numbers")


def check_samples(x, y, *, min_batch: int = 2, x_name: str = "x", y_name: str = "y"):
    """Check a paired batch: both [n, d] floating tensors with the same n >= min_batch and finite values."""
    x = as_float_tensor(x, x_name)
    y = as_float_tensor(y, y_name, dtype=x.dtype)
    for t, name in ((x, x_name), (y, y_name)):
        if t.dim() != 2:
            raise ValueError(f"{name} must have shape [n, d] (2 dims), got {t.dim()} dims with shape {tuple(t.shape)}")
        if t.shape[1] < 1:
            raise ValueError(f"{name} must have at least one feature column, got shape {tuple(t.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x_name} and {y_name} must have the same batch size, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[0] < min_batch:
        raise ValueError(f"batch size must be at least {min_batch} for this bound (it needs negatives), got {x.shape[0]}")
    check_finite(x, x_name)
    check_finite(y, y_name)
    return x, y


def check_dim(t: torch.Tensor, expected: int, name: str, what: str) -> None:
    if t.shape[1] != expected:
        raise ValueError(f"{name} has {t.shape[1]} features but the {what} was built for {expected}")


def check_scores(scores, name: str = "scores", min_batch: int = 2) -> torch.Tensor:
    """A score matrix S[i, j] = f(x_i, y_j): square, floating, finite, at least min_batch rows."""
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [N, N], got {type(scores).__name__}")
    if not scores.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {scores.dtype}")
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"{name} must be a square [N, N] matrix with positives on the diagonal, got shape {tuple(scores.shape)}")
    if scores.shape[0] < min_batch:
        raise ValueError(f"{name} needs N >= {min_batch} (off-diagonal entries are the negatives), got N = {scores.shape[0]}")
    check_finite(scores, name)
    return scores


def check_vector(v, name: str, n: int | None = None) -> torch.Tensor:
    if not isinstance(v, torch.Tensor) or not v.is_floating_point():
        raise TypeError(f"{name} must be a floating torch.Tensor, got {type(v).__name__}")
    if v.dim() != 1:
        raise ValueError(f"{name} must be 1-D [N], got shape {tuple(v.shape)}")
    if n is not None and v.shape[0] != n:
        raise ValueError(f"{name} must have length {n}, got {v.shape[0]}")
    check_finite(v, name)
    return v


def check_positive_number(value, name: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
