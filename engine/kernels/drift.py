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
- :func:`wasserstein`: 1-Wasserstein distance, as ``scipy.stats.wasserstein_distance``.
- :func:`jensen_shannon`: Jensen-Shannon *distance* between the histograms of both samples
  on ``bins`` equal-width bins over their joint range (``scipy.spatial.distance.jensenshannon``
  of ``np.histogram`` counts), base 2 by default so it lies in [0, 1].
- :func:`chi2`: chi-square test of homogeneity on category codes (2 x K table of counts,
  no continuity correction), as ``scipy.stats.chi2_contingency(..., correction=False)``;
  categories seen on one side only are part of the table.

Exact KS p-values (``method="exact"``, the default for n*m <= 1e6) count lattice paths:
the probability mass of paths that first leave the band |i/n - j/m| < d is accumulated
directly, so small p-values keep their relative precision.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from engine.kernels._checks import as_float_1d, count_codes
from engine.kernels._sort import sort_f64
from engine.kernels.special import chi2_sf

PSI_EPS = 1e-4


class KSResult(NamedTuple):
    statistic: float
    pvalue: float


@njit(cache=True, nogil=True)
def _ecdf_walk(a: NDArray[np.float64], b: NDArray[np.float64]) -> tuple[float, float]:
    """KS statistic and 1-Wasserstein distance of sorted, non-empty a and b in one merge.

    Each step consumes the smaller head (a on ties), with no inner loops, so the branch on
    which side moves becomes a select. After the step the ECDFs differ by ``diff`` on
    [v, next value): Wasserstein adds ``diff * (next - v)`` (zero for tied values, so ties
    need no special case), and KS counts ``diff`` only where the next value differs (all
    copies of v consumed on both sides), which is scipy's tie rule. Two merges of 1e6 + 1e6
    took 33 ms; this one takes 8 ms.
    """
    n, m = a.size, b.size
    inf = np.inf
    i = 0
    j = 0
    d = 0.0
    w = 0.0
    for _ in range(n + m - 1):
        ai = a[i] if i < n else inf
        bj = b[j] if j < m else inf
        take = ai <= bj
        v = ai if take else bj
        i += take
        j += 1 - take
        ai = a[i] if i < n else inf
        bj = b[j] if j < m else inf
        nv = ai if ai <= bj else bj
        diff = abs(i / n - j / m)
        w += diff * (nv - v)
        if nv != v and diff > d:
            d = diff
    return d, w


