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


def binary_scores(
    y_true: ArrayLike, score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """0/1 labels with both classes and finite scores of one length (AUC inputs)."""
    y = np.ascontiguousarray(y_true, dtype=np.float64)
    s = np.ascontiguousarray(score, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"y_true and score must be 1-D of one length, got {y.shape}, {s.shape}.")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"y_true must be 0/1, got values {np.unique(y)[:5].tolist()}.")
    if not np.isfinite(s).all():
        raise ValueError("score holds NaN or infinite values.")
    if y.min() == y.max():
        raise ValueError(f"y_true has one class only ({y[0]:g}); AUC is undefined.")
    return y, s


def outcome_treatment(y: ArrayLike, t: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Any numeric outcome without NaN and a 0/1 treatment with both arms present."""
    ya = np.asarray(y, dtype=np.float64)
    ta = np.asarray(t)
    if ya.ndim != 1 or ta.shape != ya.shape:
        raise ValueError(f"y and t must be 1-D of one length, got {ya.shape} and {ta.shape}.")
    if np.isnan(ya).any():
        raise ValueError("y holds NaN. Fix: drop rows with unknown outcomes first.")
    if not np.isin(ta, (0, 1)).all():
        raise ValueError(f"t must be 0/1, got values {np.unique(ta)[:5].tolist()}.")
    t_int = ta.astype(np.int64)
    _both_arms(int(t_int.sum()), t_int.size)
    return ya, t_int


def _both_arms(n1: int, n: int) -> None:
    if n1 == 0 or n1 == n:
        raise ValueError(
            f"need both treated and control rows, got {n1} treated of {n}. "
            "An effect is undefined when one group is empty."
        )


@njit(cache=True, nogil=True)
def treatment_cells(y: NDArray[np.float64], t: NDArray[np.float64]) -> NDArray[np.int64]:
    """Counts of the 2x2 (t, y) cells in one pass, ordered (0,0), (0,1), (1,0), (1,1);
    -1 in cell 0 flags a value that is not 0/1."""
    c = np.zeros(4, dtype=np.int64)
    for i in range(y.size):
        yi, ti = y[i], t[i]
        if (yi != 0.0 and yi != 1.0) or (ti != 0.0 and ti != 1.0):
            c[0] = -1
            return c
        c[int(2.0 * ti + yi)] += 1
    return c


def uplift_inputs(
    y: ArrayLike, t: ArrayLike, score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """0/1 outcome, 0/1 treatment, finite score of one length; and the 2x2 cell counts."""
    ya = np.ascontiguousarray(y, dtype=np.float64)
    ta = np.ascontiguousarray(t, dtype=np.float64)
    s = np.ascontiguousarray(score, dtype=np.float64)
    if ya.ndim != 1 or ta.shape != ya.shape or s.shape != ya.shape:
        raise ValueError(
            f"y, t and score must be 1-D of one length, got {ya.shape}, {ta.shape}, {s.shape}."
        )
    cells = treatment_cells(ya, ta)
    if cells[0] < 0:
        bad_y = np.unique(ya[(ya != 0) & (ya != 1)])[:5].tolist()
        if bad_y:
            raise ValueError(f"y must be 0/1 for this metric, got values {bad_y}.")
        raise ValueError(f"t must be 0/1, got values {np.unique(ta)[:5].tolist()}.")
    _both_arms(int(cells[2] + cells[3]), ya.size)
    if not np.isfinite(s).all():
        raise ValueError("score holds NaN or infinite values. Fix: impute or drop those rows.")
    return ya, ta, s, cells


def group_cells(
    y_true: ArrayLike, y_pred: ArrayLike, group: ArrayLike
) -> tuple[NDArray[np.float64], list[str]]:
    """Counts per (group, y, pred) as a G x 4 table (columns: y0p0, y0p1, y1p0, y1p1) and
    the group names, from 0/1 labels and decisions and at least two groups."""
    y, p, g = np.asarray(y_true), np.asarray(y_pred), np.asarray(group)
    if not (y.shape == p.shape == g.shape) or y.ndim != 1:
        raise ValueError(
            f"y_true, y_pred and group must be 1-D of one length; got {y.shape}, {p.shape}, {g.shape}."
        )
    for name, a in (("y_true", y), ("y_pred", p)):
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be 0/1 (apply the decision threshold first).")
    names, codes = np.unique(g.astype(str), return_inverse=True)
    if names.size < 2:
        raise ValueError(f"need at least 2 groups, got {names.tolist()}.")
    k = names.size
    idx = codes * 4 + y.astype(np.int64) * 2 + p.astype(np.int64)
    return np.bincount(idx, minlength=4 * k).astype(np.float64).reshape(k, 4), names.tolist()
