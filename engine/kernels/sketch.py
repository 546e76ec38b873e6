"""Reference sketches (used by no stage yet: the monitoring loop is to profile each model's
training window with them): a reference reduced once to a small summary saved with the model, so
drift against it is one pass over the current data.

Numeric sketch: the reference's ``fine_bins`` inverted-CDF quantiles as edges, with the
exact reference counts ``< edge`` and ``<= edge``, plus the PSI edges (a subset of the fine
edges) and the reference's PSI bin counts. One pass over the current sample bins every
value (a binary search) and notes whether it sits exactly on an edge. Then:

- PSI is exact (the same edges and counts as :func:`engine.kernels.drift.psi`);
- KS is bracketed: ``ks_low`` is the exact ECDF gap at every edge and just below it; the
  true statistic lies in ``[ks_low, ks_low + ks_err]`` where ``ks_err`` is the largest
  reference mass strictly between two consecutive edges (<= 1/fine_bins + 1/n for a
  continuous reference). Pinned by tests/test_kernels_drift_more.py.

Categorical sketch: the reference's counts per category code (chi-square and JS are exact).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, cast

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike, NDArray

from engine.kernels import cores
from engine.kernels._checks import as_float_1d, count_codes
from engine.kernels.drift import (
    Chi2Result,
    chi2_counts,
    jensen_shannon_counts,
    ks_pvalue,
    psi_from_counts,
)


def _quantile_positions(n: int, bins: int) -> NDArray[np.int64]:
    i = np.arange(1, bins, dtype=np.int64)
    return np.clip((i * n + bins - 1) // bins - 1, 0, n - 1)


@dataclass(frozen=True)
class NumericSketch:
    n: int
    edges: list[float]
    le: list[int]  # reference count <= edge
    lt: list[int]  # reference count < edge
    psi_edges: list[float]
    psi_counts: list[int]
    nan: int

    @classmethod
    def from_sample(
        cls, ref: ArrayLike, fine_bins: int = 1000, psi_bins: int = 10
    ) -> NumericSketch:
        if fine_bins % psi_bins:
            raise ValueError(
                f"fine_bins ({fine_bins}) must be a multiple of psi_bins ({psi_bins}) so the "
                "PSI edges are fine edges. Fix: e.g. fine_bins=1000, psi_bins=10."
            )
        a, nan = as_float_1d(ref, "ref")
        a = np.sort(a)
        edges = np.unique(a[_quantile_positions(a.size, fine_bins)])
        psi_edges = np.unique(a[_quantile_positions(a.size, psi_bins)])
        le = np.searchsorted(a, edges, side="right")
        lt = np.searchsorted(a, edges, side="left")
        psi_counts = np.bincount(
            np.searchsorted(psi_edges, a, side="left"), minlength=psi_edges.size + 1
        )
        return cls(
            int(a.size),
            edges.tolist(),
            le.tolist(),
            lt.tolist(),
            psi_edges.tolist(),
            psi_counts.tolist(),
            nan,
        )

    @classmethod
    def coarse(
        cls, ref: ArrayLike, fine_bins: int = 1000, psi_bins: int = 10, digits: int = 4
    ) -> NumericSketch:
        """As :meth:`from_sample`, with every edge rounded to ``digits`` significant digits
        and the counts taken exactly at the rounded edges (so PSI stays exact and the KS
        bracket holds). A reference profile saved with a model is built this way: its edges
        are then nobody's value (an exact quantile is one row's value, which an erasure
        would have to find), at a cost in KS resolution of the rounding."""
        a, nan = as_float_1d(ref, "ref")
        a = np.sort(a)

        def rounded(v: NDArray[np.float64]) -> NDArray[np.float64]:
            return np.unique(np.array([float(f"{x:.{digits}g}") for x in v], np.float64))

        edges = rounded(a[_quantile_positions(a.size, fine_bins)])
        psi_edges = rounded(a[_quantile_positions(a.size, psi_bins)])  # still fine edges
        le = np.searchsorted(a, edges, side="right")
        lt = np.searchsorted(a, edges, side="left")
        psi_counts = np.bincount(
            np.searchsorted(psi_edges, a, side="left"), minlength=psi_edges.size + 1
        )
        return cls(
            int(a.size), edges.tolist(), le.tolist(), lt.tolist(), psi_edges.tolist(),
            psi_counts.tolist(), nan,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @cached_property
    def binning(
        self,
    ) -> tuple[NDArray[np.float64], tuple[NDArray[np.signedinteger[Any]], float, float]]:
        """Edges as an array and the cell table, built once per sketch object."""
        edges = np.asarray(self.edges, dtype=np.float64)
        return edges, _grid(edges, CELLS_PER_BIN * edges.size)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumericSketch:
        return cls(**d)


@njit(cache=True, nogil=True)
def _bin_chunk(
    cur: NDArray[np.float64],
    edges: NDArray[np.float64],
    code: NDArray[np.signedinteger[Any]],
    lo_v: float,
    scale: float,
    hist: NDArray[np.int64],
) -> int:
    """Bin a chunk. ``hist[2 i]`` counts values strictly between edges ``i-1`` and ``i``,
    ``hist[2 i + 1]`` values equal to edge ``i``.

    A fine uniform grid over the edges gives each value a cell. ``code[c] >= 0``: no edge
    lies in the cell (nor within rounding distance of it), so every value of the cell has
    ``code[c]`` edges below it, with no search and no compare. ``code[c] < 0``: the cell
    holds an edge; scan forward from ``-code[c] - 1``, the first edge that can be >= value.
    With 128 cells per fine bin few values take the scan, so the loop is a lookup and an
    increment per value.
    """
    g = code.size
    k = edges.size
    nan = 0
    for j in range(cur.size):
        x = cur[j]
        if x != x:
            nan += 1
            continue
        c = int(min(max((x - lo_v) * scale, 0.0), g - 1.0))
        i = np.int64(code[c])
        if i >= 0:
            hist[2 * i] += 1
        else:
            i = -i - 1
            while i < k and edges[i] < x:
                i += 1
            hist[2 * i + (1 if (i < k and edges[i] == x) else 0)] += 1
    return nan


@njit(cache=True, parallel=True)
def _bin_pass(
    cur: NDArray[np.float64],
    edges: NDArray[np.float64],
    code: NDArray[np.signedinteger[Any]],
    lo_v: float,
    scale: float,
    n_chunks: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    k = edges.size
    hist = np.zeros((n_chunks, 2 * (k + 1)), dtype=np.int64)
    nans = np.zeros(n_chunks, dtype=np.int64)
    step = (cur.size + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        lo = c * step
        hi = min(cur.size, lo + step)
        if lo < hi:
            nans[c] = _bin_chunk(cur[lo:hi], edges, code, lo_v, scale, hist[c])
    total = hist.sum(axis=0)
    return total[0::2].copy(), total[1::2].copy(), int(nans.sum())


CELLS_PER_BIN = 128


def _grid(
    edges: NDArray[np.float64], cells: int
) -> tuple[NDArray[np.signedinteger[Any]], float, float]:
    """The cell table of :func:`_bin_chunk`. A cell is "clean" when no edge lies within
    ``margin`` of it, where ``margin`` bounds the rounding of ``(x - lo) * scale``; clean
    cells map straight to their bin, the others to a scan start."""
    lo_v, hi_v = float(edges[0]), float(edges[-1])
    dtype = np.int16 if edges.size < 32_000 else np.int32
    if hi_v <= lo_v:
        return np.full(1, -1, dtype=dtype), lo_v, 0.0
    scale = cells / (hi_v - lo_v)
    margin = 8 * np.finfo(np.float64).eps * max(abs(lo_v), abs(hi_v)) + (hi_v - lo_v) * 1e-9
    starts = lo_v + np.arange(cells + 1) / scale
    first = np.searchsorted(edges, starts[:-1] - margin, side="left")
    upto = np.searchsorted(edges, starts[1:] + margin, side="right")
    code = np.where(upto == first, first, -first - 1).astype(dtype)
    return cast(NDArray[np.signedinteger[Any]], code), lo_v, scale


@dataclass(frozen=True)
class SketchDrift:
    ks_low: float
    ks_err: float
    ks_pvalue: float
    psi: float
    n_cur: int
    nan_cur: int


def sketch_counts(
    sk: NumericSketch, cur: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    """Counts of ``cur`` on the sketch's fine bins: per bin the values strictly inside
    (``inner``) and equal to its upper edge (``atom``), and the NaNs. Counts of parts of a
    sample add up to the counts of the whole: the monitor merges them per segment."""
    x = np.ascontiguousarray(cur, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"'cur' must be 1-D, got shape {x.shape}.")
    edges, (code, lo_v, scale) = sk.binning
    chunks = max(1, min(cores.allowed(), x.size // 65_536))
    with cores.numba_threads():
        inner, atom, nan = _bin_pass(x, edges, code, lo_v, scale, chunks)
    return inner, atom, int(nan)


def drift_vs_sketch(sk: NumericSketch, cur: ArrayLike) -> SketchDrift:
    """KS bracket and exact PSI of ``cur`` against a reference sketch, in one pass."""
    x = np.ascontiguousarray(cur, dtype=np.float64)
    return drift_from_counts(sk, *sketch_counts(sk, x), n_values=int(x.size))


def drift_from_counts(
    sk: NumericSketch,
    inner: NDArray[np.int64],
    atom: NDArray[np.int64],
    nan: int,
    *,
    n_values: int,
) -> SketchDrift:
    """:func:`drift_vs_sketch` from the counts of :func:`sketch_counts` (``n_values``
    values, NaNs included)."""
    edges = np.asarray(sk.edges, dtype=np.float64)
    # PSI edges are fine edges: a value's PSI bin follows from its fine bin.
    psi_e = np.asarray(sk.psi_edges)
    psi_lt = np.searchsorted(psi_e, edges, side="left")  # PSI edges < e_j
    psi_le = np.searchsorted(psi_e, edges, side="right")  # PSI edges <= e_j
    inner_to = np.concatenate(([0], psi_le))  # inner values of bin j lie above e_{j-1}
    psi_c = np.bincount(inner_to, weights=inner, minlength=psi_e.size + 1)
    psi_c += np.bincount(psi_lt, weights=atom[:-1], minlength=psi_e.size + 1)
    m = int(n_values - nan)
    if m == 0:
        raise ValueError(f"'cur' has no finite values ({nan} NaN).")
    n = sk.n
    le, lt = np.asarray(sk.le, dtype=np.float64), np.asarray(sk.lt, dtype=np.float64)
    # Bin j < k holds values in (e_{j-1}, e_j) ("inner") or equal to e_j ("atom");
    # bin k holds values above the last edge. Current ECDF just below and at each edge:
    ci, ca = np.cumsum(inner[:-1]), np.cumsum(atom[:-1])
    below = ci + ca - atom[:-1]
    at = ci + ca
    ks_low = float(max(np.abs(lt / n - below / m).max(), np.abs(le / n - at / m).max()))
    # Reference mass strictly between consecutive edges (and in the two tails).
    inner_ref = np.concatenate(([lt[0]], lt[1:] - le[:-1], [n - le[-1]]))
    ks_err = float(inner_ref.max() / n)
    psi = psi_from_counts(sk.psi_counts, n, psi_c, m)
    return SketchDrift(ks_low, ks_err, ks_pvalue(ks_low, n, m), psi, m, int(nan))


@dataclass(frozen=True)
class CategoricalSketch:
    counts: list[int]

    @classmethod
    def from_codes(cls, codes: ArrayLike, n_categories: int | None = None) -> CategoricalSketch:
        counts, _ = count_codes(codes, "codes")
        k = max(counts.size, n_categories or 0)
        return cls(np.pad(counts, (0, k - counts.size)).tolist())

    def drift(self, cur_codes: ArrayLike) -> tuple[Chi2Result, float]:
        cur, _ = count_codes(cur_codes, "cur_codes")
        k = max(len(self.counts), cur.size)
        r = np.zeros(k)
        r[: len(self.counts)] = self.counts
        c = np.pad(cur, (0, k - cur.size))
        return chi2_counts(r, c), jensen_shannon_counts(r, c)
