"""Feature drift between a reference window and a current window, with the Numba kernels.

Decision rule (per numeric column): drifted when the shift is both statistically
significant (KS p-value < ``ks_alpha``) and material (PSI >= ``psi_threshold``; 0.2 is the
customary "significant shift" level). Requiring both keeps large samples, where every
tiny shift is significant, from flagging everything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from engine.config import DriftConfig
from engine.kernels.drift import ks_2samp_sorted, psi_sorted


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
    out = []
    for col in numeric_columns(ref, columns):
        a = ref[col].to_numpy(dtype=np.float64, na_value=np.nan)
        b = cur[col].to_numpy(dtype=np.float64, na_value=np.nan)
        na, nb = np.isnan(a), np.isnan(b)
        a_s, b_s = np.sort(a[~na]), np.sort(b[~nb])
        if a_s.size == 0 or b_s.size == 0:
            continue
        ks = ks_2samp_sorted(a_s, b_s)
        p = psi_sorted(a_s, b_s, cfg.psi_bins)
        out.append(
            ColumnDrift(
                column=col,
                ks_statistic=ks.statistic,
                ks_pvalue=ks.pvalue,
                psi=p,
                drifted=bool(ks.pvalue < cfg.ks_alpha and p >= cfg.psi_threshold),
                n_ref=int(a_s.size),
                n_cur=int(b_s.size),
                nan_ref=int(na.sum()),
                nan_cur=int(nb.sum()),
            )
        )
    return out
