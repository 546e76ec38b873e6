"""Input checks for the public kernel wrappers (the @njit loops assume clean input)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def as_float_1d(x: ArrayLike, name: str) -> tuple[NDArray[np.float64], int]:
    """A contiguous float64 1-D array with NaNs dropped, and how many were dropped."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"'{name}' must be 1-D, got shape {a.shape}. Fix: pass one column.")
    if a.dtype.kind not in "fiub":
        raise TypeError(
            f"'{name}' must be numeric, got dtype {a.dtype}. Fix: encode categoricals as codes "
            "and use the categorical tests."
        )
    a = np.ascontiguousarray(a, dtype=np.float64)
    nan = np.isnan(a)
    n_nan = int(nan.sum())
    if n_nan:
        a = a[~nan]
    if np.isinf(a).any():
        raise ValueError(f"'{name}' holds infinite values. Fix: clip or drop them first.")
    if a.size == 0:
        raise ValueError(
            f"'{name}' has no finite values ({n_nan} NaN dropped). A statistic needs at least one."
        )
    return a, n_nan


def as_codes(x: ArrayLike, name: str) -> tuple[NDArray[np.int64], int]:
    """Integer category codes >= 0; negative codes (missing) dropped and counted."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"'{name}' must be 1-D, got shape {a.shape}.")
    if a.dtype.kind not in "iub":
        raise TypeError(
            f"'{name}' must hold integer category codes, got dtype {a.dtype}. Fix: encode "
            "categories with np.unique(..., return_inverse=True) or pandas.factorize."
        )
    a = a.astype(np.int64)
    missing = a < 0
    n_missing = int(missing.sum())
    a = a[~missing]
    if a.size == 0:
        raise ValueError(f"'{name}' has no non-missing codes ({n_missing} missing).")
    return np.ascontiguousarray(a), n_missing
