"""Uplift statistics: ATE with a CI, bootstrap CIs, Qini and uplift curves and their AUCs.

``qini_auc`` and ``uplift_auc`` follow scikit-uplift's ``qini_auc_score`` (negative_effect
=True) and ``uplift_auc_score``: rows ranked by descending score, curve points only at
distinct scores, trapezoidal areas, normalized by the perfect curve minus the random
baseline. Because points sit at distinct scores, the order within ties is irrelevant, so
one sort plus cumulative sums per group reproduce them to ~1e-12
(tests/test_kernels_uplift.py). causalml normalizes differently (by the endpoint, averaged
per row); these functions return scikit-uplift's definition.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray


class Interval(NamedTuple):
    estimate: float
    low: float
    high: float


def _check(
    y: ArrayLike, t: ArrayLike, binary_y: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    ya = np.asarray(y, dtype=np.float64)
    ta = np.asarray(t)
    if ya.ndim != 1 or ta.shape != ya.shape:
        raise ValueError(f"y and t must be 1-D of one length, got {ya.shape} and {ta.shape}.")
    if np.isnan(ya).any():
        raise ValueError("y holds NaN. Fix: drop rows with unknown outcomes first.")
    if not np.isin(ta, (0, 1)).all():
        raise ValueError(f"t must be 0/1, got values {np.unique(ta)[:5].tolist()}.")
    if binary_y and not np.isin(ya, (0.0, 1.0)).all():
        raise ValueError("y must be 0/1 for this metric.")
    t_int = ta.astype(np.int64)
    n1 = int(t_int.sum())
    if n1 == 0 or n1 == t_int.size:
        raise ValueError(
            f"need both treated and control rows, got {n1} treated of {t_int.size}. "
            "An effect is undefined when one group is empty."
        )
    return ya, t_int


def ate(y: ArrayLike, t: ArrayLike, alpha: float = 0.05) -> Interval:
    """Difference in means with a Welch (unequal-variance) normal CI.

    Examples
    --------
    >>> ate([1, 0, 1, 1], [1, 0, 1, 0]).estimate
    0.5
    """
    ya, ta = _check(y, t)
    y1, y0 = ya[ta == 1], ya[ta == 0]
    est = float(y1.mean() - y0.mean())
    if y1.size < 2 or y0.size < 2:
        raise ValueError("each group needs at least 2 rows for a variance.")
    se = math.sqrt(y1.var(ddof=1) / y1.size + y0.var(ddof=1) / y0.size)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return Interval(est, est - z * se, est + z * se)


@njit(cache=True)
def _boot_rows(
    y: NDArray[np.float64], t: NDArray[np.int64], n_boot: int, seed: int
) -> NDArray[np.float64]:
    np.random.seed(seed)  # Numba's own generator: one stream per seed, reproducible
    n = y.size
    out = np.empty(n_boot)
    for b in range(n_boot):
        s1 = 0.0
        s0 = 0.0
        c1 = 0
        for _ in range(n):
            i = np.random.randint(0, n)
            if t[i] == 1:
                s1 += y[i]
                c1 += 1
            else:
                s0 += y[i]
        c0 = n - c1
        out[b] = s1 / c1 - s0 / c0 if (c1 > 0 and c0 > 0) else np.nan
    return out


def bootstrap_ci(
    y: ArrayLike,
    t: ArrayLike,
    stat: str = "ate",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap CI of the difference in means (``stat="ate"``).

    For a 0/1 outcome the bootstrap needs only the 2x2 cell counts: each resample is one
    multinomial draw over the four (t, y) cells, so 1000 resamples of 1e6 rows cost
    microseconds. Other outcomes resample rows in a Numba loop. Same seed, same interval.
    """
    if stat != "ate":
        raise ValueError(f"stat must be 'ate', got {stat!r}.")
    if n_boot < 10:
        raise ValueError(f"n_boot must be >= 10, got {n_boot}.")
    ya, ta = _check(y, t)
    est = float(ya[ta == 1].mean() - ya[ta == 0].mean())
    if np.isin(ya, (0.0, 1.0)).all():
        cells = np.array(
            [
                ((ta == 0) & (ya == 0)).sum(),
                ((ta == 0) & (ya == 1)).sum(),
                ((ta == 1) & (ya == 0)).sum(),
                ((ta == 1) & (ya == 1)).sum(),
            ],
            dtype=np.float64,
        )
        draws = np.random.default_rng(seed).multinomial(ya.size, cells / ya.size, size=n_boot)
        n0, n1 = draws[:, 0] + draws[:, 1], draws[:, 2] + draws[:, 3]
        with np.errstate(invalid="ignore", divide="ignore"):
            boots = draws[:, 3] / n1 - draws[:, 1] / n0
    else:
        boots = _boot_rows(ya, ta, n_boot, seed)
    boots = boots[np.isfinite(boots)]
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return Interval(est, float(lo), float(hi))


