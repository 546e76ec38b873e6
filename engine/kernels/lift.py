"""Lift statistics of a randomised campaign, for any non-negative outcome (a 0/1
conversion or an amount such as spend).

- ``qini_auc_any``: scikit-uplift's ``qini_auc_score`` (negative_effect=True) for outcomes
  that are not 0/1: the same curve (incremental outcome at each distinct score, rows ranked
  by descending score), the perfect curve from the score y (2t - 1), trapezoidal areas,
  normalised as (actual - random) / (perfect - random). For 0/1 outcomes
  :func:`engine.kernels.qini.qini_auc` is the faster path and gives the same number.
- ``cell_lift``: per segment and treated arm, the difference in mean outcome against the
  control with an interval and a two-sided p-value, and a percentile bootstrap interval
  that resamples within each (segment, arm) cell (the arms' sizes are fixed by the
  design). 0/1 outcomes: Newcombe's hybrid score interval and the pooled two-proportion
  score test (the chi-square test of the 2x2 table): both hold near rates of 0 and 1 and in
  small cells, where Wald's interval and test do not (a segment of 11 control rows with no
  conversion has a Wald standard error of 0, and was declared different on a real null
  experiment). Amounts: Welch's normal interval and test. Cells with fewer than
  ``min_rows`` rows in the arm or the control get an interval but no test (p = NaN: never
  declared). Bootstrap: 0/1 outcomes as binomial draws of the cell's count (exactly the
  distribution of a resample's mean), amounts row by row in Numba.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from engine.kernels.intervals import newcombe_diff, z_value


def _curve(
    y: NDArray[np.float64], t: NDArray[np.float64], s: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    order = np.argsort(-s, kind="mergesort")
    ys, ts, ss = y[order], t[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(ss)), ss.size - 1]  # the last row of each score
    n_t = np.cumsum(ts)[last]
    n_all = (last + 1).astype(np.float64)
    n_c = n_all - n_t
    y_t = np.cumsum(ys * ts)[last]
    y_c = np.cumsum(ys * (1 - ts))[last]
    with np.errstate(invalid="ignore", divide="ignore"):
        q = y_t - np.where(n_c > 0, y_c * n_t / n_c, 0.0)
    return np.r_[0.0, n_all], np.r_[0.0, q]


def qini_curve_any(
    y: ArrayLike, t: ArrayLike, score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(rows targeted, incremental outcome) at each distinct score, from (0, 0)."""
    ya, ta, s = _inputs(y, t, score)
    return _curve(ya, ta, s)


