"""Feature drift between a reference window and a current window, with the Numba kernels.

Decision rule (per numeric column): drifted when the shift is both statistically
significant (KS p-value < ``ks_alpha``) and material (PSI >= ``psi_threshold``; 0.2 is the
customary "significant shift" level). Requiring both keeps large samples, where every
tiny shift is significant, from flagging everything.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numba
import numpy as np
import pandas as pd

from engine.config import DriftConfig
from engine.kernels.drift import ks_pvalue
from engine.kernels.report import numeric_column_stats


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    ks_statistic: float
    ks_pvalue: float
    psi: float
    drifted: bool
    n_ref: int
    n_cur: int
    nan_ref: int
    nan_cur: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def numeric_columns(df: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if c in df and pd.api.types.is_numeric_dtype(df[c])]


def drift_check(
    ref: pd.DataFrame, cur: pd.DataFrame, columns: list[str], cfg: DriftConfig
) -> list[ColumnDrift]:
    """KS and PSI per numeric column; each column is sorted once and shared by both."""
    if ref.empty or cur.empty:
        raise ValueError(
            f"drift check needs rows in both windows, got reference={len(ref)} and "
            f"current={len(cur)}. Fix: check drift.current_from and train.until."
        )
    cols = numeric_columns(ref, columns)
    pairs = [
        (
            ref[c].to_numpy(dtype=np.float64, na_value=np.nan),
            cur[c].to_numpy(dtype=np.float64, na_value=np.nan),
        )
        for c in cols
    ]
    # One sort per side and one fused walk per column (KS, PSI), columns in parallel threads.
    with ThreadPoolExecutor(max_workers=max(1, numba.get_num_threads())) as pool:
        stats = list(pool.map(lambda ab: numeric_column_stats(ab[0], ab[1], cfg.psi_bins), pairs))
    out = []
    for col, (a, b), (d, _, p, _, n, m) in zip(cols, pairs, stats, strict=True):
        if n == 0 or m == 0:
            continue
        pv = ks_pvalue(d, n, m)
        out.append(
            ColumnDrift(
                column=col,
                ks_statistic=d,
                ks_pvalue=pv,
                psi=p,
                drifted=bool(pv < cfg.ks_alpha and p >= cfg.psi_threshold),
                n_ref=n,
                n_cur=m,
                nan_ref=int(a.size - n),
                nan_cur=int(b.size - m),
            )
        )
    return out
