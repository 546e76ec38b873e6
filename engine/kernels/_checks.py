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