def _inputs(
    y: ArrayLike, t: ArrayLike, score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    ya = np.ascontiguousarray(y, dtype=np.float64)
    ta = np.ascontiguousarray(t, dtype=np.float64)
    s = np.ascontiguousarray(score, dtype=np.float64)
    if ya.ndim != 1 or ta.shape != ya.shape or s.shape != ya.shape:
        raise ValueError(
            f"y, t and score must be 1-D of one length, got {ya.shape}, {ta.shape}, {s.shape}."
        )
    if not np.isin(ta, (0.0, 1.0)).all():
        raise ValueError(f"t must be 0/1, got values {np.unique(ta)[:5].tolist()}.")
    if ta.min() == ta.max():
        raise ValueError("t holds one arm only; a Qini curve compares two.")
    if not (np.isfinite(ya).all() and np.isfinite(s).all()):
        raise ValueError("y or score holds NaN or infinite values.")
    return ya, ta, s


def qini_auc_any(y: ArrayLike, t: ArrayLike, score: ArrayLike) -> float:
    """Normalised Qini area for any outcome (scikit-uplift's definition)."""
    ya, ta, s = _inputs(y, t, score)
    x, q = _curve(ya, ta, s)
    xp, qp = _curve(ya, ta, ya * (2 * ta - 1))
    rand = x[-1] * q[-1] / 2.0
    perfect = float(np.trapezoid(qp, xp)) - rand
    if perfect == 0:
        raise ValueError("the perfect Qini curve has no area over random: every row is alike.")
    return (float(np.trapezoid(q, x)) - rand) / perfect


class CellLift(NamedTuple):
    """Per (segment, treated arm): rows and mean outcome of the arm and of the control,
    lift, Welch CI, p-value, bootstrap CI. Arrays of shape (segments, arms - 1); the
    control's columns are repeated per arm."""

    n_arm: NDArray[np.int64]
    n_control: NDArray[np.int64]
    mean_arm: NDArray[np.float64]
    mean_control: NDArray[np.float64]
    lift: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    p_value: NDArray[np.float64]
    boot_low: NDArray[np.float64]
    boot_high: NDArray[np.float64]


@njit(cache=True)
def _moments(
    y: NDArray[np.float64], arm: NDArray[np.int64], seg: NDArray[np.int64], s: int, a: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    n = np.zeros((s, a))
    s1 = np.zeros((s, a))
    s2 = np.zeros((s, a))
    for i in range(y.size):
        n[seg[i], arm[i]] += 1.0
        s1[seg[i], arm[i]] += y[i]
        s2[seg[i], arm[i]] += y[i] * y[i]
    return n, s1, s2


@njit(cache=True)
def _boot_means(
    y: NDArray[np.float64],
    order: NDArray[np.int64],
    starts: NDArray[np.int64],
    n_boot: int,
    seed: int,
) -> NDArray[np.float64]:
    """Resampled means of each cell (cells are runs of ``order`` between ``starts``)."""
    np.random.seed(seed)
    cells = starts.size - 1
    out = np.empty((n_boot, cells))
    for b in range(n_boot):
        for c in range(cells):
            lo = starts[c]
            m = starts[c + 1] - lo
            acc = 0.0
            for _ in range(m):
                acc += y[order[lo + np.random.randint(0, m)]]
            out[b, c] = acc / m if m > 0 else np.nan
    return out


def cell_lift(
    y: ArrayLike,
    arm: ArrayLike,
    segment: ArrayLike,
    *,
    n_segments: int,
    n_arms: int,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    min_rows: int = 20,
) -> CellLift:
    """Lift of each treated arm over the control within each segment (see module doc)."""
    ya = np.ascontiguousarray(y, dtype=np.float64)
    aa = np.ascontiguousarray(arm, dtype=np.int64)
    sa = np.ascontiguousarray(segment, dtype=np.int64)
    if not (ya.shape == aa.shape == sa.shape) or ya.ndim != 1:
        raise ValueError("y, arm and segment must be 1-D of one length.")
    if aa.size and (aa.min() < 0 or aa.max() >= n_arms or sa.min() < 0 or sa.max() >= n_segments):
        raise ValueError("arm and segment codes must lie in 0..n_arms-1 and 0..n_segments-1.")
    n, s1, s2 = _moments(ya, aa, sa, n_segments, n_arms)
    binary = bool(np.isin(ya, (0.0, 1.0)).all())
    z = z_value(alpha)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = (s2 - n * mean**2) / (n - 1)
        var = np.where(n > 1, np.maximum(var, 0.0), np.nan)
        lift = mean[:, 1:] - mean[:, :1]
        n1, n0 = n[:, 1:], n[:, :1]
        if binary:
            pooled = (s1[:, 1:] + s1[:, :1]) / (n1 + n0)
            se_test = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
        else:
            se_test = np.sqrt(var[:, 1:] / n1 + var[:, :1] / n0)
        p = _two_sided_p(lift / se_test)
        p = np.where(se_test == 0, 1.0, p)  # one outcome value in both arms: no difference
        p = np.where((n1 < min_rows) | (n0 < min_rows), np.nan, p)
        se = np.sqrt(var[:, 1:] / n1 + var[:, :1] / n0)
        low, high = lift - z * se, lift + z * se
    if binary:
        for s in range(n_segments):
            for a in range(1, n_arms):
                if n[s, a] > 0 and n[s, 0] > 0:
                    iv = newcombe_diff(s1[s, a], n[s, a], s1[s, 0], n[s, 0], z)
                    low[s, a - 1], high[s, a - 1] = iv.low, iv.high
    cell = sa * n_arms + aa
    order = np.argsort(cell, kind="stable").astype(np.int64)
    starts = np.searchsorted(cell[order], np.arange(n_segments * n_arms + 1)).astype(np.int64)
    if binary:
        rng = np.random.default_rng(seed)
        flat_n = n.reshape(-1)
        flat_p = np.nan_to_num(mean.reshape(-1))
        draws = rng.binomial(flat_n.astype(np.int64), flat_p, size=(n_boot, flat_n.size))
        with np.errstate(invalid="ignore", divide="ignore"):
            boots = draws / flat_n
    else:
        boots = _boot_means(ya, order, starts, n_boot, seed)
    boots = boots.reshape(n_boot, n_segments, n_arms)
    bl = boots[:, :, 1:] - boots[:, :, :1]
    with np.errstate(invalid="ignore"):
        lo_b = np.nanquantile(bl, alpha / 2, axis=0) if n_boot else lift * np.nan
        hi_b = np.nanquantile(bl, 1 - alpha / 2, axis=0) if n_boot else lift * np.nan
    nc = np.repeat(n[:, :1], n_arms - 1, axis=1)
    mc = np.repeat(mean[:, :1], n_arms - 1, axis=1)
    return CellLift(
        n[:, 1:].astype(np.int64),
        nc.astype(np.int64),
        mean[:, 1:],
        mc,
        lift,
        low,
        high,
        p,
        lo_b,
        hi_b,
    )


def _two_sided_p(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """2 P(Z > |z|) for a standard normal Z (erfc: accurate in the far tail)."""
    erfc = np.vectorize(math.erfc, otypes=[np.float64])
    return np.asarray(erfc(np.abs(z) / math.sqrt(2.0)), dtype=np.float64)


def welch_lift(y1: ArrayLike, y0: ArrayLike, alpha: float = 0.05) -> tuple[float, float, float]:
    """Difference in means with a Welch normal CI (estimate, low, high)."""
    a = np.asarray(y1, dtype=np.float64)
    b = np.asarray(y0, dtype=np.float64)
    est = float(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    z = z_value(alpha)
    return est, est - z * se, est + z * se
