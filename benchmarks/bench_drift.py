"""Drift kernels vs SciPy: KS on n vs n samples, and a KS+PSI pass over a feature table.

Full: KS on 1e7 vs 1e7; table of 1e6 rows x 20 numeric columns (KS + PSI per column) vs a
loop of ``scipy.stats.ks_2samp`` plus a NumPy PSI, and one memory pass (np.sum of every
column) as the floor. Smoke: 1e4 rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats as st

from benchmarks._harness import best_of, parser, write
from engine.config import DriftConfig
from engine.kernels.drift import ks_2samp, psi
from engine.monitor.drift import drift_check


def _scipy_table(ref: pd.DataFrame, cur: pd.DataFrame, bins: int) -> list[tuple[float, float]]:
    out = []
    for c in ref.columns:
        a, b = ref[c].to_numpy(), cur[c].to_numpy()
        d = st.ks_2samp(a, b).statistic
        edges = np.unique(np.quantile(a, np.arange(1, bins) / bins, method="inverted_cdf"))
        p = np.bincount(np.searchsorted(edges, a), minlength=edges.size + 1) / a.size
        q = np.bincount(np.searchsorted(edges, b), minlength=edges.size + 1) / b.size
        p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
        out.append((float(d), float(np.sum((q - p) * np.log(q / p)))))
    return out


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    n_ks = 10_000 if args.smoke else 10_000_000
    n_tab, n_cols = (10_000, 5) if args.smoke else (1_000_000, 20)
    repeat = 1 if not args.smoke else 2
    rng = np.random.default_rng(0)
    cases = []

    a, b = rng.normal(size=n_ks), rng.normal(0.01, 1.0, n_ks)
    ks_2samp(a[:100], b[:100])  # compile (cached on disk after the first run)
    t_ours, ours = best_of(lambda: ks_2samp(a, b), repeat)
    t_ref, ref = best_of(lambda: st.ks_2samp(a, b), repeat)
    cases.append(
        {
            "case": f"ks_2samp {n_ks:.0e} vs {n_ks:.0e}",
            "engine_s": t_ours,
            "reference": "scipy.stats.ks_2samp",
            "reference_s": t_ref,
            "ratio": t_ref / t_ours,
            "equal": bool(abs(ours.statistic - ref.statistic) <= 1e-12),
        }
    )

    cols = [f"x{i}" for i in range(n_cols)]
    ref_df = pd.DataFrame(rng.normal(size=(n_tab, n_cols)), columns=cols)
    cur_df = pd.DataFrame(rng.normal(0.05, 1.1, size=(n_tab, n_cols)), columns=cols)
    cfg = DriftConfig()
    psi(ref_df["x0"].to_numpy()[:100], cur_df["x0"].to_numpy()[:100])
    t_ours, ours_t = best_of(lambda: drift_check(ref_df, cur_df, cols, cfg), repeat)
    t_ref, ref_t = best_of(lambda: _scipy_table(ref_df, cur_df, cfg.psi_bins), repeat)
    arr_r, arr_c = ref_df.to_numpy(), cur_df.to_numpy()
    t_floor, _ = best_of(lambda: (arr_r.sum(axis=0), arr_c.sum(axis=0)), 3)
    equal = all(
        abs(o.ks_statistic - r[0]) <= 1e-12 and abs(o.psi - r[1]) <= 1e-9
        for o, r in zip(ours_t, ref_t, strict=True)
    )
    cases.append(
        {
            "case": f"KS+PSI table {n_tab:.0e} rows x {n_cols} cols",
            "engine_s": t_ours,
            "reference": "scipy ks_2samp + numpy PSI loop",
            "reference_s": t_ref,
            "ratio": t_ref / t_ours,
            "equal": equal,
            "memory_pass_s": t_floor,
            "vs_memory_pass": t_ours / t_floor,
        }
    )
    write("bench_drift", args.smoke, cases, args.out)


if __name__ == "__main__":
    main()