@njit(cache=True, nogil=True)
def _ks_sorted(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Max |F_a - F_b| over all values, for sorted a and b (one merge walk)."""
    return _ecdf_walk(a, b)[0]


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


@njit(cache=True)
def _ks_exact_sf(n: int, m: int, h: int) -> float:
    """P(max |i*m - j*n| >= h) over uniformly random lattice paths (0,0) -> (n,m)."""
    if h <= 0:
        return 1.0
    prob = np.zeros(m + 1)
    prob[0] = 1.0
    out = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            p = prob[j]
            if p == 0.0:
                continue
            if i == n and j == m:
                continue
            a = n - i  # steps left in the first sample
            b = m - j
            tot = a + b
            if a > 0:  # step i -> i+1: the value of prob[j] for row i+1
                if abs((i + 1) * m - j * n) >= h:
                    out += p * a / tot
                    stay_i = 0.0
                else:
                    stay_i = p * a / tot
            else:
                stay_i = 0.0
            if b > 0:
                if abs(i * m - (j + 1) * n) >= h:
                    out += p * b / tot
                else:
                    prob[j + 1] += p * b / tot
            prob[j] = stay_i  # becomes row i+1's mass at column j
    return min(out, 1.0)


def ks_pvalue_exact(d: float, n: int, m: int) -> float:
    h = round(d * n * m)
    return float(_ks_exact_sf(n, m, h))


def ks_2samp(ref: ArrayLike, cur: ArrayLike, method: str = "auto") -> KSResult:
    """Two-sample Kolmogorov-Smirnov test.

    ``method``: "exact" (lattice-path count, scipy's 'exact'), "asymp" (Kolmogorov limit
    with en = n*m/(n+m)) or "auto" (exact when n*m <= 1e6).

    Examples
    --------
    >>> import numpy as np
    >>> r = ks_2samp(np.arange(100.0), np.arange(100.0) + 50)
    >>> round(r.statistic, 2)
    0.5
    """
    if method not in ("auto", "exact", "asymp"):
        raise ValueError(f"method must be 'auto', 'exact' or 'asymp', got {method!r}.")
    a, _ = as_float_1d(ref, "ref")
    b, _ = as_float_1d(cur, "cur")
    res = ks_2samp_sorted(sort_f64(a), sort_f64(b))
    if method == "exact" or (method == "auto" and a.size * b.size <= 1_000_000):
        return KSResult(res.statistic, ks_pvalue_exact(res.statistic, a.size, b.size))
    return res


@njit(cache=True, nogil=True)
def _bin_counts(x: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.float64]:
    """Counts of unsorted ``x`` per bin: bin i holds edges[i-1] < v <= edges[i]
    (right-closed, like quantiles); one binary search per value."""
    c = np.zeros(edges.size + 1)
    idx = np.searchsorted(edges, x, side="left")
    for t in range(idx.size):
        c[idx[t]] += 1.0
    return c


def _sorted_bin_counts(
    x_sorted: NDArray[np.float64], edges: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The same counts for sorted ``x``: ``bins - 1`` binary searches, not one per value."""
    return np.diff(
        np.searchsorted(x_sorted, edges, side="right"), prepend=0, append=x_sorted.size
    ).astype(np.float64)


def psi_from_counts(
    ref_counts: ArrayLike, n_ref: int, cur_counts: ArrayLike, n_cur: int, eps: float = PSI_EPS
) -> float:
    """``sum((q - p) * ln(q / p))`` over bins, each proportion floored at ``eps``."""
    p = np.maximum(np.asarray(ref_counts, dtype=np.float64) / n_ref, eps)
    q = np.maximum(np.asarray(cur_counts, dtype=np.float64) / n_cur, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def _psi_sorted(
    ref_sorted: NDArray[np.float64],
    cur_sorted: NDArray[np.float64],
    edges: NDArray[np.float64],
    eps: float,
) -> float:
    """PSI when both samples are sorted."""
    rc = _sorted_bin_counts(ref_sorted, edges)
    cc = _sorted_bin_counts(cur_sorted, edges)
    return psi_from_counts(rc, ref_sorted.size, cc, cur_sorted.size, eps)


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
    a = sort_f64(a)
    e = psi_edges(a, bins)
    return psi_from_counts(_sorted_bin_counts(a, e), a.size, _bin_counts(b, e), b.size)


@njit(cache=True, nogil=True)
def _wasserstein_sorted(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Integral of |F_a - F_b| over the merged support, for sorted a and b."""
    return _ecdf_walk(a, b)[1]


def wasserstein_sorted(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    return float(_wasserstein_sorted(a, b))


def wasserstein(ref: ArrayLike, cur: ArrayLike) -> float:
    """1-Wasserstein (earth mover's) distance between two samples.

    Examples
    --------
    >>> wasserstein([0.0, 1.0, 3.0], [5.0, 6.0, 8.0])
    5.0
    """
    a, _ = as_float_1d(ref, "ref")
    b, _ = as_float_1d(cur, "cur")
    return wasserstein_sorted(sort_f64(a), sort_f64(b))


@njit(cache=True, nogil=True)
def _js_counts(p: NDArray[np.float64], q: NDArray[np.float64], log_base: float) -> float:
    sp = p.sum()
    sq = q.sum()
    total = 0.0
    for k in range(p.size):
        pk = p[k] / sp
        qk = q[k] / sq
        mk = 0.5 * (pk + qk)
        if pk > 0.0:
            total += 0.5 * pk * math.log(pk / mk)
        if qk > 0.0:
            total += 0.5 * qk * math.log(qk / mk)
    return math.sqrt(max(total, 0.0) / log_base)


def jensen_shannon_counts(ref_counts: ArrayLike, cur_counts: ArrayLike, base: float = 2.0) -> float:
    """Jensen-Shannon distance between two count (or probability) vectors."""
    p = np.ascontiguousarray(ref_counts, dtype=np.float64)
    q = np.ascontiguousarray(cur_counts, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"count vectors must be 1-D of one length, got {p.shape} and {q.shape}.")
    if (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("counts must be non-negative with a positive total on each side.")
    return float(_js_counts(p, q, math.log(base)))


def jensen_shannon(ref: ArrayLike, cur: ArrayLike, bins: int = 30, base: float = 2.0) -> float:
    """Jensen-Shannon distance of the two samples' histograms (equal-width, joint range)."""
    if not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"'bins' must be a positive integer, got {bins!r}.")
    a, _ = as_float_1d(ref, "ref")
    b, _ = as_float_1d(cur, "cur")
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    edges = np.histogram_bin_edges(np.array([lo, hi]), bins=bins)
    p = np.histogram(a, edges)[0].astype(np.float64)
    q = np.histogram(b, edges)[0].astype(np.float64)
    return float(_js_counts(p, q, math.log(base)))


class Chi2Result(NamedTuple):
    statistic: float
    pvalue: float
    dof: int


def chi2_counts(ref_counts: ArrayLike, cur_counts: ArrayLike) -> Chi2Result:
    """Chi-square homogeneity test on a 2 x K table of counts (categories absent on both
    sides are dropped; one category left gives statistic 0, p-value 1)."""
    r = np.asarray(ref_counts, dtype=np.float64)
    c = np.asarray(cur_counts, dtype=np.float64)
    keep = (r + c) > 0
    r, c = r[keep], c[keep]
    k = r.size
    if k <= 1:
        return Chi2Result(0.0, 1.0, 0)
    nr, nc = r.sum(), c.sum()
    total = nr + nc
    col = r + c
    er, ec = col * nr / total, col * nc / total
    stat = float(np.sum((r - er) ** 2 / er) + np.sum((c - ec) ** 2 / ec))
    return Chi2Result(stat, float(chi2_sf(stat, float(k - 1))), k - 1)


def chi2(ref_codes: ArrayLike, cur_codes: ArrayLike) -> Chi2Result:
    """Chi-square test that two samples of category codes (ints >= 0) share a distribution.

    Negative codes mark missing values and are dropped (counted by the report).

    Examples
    --------
    >>> chi2([0, 0, 1, 1], [0, 0, 1, 1]).statistic
    0.0
    """
    ra, _ = count_codes(ref_codes, "ref_codes")
    rb, _ = count_codes(cur_codes, "cur_codes")
    k = max(ra.size, rb.size)
    return chi2_counts(np.pad(ra, (0, k - ra.size)), np.pad(rb, (0, k - rb.size)))