def _groups(
    y: NDArray[np.float64], t: NDArray[np.int64], score: NDArray[np.float64]
) -> tuple[NDArray[np.float64], ...]:
    """Cumulative counts at each distinct score, scores descending."""
    order = np.argsort(-score, kind="stable")
    s = score[order]
    yo, to = y[order], t[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    n_all = (last + 1).astype(np.float64)
    n_tr = np.cumsum(to)[last]
    y_tr = np.cumsum(yo * to)[last]
    y_ct = np.cumsum(yo * (1 - to))[last]
    return n_all, n_tr, y_tr, y_ct


def _start_at_zero(
    x: NDArray[np.float64], v: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if x.size == 0 or v[0] != 0 or x[0] != 0:
        return np.r_[0.0, x], np.r_[0.0, v]
    return x, v


def _qini_points(
    g: tuple[NDArray[np.float64], ...],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    n_all, n_tr, y_tr, y_ct = g
    n_ct = n_all - n_tr
    ratio = np.divide(n_tr, n_ct, out=np.zeros_like(n_tr), where=n_ct != 0)
    return _start_at_zero(n_all, y_tr - y_ct * ratio)


def _uplift_points(
    g: tuple[NDArray[np.float64], ...],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    n_all, n_tr, y_tr, y_ct = g
    n_ct = n_all - n_tr
    rt = np.divide(y_tr, n_tr, out=np.zeros_like(y_tr), where=n_tr != 0)
    rc = np.divide(y_ct, n_ct, out=np.zeros_like(y_ct), where=n_ct != 0)
    return _start_at_zero(n_all, (rt - rc) * n_all)


def _trapz(x: NDArray[np.float64], v: NDArray[np.float64]) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (v[1:] + v[:-1]) / 2.0))


def _normalized(
    actual: tuple[NDArray[np.float64], NDArray[np.float64]],
    perfect: tuple[NDArray[np.float64], NDArray[np.float64]],
) -> float:
    xp, vp = perfect
    base = _trapz(np.array([0.0, xp[-1]]), np.array([0.0, vp[-1]]))
    denom = _trapz(xp, vp) - base
    if denom == 0:
        raise ValueError("the perfect curve has zero area over the baseline; the AUC is undefined.")
    return (_trapz(*actual) - base) / denom


def qini_curve(
    y: ArrayLike, t: ArrayLike, score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Qini curve points (rows targeted, incremental responders), as scikit-uplift's."""
    ya, ta = _check(y, t, binary_y=True)
    return _qini_points(_groups(ya, ta, np.asarray(score, dtype=np.float64)))


def uplift_curve(
    y: ArrayLike, t: ArrayLike, score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    ya, ta = _check(y, t, binary_y=True)
    return _uplift_points(_groups(ya, ta, np.asarray(score, dtype=np.float64)))


def qini_auc(y: ArrayLike, t: ArrayLike, score: ArrayLike) -> float:
    """Normalized area under the Qini curve (scikit-uplift ``qini_auc_score``)."""
    ya, ta = _check(y, t, binary_y=True)
    s = np.asarray(score, dtype=np.float64)
    if s.shape != ya.shape or np.isnan(s).any():
        raise ValueError("score must be 1-D, the length of y, without NaN.")
    perfect = ya * ta - ya * (1 - ta)
    return _normalized(_qini_points(_groups(ya, ta, s)), _qini_points(_groups(ya, ta, perfect)))


def uplift_auc(y: ArrayLike, t: ArrayLike, score: ArrayLike) -> float:
    """Normalized area under the uplift curve (scikit-uplift ``uplift_auc_score``)."""
    ya, ta = _check(y, t, binary_y=True)
    s = np.asarray(score, dtype=np.float64)
    if s.shape != ya.shape or np.isnan(s).any():
        raise ValueError("score must be 1-D, the length of y, without NaN.")
    cr = np.sum((ya == 1) & (ta == 0))
    tn = np.sum((ya == 0) & (ta == 1))
    summand = ya if cr > tn else ta.astype(np.float64)
    perfect = 2.0 * (ya == ta) + summand
    return _normalized(_uplift_points(_groups(ya, ta, s)), _uplift_points(_groups(ya, ta, perfect)))


def qini_band(
    y: ArrayLike,
    t: ArrayLike,
    score: ArrayLike,
    n_boot: int = 200,
    alpha: float = 0.05,
    points: int = 101,
    seed: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Pointwise bootstrap band of the Qini curve at ``points`` fractions of rows targeted.

    Returns (fraction, low, high); curves are rescaled to the original row count.
    """
    ya, ta = _check(y, t, binary_y=True)
    s = np.asarray(score, dtype=np.float64)
    rng = np.random.default_rng(seed)
    frac = np.linspace(0.0, 1.0, points)
    curves = np.empty((n_boot, points))
    for b in range(n_boot):
        idx = rng.integers(0, ya.size, ya.size)
        tb = ta[idx]
        if tb.min() == tb.max():
            curves[b] = np.nan
            continue
        x, v = _qini_points(_groups(ya[idx], tb, s[idx]))
        curves[b] = np.interp(frac * ya.size, x, v)
    lo, hi = np.nanquantile(curves, [alpha / 2, 1 - alpha / 2], axis=0)
    return frac, lo, hi
