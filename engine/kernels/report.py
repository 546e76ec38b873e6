"""Drift report over a table (the drift stage uses :func:`numeric_column_stats`; the full
report is used by the benchmarks and, next, the monitoring loop): one method per column, chosen by type and size.

Defaults follow Evidently's data-drift preset, which NannyML's univariate defaults resemble:

| column | reference rows <= 1000 | reference rows > 1000 |
|---|---|---|
| numeric | KS test, drift if p < alpha | Wasserstein distance / std(ref), drift if >= 0.1 |
| categorical | chi-square test, drift if p < alpha | Jensen-Shannon distance (base 2), drift if >= 0.1 |

Every numeric column also gets KS (statistic, p-value), Wasserstein and PSI from the same
sort; every categorical column gets chi-square and JS. ``correction`` ("bonferroni" or
"bh", Benjamini-Hochberg) adjusts the p-values of the columns decided by a test.
Numeric columns are sorted once each, in parallel threads across columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from engine.kernels import cores
from engine.kernels._objects import _factorized_counts, object_counts
from engine.kernels._sort import sort_f64
from engine.kernels.drift import (
    PSI_EPS,
    _ecdf_walk,
    _js_counts,
    _psi_sorted,
    chi2_counts,
    ks_pvalue,
    psi_edges,
)


class Table(Protocol):
    """Column name -> 1-D array: a dict of arrays or a pandas DataFrame."""

    def keys(self) -> Iterable[Any]: ...
    def __getitem__(self, key: str, /) -> Any: ...
    def __contains__(self, key: object, /) -> bool: ...


Method = Literal["auto", "ks", "wasserstein", "chi2", "jensen_shannon"]
SMALL_N = 1000
DISTANCE_THRESHOLD = 0.1


@dataclass(frozen=True)
class ColumnReport:
    column: str
    kind: Literal["numeric", "categorical"]
    method: str
    value: float  # the statistic the decision uses (p-value or distance)
    threshold: float
    drifted: bool
    ks_statistic: float | None
    ks_pvalue: float | None
    wasserstein_normed: float | None
    psi: float | None
    chi2_pvalue: float | None
    jensen_shannon: float | None
    n_ref: int
    n_cur: int
    missing_ref: int
    missing_cur: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class NumericStats(NamedTuple):
    """One numeric column, reference vs current, from one sort of each side."""

    ks_statistic: float
    wasserstein: float
    psi: float
    std_ref: float
    n_ref: int
    n_cur: int


def numeric_column_stats(ref: ArrayLike, cur: ArrayLike, bins: int = 10) -> NumericStats:
    """KS D, Wasserstein, PSI and std(ref) from one sort of each side; NaN dropped (counts
    are of the finite values; all zero when a side has none).

    The sort is ``sort_f64`` (NumPy's or a Numba radix sort, the faster on this host; both
    release the GIL); the walks are ``nogil`` Numba, so columns run in parallel threads.

    Examples
    --------
    >>> s = numeric_column_stats([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    >>> round(s.ks_statistic, 4), s.n_ref
    (0.3333, 3)
    """
    ra = np.asarray(ref, dtype=np.float64)
    ca = np.asarray(cur, dtype=np.float64)
    a = sort_f64(ra[~np.isnan(ra)])
    b = sort_f64(ca[~np.isnan(ca)])
    if a.size == 0 or b.size == 0:
        return NumericStats(0.0, 0.0, 0.0, 0.0, int(a.size), int(b.size))
    d, w = _ecdf_walk(a, b)
    p = _psi_sorted(a, b, psi_edges(a, bins), PSI_EPS)
    return NumericStats(d, w, p, float(a.std()), int(a.size), int(b.size))


def benjamini_hochberg(p: ArrayLike) -> NDArray[np.float64]:
    """Benjamini-Hochberg adjusted p-values (monotone, capped at 1): the engine's one BH,
    used by the drift report, ``insight drift`` and ``insight monitor`` (pinned to
    statsmodels' ``multipletests(method="fdr_bh")`` in tests/test_monitor_drift.py)."""
    a = np.asarray(p, dtype=np.float64)
    if a.size == 0:
        return a
    order = np.argsort(a, kind="stable")
    ranked = a[order] * a.size / np.arange(1, a.size + 1)
    adj = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(a)
    out[order] = np.minimum(adj, 1.0)
    return out


def _adjust(p: NDArray[np.float64], how: str | None) -> NDArray[np.float64]:
    if how is None or p.size == 0:
        return p
    if how == "bonferroni":
        return np.minimum(p * p.size, 1.0)
    if how == "bh":
        return benjamini_hochberg(p)
    raise ValueError(f"correction must be None, 'bonferroni' or 'bh', got {how!r}.")


def _is_categorical(x: NDArray[Any]) -> bool:
    return x.dtype.kind in "OUSb"


def _category_counts(
    ref: NDArray[Any], cur: NDArray[Any]
) -> tuple[NDArray[np.float64], NDArray[np.float64], int, int]:
    """Aligned category counts of both sides; None/NaN are missing (dropped, counted).

    Object columns count object identities first (:func:`engine.kernels._objects.object_counts`,
    ~13x faster than hashing every string); other dtypes are factorized by pandas (hash-based,
    ~10x faster than np.unique on strings), the one non-NumPy import in the kernels, kept local
    to this table-level wrapper.
    """
    if ref.dtype == object and cur.dtype == object:
        return object_counts(ref, cur)
    _, rc, cc, rn, cn = _factorized_counts(ref, cur)
    return rc, cc, rn, cn


def report(
    ref_table: Table,
    cur_table: Table,
    columns: list[str] | None = None,
    *,
    method: Method = "auto",
    alpha: float = 0.05,
    distance_threshold: float = DISTANCE_THRESHOLD,
    psi_bins: int = 10,
    correction: Literal["bonferroni", "bh"] | None = None,
    categorical: list[str] | None = None,
) -> list[ColumnReport]:
    """Drift per column between two tables (mappings of column name -> 1-D array).

    A pandas DataFrame works as is. Columns of object/string/bool dtype, and those named in
    ``categorical``, are categorical; the rest numeric.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> r = report({"x": rng.normal(size=5000)}, {"x": rng.normal(1, 1, 5000)})
    >>> r[0].method, r[0].drifted
    ('wasserstein', True)
    """
    cols = list(columns if columns is not None else ref_table.keys())
    missing = [c for c in cols if c not in cur_table or c not in ref_table]
    if missing:
        raise ValueError(f"columns {missing} are not in both tables. Fix: pass columns=[...].")
    cat_set = set(categorical or [])
    arrays = {c: (np.asarray(ref_table[c]), np.asarray(cur_table[c])) for c in cols}
    num = [c for c in cols if c not in cat_set and not _is_categorical(arrays[c][0])]
    cat = [c for c in cols if c not in num]
    out: dict[str, ColumnReport] = {}
    if num:
        pairs = [
            (np.asarray(arrays[c][0], dtype=np.float64), np.asarray(arrays[c][1], dtype=np.float64))
            for c in num
        ]
        for c, (ra, ca) in zip(num, pairs, strict=True):
            if np.isinf(ra).any() or np.isinf(ca).any():
                raise ValueError(f"column '{c}' holds infinite values. Fix: clip or drop them.")
        with ThreadPoolExecutor(max_workers=cores.allowed()) as pool:
            stats = list(pool.map(lambda rc: numeric_column_stats(rc[0], rc[1], psi_bins), pairs))
        for i, c in enumerate(num):
            d_i, w_i, p_i, s_i, n, m = stats[i]
            if n == 0 or m == 0:
                raise ValueError(
                    f"column '{c}': no finite values in {'reference' if n == 0 else 'current'}."
                )
            p = ks_pvalue(d_i, n, m)
            # A constant reference has std 0: normalize by 1 instead of dividing by zero.
            w = w_i / s_i if s_i > 0 else w_i
            use = method if method != "auto" else ("ks" if n <= SMALL_N else "wasserstein")
            if use not in ("ks", "wasserstein"):
                raise ValueError(f"method '{method}' does not apply to numeric column '{c}'.")
            value, thr = (p, alpha) if use == "ks" else (w, distance_threshold)
            out[c] = ColumnReport(
                c,
                "numeric",
                use,
                value,
                thr,
                False,
                d_i,
                p,
                w,
                p_i,
                None,
                None,
                n,
                m,
                int(arrays[c][0].size - n),
                int(arrays[c][1].size - m),
            )
    for c in cat:
        rc, cc, mr, mc = _category_counts(*arrays[c])
        n_ref, n_cur = int(rc.sum()), int(cc.sum())
        if n_ref == 0 or n_cur == 0:
            raise ValueError(f"column '{c}': no non-missing values on one side.")
        ch = chi2_counts(rc, cc)
        js = float(_js_counts(rc, cc, np.log(2.0)))
        use = method if method != "auto" else ("chi2" if n_ref <= SMALL_N else "jensen_shannon")
        if use not in ("chi2", "jensen_shannon"):
            raise ValueError(f"method '{method}' does not apply to categorical column '{c}'.")
        value, thr = (ch.pvalue, alpha) if use == "chi2" else (js, distance_threshold)
        out[c] = ColumnReport(
            c,
            "categorical",
            use,
            value,
            thr,
            False,
            None,
            None,
            None,
            None,
            ch.pvalue,
            js,
            n_ref,
            n_cur,
            mr,
            mc,
        )
    tested = [c for c in cols if out[c].method in ("ks", "chi2")]
    adj = _adjust(np.array([out[c].value for c in tested]), correction)
    for c, p in zip(tested, adj, strict=True):
        out[c] = _with(out[c], value=float(p))
    return [
        _with(
            out[c],
            drifted=bool(
                out[c].value < out[c].threshold
                if out[c].method in ("ks", "chi2")
                else out[c].value >= out[c].threshold
            ),
        )
        for c in cols
    ]


def _with(r: ColumnReport, **kw: Any) -> ColumnReport:
    return ColumnReport(**{**asdict(r), **kw})
