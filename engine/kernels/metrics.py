"""Classifier metrics with bootstrap CIs: ROC AUC from one sort.

``auc_bootstrap`` sorts the scores once; each resample is a multinomial weight per row
(the row bootstrap, drawn as counts), and the weighted AUC is one pass over the sorted rows:
for each distinct score, positives there count the negative weight strictly below plus
half the negative weight tied with them. Matches ``sklearn.metrics.roc_auc_score`` with
``sample_weight`` set to the same counts (tests/test_kernels_metrics.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike, NDArray


class AUCInterval(NamedTuple):
    estimate: float
    low: float
    high: float


@njit(cache=True, nogil=True)
def _weighted_auc(s: NDArray[np.float64], y: NDArray[np.float64], w: NDArray[np.float64]) -> float:
    """AUC of rows sorted by ascending score ``s`` with weights ``w``."""
    n = s.size
    neg_below = 0.0
    num = 0.0
    wp = 0.0
    wn = 0.0
    i = 0
    while i < n:
        j = i
        gp = 0.0
        gn = 0.0
        while j < n and s[j] == s[i]:
            if y[j] > 0.5:
                gp += w[j]
            else:
                gn += w[j]
            j += 1
        num += gp * (neg_below + 0.5 * gn)
        neg_below += gn
        wp += gp
        wn += gn
        i = j
    if wp == 0.0 or wn == 0.0:
        return np.nan
    return num / (wp * wn)


@njit(cache=True, nogil=True)
def _resample_weights(n: int, seed: int) -> NDArray[np.float64]:
    """One row bootstrap as multiplicities: n draws with replacement, one stream per seed."""
    np.random.seed(seed)
    w = np.zeros(n)
    for _ in range(n):
        w[np.random.randint(0, n)] += 1.0
    return w


@njit(cache=True, parallel=True)
def _boot(
    s: NDArray[np.float64], y: NDArray[np.float64], n_boot: int, seed: int
) -> NDArray[np.float64]:
    n = s.size
    out = np.empty(n_boot)
    for b in prange(n_boot):
        # one stream per resample: same seed, same CI, whatever the thread count
        out[b] = _weighted_auc(s, y, _resample_weights(n, seed + b))
    return out


def auc(y_true: ArrayLike, score: ArrayLike) -> float:
    y, s = _inputs(y_true, score)
    o = np.argsort(s, kind="stable")
    return float(_weighted_auc(s[o], y[o], np.ones(s.size)))


def auc_bootstrap(
    y_true: ArrayLike, score: ArrayLike, n_boot: int = 500, alpha: float = 0.05, seed: int = 0
) -> AUCInterval:
    """ROC AUC with a percentile bootstrap CI (rows resampled; resamples with one class
    only are dropped)."""
    if n_boot < 10:
        raise ValueError(f"n_boot must be >= 10, got {n_boot}.")
    y, s = _inputs(y_true, score)
    o = np.argsort(s, kind="stable")
    ys, ss = y[o], s[o]
    est = float(_weighted_auc(ss, ys, np.ones(s.size)))
    boots = _boot(ss, ys, n_boot, seed)
    boots = boots[np.isfinite(boots)]
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return AUCInterval(est, float(lo), float(hi))


def _inputs(y_true: ArrayLike, score: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
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


@njit(cache=True, parallel=True)
def _boot_paired(
    y: NDArray[np.float64],
    sa: NDArray[np.float64],
    oa: NDArray[np.int64],
    sb: NDArray[np.float64],
    ob: NDArray[np.int64],
    n_boot: int,
    seed: int,
) -> NDArray[np.float64]:
    n = y.size
    ya, yb = y[oa], y[ob]
    out = np.empty(n_boot)
    for b in prange(n_boot):
        w = _resample_weights(n, seed + b)
        out[b] = _weighted_auc(sa, ya, w[oa]) - _weighted_auc(sb, yb, w[ob])
    return out


def paired_auc_difference(
    y_true: ArrayLike,
    score_a: ArrayLike,
    score_b: ArrayLike,
    n_boot: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
) -> AUCInterval:
    """AUC(a) - AUC(b) on the same rows with a paired percentile bootstrap CI: each
    resample weights the rows once and scores both models on it, so the models' shared
    noise cancels and the interval is far narrower than two separate AUC CIs."""
    if n_boot < 10:
        raise ValueError(f"n_boot must be >= 10, got {n_boot}.")
    y, sa = _inputs(y_true, score_a)
    _, sb = _inputs(y_true, score_b)
    oa, ob = np.argsort(sa, kind="stable"), np.argsort(sb, kind="stable")
    one = np.ones(y.size)
    est = float(_weighted_auc(sa[oa], y[oa], one) - _weighted_auc(sb[ob], y[ob], one))
    boots = _boot_paired(y, sa[oa], oa, sb[ob], ob, n_boot, seed)
    boots = boots[np.isfinite(boots)]
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return AUCInterval(est, float(lo), float(hi))
