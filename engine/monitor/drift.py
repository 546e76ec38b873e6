"""Feature drift between a reference window and a current window, with the Numba kernels.

Decision rule (:func:`decide`, the one rule of ``insight drift`` and ``insight monitor``),
per column, a shift that is both statistically significant and material (requiring both
keeps large samples, where every tiny shift is significant, from flagging everything):

- the test's p-value (KS for numbers, chi-square for categories), Benjamini-Hochberg
  adjusted across the columns compared, is below ``drift.fdr``;
- and the distance is material: PSI >= ``psi_threshold`` (0.2, the customary "significant
  shift" level) or Jensen-Shannon (base 2) >= ``js_threshold`` (0.1, Evidently's default).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from engine.config.project import DriftConfig
from engine.errors import DataError
from engine.kernels import cores
from engine.kernels.drift import ks_pvalue
from engine.kernels.report import numeric_column_stats, report


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # numeric | categorical
    ks_statistic: float | None
    ks_pvalue: float | None
    psi: float | None
    chi2_pvalue: float | None
    jensen_shannon: float | None
    drifted: bool
    n_ref: int
    n_cur: int
    nan_ref: int
    nan_cur: int
    p_adjusted: float | None = None  # the test's p-value, BH-adjusted across the columns

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def test_pvalue(self) -> float:
        """The significance part of the rule: KS or chi-square p-value."""
        p = self.ks_pvalue if self.kind == "numeric" else self.chi2_pvalue
        return float("nan") if p is None else float(p)

    @property
    def distance(self) -> float:
        """The materiality part of the rule: PSI or Jensen-Shannon distance."""
        d = self.psi if self.kind == "numeric" else self.jensen_shannon
        return float("nan") if d is None else float(d)


def decide(
    p_values: list[float], distances: list[float], kinds: list[str], cfg: DriftConfig
) -> tuple[list[float], list[bool]]:
    """BH-adjusted p-values and the drift verdict per column (``kinds``: numeric |
    categorical, which picks the distance's threshold)."""
    from engine.kernels.report import benjamini_hochberg

    adj = [float(x) for x in benjamini_hochberg(p_values)]
    limits = [cfg.psi_threshold if k == "numeric" else cfg.js_threshold for k in kinds]
    return adj, [
        bool(a < cfg.fdr and d >= t) for a, d, t in zip(adj, distances, limits, strict=True)
    ]


def numeric_columns(df: pd.DataFrame, columns: list[str]) -> list[str]:
    return [
        c
        for c in columns
        if c in df
        and pd.api.types.is_numeric_dtype(df[c])
        and not pd.api.types.is_bool_dtype(df[c])
    ]


def categorical_columns(df: pd.DataFrame, columns: list[str]) -> list[str]:
    return [
        c
        for c in columns
        if c in df
        and (
            pd.api.types.is_object_dtype(df[c])
            or pd.api.types.is_string_dtype(df[c])
            or pd.api.types.is_bool_dtype(df[c])
            or isinstance(df[c].dtype, pd.CategoricalDtype)
        )
    ]


def drift_check(
    ref: pd.DataFrame, cur: pd.DataFrame, columns: list[str], cfg: DriftConfig
) -> list[ColumnDrift]:
    """KS + PSI per numeric column (each sorted once, shared by both), chi-square + JS per
    categorical column; columns in the order given."""
    if ref.empty or cur.empty:
        raise DataError(
            f"drift check needs rows in both windows, got reference={len(ref)} and "
            f"current={len(cur)}. Fix: check drift.current_from and train.until."
        )
    num = numeric_columns(ref, columns)
    cat = categorical_columns(ref, columns)
    out: dict[str, ColumnDrift] = {}
    pairs = [
        (
            ref[c].to_numpy(dtype=np.float64, na_value=np.nan),
            cur[c].to_numpy(dtype=np.float64, na_value=np.nan),
        )
        for c in num
    ]
    # One sort per side and one fused walk per column (KS, PSI), columns in parallel threads.
    with ThreadPoolExecutor(max_workers=cores.allowed()) as pool:
        stats = list(pool.map(lambda ab: numeric_column_stats(ab[0], ab[1], cfg.psi_bins), pairs))
    for col, (a, b), st in zip(num, pairs, stats, strict=True):
        if st.n_ref == 0 or st.n_cur == 0:
            continue
        pv = ks_pvalue(st.ks_statistic, st.n_ref, st.n_cur)
        out[col] = ColumnDrift(
            column=col,
            kind="numeric",
            ks_statistic=st.ks_statistic,
            ks_pvalue=pv,
            psi=st.psi,
            chi2_pvalue=None,
            jensen_shannon=None,
            drifted=False,  # decided below, across columns
            n_ref=st.n_ref,
            n_cur=st.n_cur,
            nan_ref=int(a.size - st.n_ref),
            nan_cur=int(b.size - st.n_cur),
        )
    usable = [c for c in cat if ref[c].notna().any() and cur[c].notna().any()]
    if usable:
        as_text = {c: (ref[c].astype(object), cur[c].astype(object)) for c in usable}
        reps = report(
            {c: v[0].to_numpy() for c, v in as_text.items()},
            {c: v[1].to_numpy() for c, v in as_text.items()},
            usable,
            method="chi2",
            categorical=usable,
        )
        for r in reps:
            assert r.chi2_pvalue is not None and r.jensen_shannon is not None
            out[r.column] = ColumnDrift(
                column=r.column,
                kind="categorical",
                ks_statistic=None,
                ks_pvalue=None,
                psi=None,
                chi2_pvalue=r.chi2_pvalue,
                jensen_shannon=r.jensen_shannon,
                drifted=False,
                n_ref=r.n_ref,
                n_cur=r.n_cur,
                nan_ref=r.missing_ref,
                nan_cur=r.missing_cur,
            )
    found = [out[c] for c in columns if c in out]
    adj, verdict = decide(
        [c.test_pvalue for c in found], [c.distance for c in found], [c.kind for c in found], cfg
    )
    return [
        replace(c, p_adjusted=a, drifted=v) for c, a, v in zip(found, adj, verdict, strict=True)
    ]
