"""Drift statistics between a reference sample and a current sample.

NaN handling: every function drops NaNs from both samples before computing (the report
counts them); infinities are rejected. Results are exact, not approximations of the
sample statistic.

- :func:`ks_2samp`: two-sample Kolmogorov-Smirnov statistic, identical to
  ``scipy.stats.ks_2samp`` (ties handled by stepping through equal values on both sides
  before comparing the ECDFs); the p-value uses the asymptotic Kolmogorov distribution
  with ``en = m*n/(m+n)`` (scipy's 'asymp' uses the finite-n ``kstwo(round(en))``; the two
  differ by less than 1e-2 for en >= 100, pinned in tests/test_kernels_drift.py).
- :func:`psi`: population stability index over ``bins`` quantile bins of the reference.
  Empty-bin proportions are floored at ``PSI_EPS`` (1e-4) so the log stays finite.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from engine.kernels._checks import as_float_1d

PSI_EPS = 1e-4


class KSResult(NamedTuple):
    statistic: float
    pvalue: float


@njit(cache=True, nogil=True)
def _ks_sorted(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Max |F_a - F_b| over all values, for sorted a and b (one merge walk)."""
    n, m = a.size, b.size
    i = 0
    j = 0
    d = 0.0
    while i < n and j < m:
        v = a[i] if a[i] <= b[j] else b[j]
        while i < n and a[i] == v:
            i += 1
        while j < m and b[j] == v:
            j += 1
        diff = abs(i / n - j / m)
        if diff > d:
            d = diff
    return d


@njit(cache=True, nogil=True)
def _kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution (alternating series, converges fast)."""
    if x <= 0.0:
        return 1.0
    if x < 0.2:
        return 1.0  # 1 - cdf(0.2) = 1 - 2e-10; the series converges slowly here
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * x * x)
        total += term if k % 2 == 1 else -term
        if term < 1e-18:
            break
    p = 2.0 * total
    return min(max(p, 0.0), 1.0)


def ks_pvalue(d: float, n: int, m: int) -> float:
    en = n * m / (n + m)
    return float(_kolmogorov_sf(math.sqrt(en) * d))


def ks_2samp_sorted(a: NDArray[np.float64], b: NDArray[np.float64]) -> KSResult:
    """KS for already sorted, NaN-free float64 arrays (no checks: for fused callers)."""
    d = float(_ks_sorted(a, b))
    return KSResult(d, ks_pvalue(d, a.size, b.size))


def ks_2samp(ref: ArrayLike, cur: ArrayLike) -> KSResult:
    """Two-sample Kolmogorov-Smirnov test.

    Examples
    --------
    >>> import numpy as np
    >>> r = ks_2samp(np.arange(100.0), np.arange(100.0) + 50)
    >>> round(r.statistic, 2)
    0.5
    """
    a, _ = as_float_1d(ref, "ref")
    b, _ = as_float_1d(cur, "cur")
    return ks_2samp_sorted(np.sort(a), np.sort(b))


@njit(cache=True, nogil=True)
def _psi_from_edges(
    ref_sorted: NDArray[np.float64],
    cur: NDArray[np.float64],
    edges: NDArray[np.float64],
    eps: float,
) -> float:
    k = edges.size + 1
    rc = np.zeros(k)
    cc = np.zeros(k)
    # Bin i holds values v with edges[i-1] < v <= edges[i] (right-closed, like quantiles).
    idx_r = np.searchsorted(edges, ref_sorted, side="left")
    for t in range(idx_r.size):
        rc[idx_r[t]] += 1.0
    idx_c = np.searchsorted(edges, cur, side="left")
    for t in range(idx_c.size):
        cc[idx_c[t]] += 1.0
    total = 0.0
    for i in range(k):
        p = max(rc[i] / ref_sorted.size, eps)
        q = max(cc[i] / cur.size, eps)
        total += (q - p) * math.log(q / p)
    return total


def psi_edges(ref_sorted: NDArray[np.float64], bins: int) -> NDArray[np.float64]:
    """Inner bin edges: the reference's i/bins quantiles, unique.

    Quantiles are inverted-CDF (``np.quantile(method="inverted_cdf")``): the smallest value
    with ECDF >= i/bins, i.e. order statistic ceil(i*n/bins), in exact integer arithmetic.
    Pinned by tests/test_kernels_drift.py::test_psi_matches_reference.
    """
    n = ref_sorted.size
    i = np.arange(1, bins, dtype=np.int64)
    pos = np.clip((i * n + bins - 1) // bins - 1, 0, n - 1)
    return np.unique(ref_sorted[pos])


def psi(ref: ArrayLike, cur: ArrayLike, bins: int = 10) -> float:
    """Population stability index of ``cur`` against ``ref``.

    Bins are right-closed intervals between the reference's quantiles at i/bins (ties
    merge bins, so a constant reference gives two bins: <= value and > value). Each bin's
    proportion is floored at ``PSI_EPS`` before ``sum((q - p) * ln(q / p))``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=10_000)
    >>> psi(x, x) == 0.0
    True
    """
    if not isinstance(bins, int | np.integer) or bins < 2:
        raise ValueError(f"'bins' must be an integer >= 2, got {bins!r}.")
    a, _ = as_float_1d(ref, "ref")
    b, _ = as_float_1d(cur, "cur")
    a = np.sort(a)
    return float(_psi_from_edges(a, b, psi_edges(a, bins), PSI_EPS))


def psi_sorted(ref_sorted: NDArray[np.float64], cur: NDArray[np.float64], bins: int) -> float:
    return float(_psi_from_edges(ref_sorted, cur, psi_edges(ref_sorted, bins), PSI_EPS))
