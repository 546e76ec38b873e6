"""Classifier metrics with bootstrap CIs: ROC AUC from one sort.

``auc_bootstrap`` sorts the scores once; each resample is a multinomial weight per row
(the row bootstrap, drawn as counts), and the weighted AUC is one pass over the sorted rows:
for each distinct score, positives there count the negative weight strictly below plus
half the negative weight tied with them. Matches ``sklearn.metrics.roc_auc_score`` with
``sample_weight`` set to the same counts (tests/test_kernels_metrics.py).

The interval is BCa, not percentile (see :mod:`engine.kernels.intervals`): near AUC 1 the
percentile interval undercovers. The jackknife it needs is exact and O(n): leaving out a
positive removes its placement (the share of negatives below it) from the mean.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike, NDArray

from engine.kernels import cores
from engine.kernels._checks import binary_scores
from engine.kernels.intervals import Interval, bca


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
def _placements(s: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per row of ascending scores: a positive's share of negatives below it (ties half),
    a negative's share of positives above it (ties half). Each set's mean is the AUC."""
    n = s.size
    n1 = 0.0
    for k in range(n):
        if y[k] > 0.5:
            n1 += 1.0
    n0 = n - n1
    out = np.empty(n)
    neg_below = 0.0
    pos_below = 0.0
    i = 0
    while i < n:
        j = i
        gp = 0.0
        gn = 0.0
        while j < n and s[j] == s[i]:
            if y[j] > 0.5:
                gp += 1.0
            else:
                gn += 1.0
            j += 1
        for k in range(i, j):
            if y[k] > 0.5:
                out[k] = (neg_below + 0.5 * gn) / n0
            else:
                out[k] = (n1 - pos_below - 0.5 * gp) / n1
        neg_below += gn
        pos_below += gp
        i = j
    return out


def _jackknife(
    y: NDArray[np.float64], placements: NDArray[np.float64], estimate: float
) -> NDArray[np.float64]:
    """AUC with each row left out, from the placements: exact (tests pin it against
    sklearn on every leave-one-out set)."""
    pos = y > 0.5
    n1, n0 = float(pos.sum()), float((~pos).sum())
    if n1 < 2 or n0 < 2:
        return np.full(y.size, estimate)
    return np.where(
        pos, (n1 * estimate - placements) / (n1 - 1), (n0 * estimate - placements) / (n0 - 1)
    )


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
    """ROC AUC (ties count half), equal to ``sklearn.metrics.roc_auc_score``.

    Examples
    --------
    >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y, s = binary_scores(y_true, score)
    o = np.argsort(s, kind="stable")
    return float(_weighted_auc(s[o], y[o], np.ones(s.size)))


def auc_bootstrap(
    y_true: ArrayLike, score: ArrayLike, n_boot: int = 500, alpha: float = 0.05, seed: int = 0
) -> Interval:
    """ROC AUC with a BCa bootstrap CI (rows resampled; resamples with one class only are
    dropped). Same seed, same interval.

    Examples
    --------
    >>> a = auc_bootstrap([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.7], n_boot=50)
    >>> bool(a.low <= a.estimate <= a.high)
    True
    """
    if n_boot < 10:
        raise ValueError(f"n_boot must be >= 10, got {n_boot}.")
    y, s = binary_scores(y_true, score)
    o = np.argsort(s, kind="stable")
    ys, ss = y[o], s[o]
    est = float(_weighted_auc(ss, ys, np.ones(s.size)))
    with cores.numba_threads():
        boots = _boot(ss, ys, n_boot, seed)
    return bca(est, boots, _jackknife(ys, _placements(ss, ys), est), alpha)


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
) -> Interval:
    """AUC(a) - AUC(b) on the same rows with a paired BCa bootstrap CI: each resample
    weights the rows once and scores both models on it, so the models' shared noise
    cancels and the interval is far narrower than two separate AUC CIs."""
    if n_boot < 10:
        raise ValueError(f"n_boot must be >= 10, got {n_boot}.")
    y, sa = binary_scores(y_true, score_a)
    _, sb = binary_scores(y_true, score_b)
    oa, ob = np.argsort(sa, kind="stable"), np.argsort(sb, kind="stable")
    one = np.ones(y.size)
    est_a = float(_weighted_auc(sa[oa], y[oa], one))
    est_b = float(_weighted_auc(sb[ob], y[ob], one))
    with cores.numba_threads():
        boots = _boot_paired(y, sa[oa], oa, sb[ob], ob, n_boot, seed)
    ja = np.empty(y.size)
    jb = np.empty(y.size)
    ja[oa] = _jackknife(y[oa], _placements(sa[oa], y[oa]), est_a)
    jb[ob] = _jackknife(y[ob], _placements(sb[ob], y[ob]), est_b)
    return bca(est_a - est_b, boots, ja - jb, alpha)  # the same row left out of both
