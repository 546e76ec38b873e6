"""Input checks for the public kernel wrappers (the @njit loops assume clean input)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit
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


@njit(cache=True, nogil=True)
def _count(a: NDArray[Any], k: int) -> tuple[NDArray[np.int64], int]:
    c = np.zeros(k, dtype=np.int64)
    missing = 0
    for v in a:
        if v < 0:
            missing += 1
        else:
            c[v] += 1
    return c, missing


def count_codes(x: ArrayLike, name: str) -> tuple[NDArray[np.int64], int]:
    """Counts per category code (ints >= 0) and the number of missing (negative) codes, in
    one pass over the caller's array: no copy, no mask, no compress."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"'{name}' must be 1-D, got shape {a.shape}.")
    if a.dtype.kind not in "iub":
        raise TypeError(
            f"'{name}' must hold integer category codes, got dtype {a.dtype}. Fix: encode "
            "categories with np.unique(..., return_inverse=True) or pandas.factorize."
        )
    if a.dtype.kind == "b":
        a = a.view(np.uint8)
    hi = int(a.max()) if a.size else -1
    if hi < 0:
        raise ValueError(f"'{name}' has no non-missing codes ({a.size} missing).")
    return _count(np.ascontiguousarray(a), hi + 1)
