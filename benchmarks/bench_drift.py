"""Drift kernels vs SciPy: KS on n vs n samples, and a KS+PSI pass over a feature table.

Full: KS on 1e7 vs 1e7; table of 1e6 rows x 20 numeric columns (KS + PSI per column) vs a
loop of ``scipy.stats.ks_2samp`` plus a NumPy PSI, and one memory pass (np.sum of every
column) as the floor. Smoke: 1e4 rows.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats as st

from benchmarks._harness import case, measure, parser, write
from engine.config.project import DriftConfig
from engine.kernels.drift import ks_2samp
from engine.kernels.report import report
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


def _table(n: int, n_num: int, n_cat: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {
        f"x{i}": rng.normal(shift * (i % 4), 1.0, n) for i in range(n_num)
    }
    cats = np.array(["a", "b", "c", "d", "e"], dtype=object)
    for i in range(n_cat):
        p = np.array([0.3, 0.3, 0.2, 0.1, 0.1]) if (shift and i == 0) else np.full(5, 0.2)
        cols[f"c{i}"] = rng.choice(cats, n, p=p)
    return pd.DataFrame(cols)


def _scipy_report(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, float]:
    """The same decisions with SciPy calls, column by column."""
    from scipy.spatial.distance import jensenshannon

    out = {}
    for c in ref.columns:
        a, b = ref[c].to_numpy(), cur[c].to_numpy()
        if a.dtype.kind == "O":
            k = pd.Index(np.unique(np.concatenate([a, b])))
            ra = pd.Series(a).value_counts().reindex(k, fill_value=0).to_numpy()
            rb = pd.Series(b).value_counts().reindex(k, fill_value=0).to_numpy()
            st.chi2_contingency(np.vstack([ra, rb]), correction=False)
            out[c] = float(jensenshannon(ra, rb, base=2))
        else:
            st.ks_2samp(a, b)
            out[c] = float(st.wasserstein_distance(a, b) / np.std(a))
    return out


def _evidently(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, float]:
    import warnings

    from evidently import Report
    from evidently.presets import DataDriftPreset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snap = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    out = {}
    for m in snap.dict()["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift"):
            out[cfg["column"]] = float(m["value"])
    return out


def _memory_pass(ref: pd.DataFrame, cur: pd.DataFrame, cols: list[str]) -> tuple[Any, Any]:
    return ref[cols].to_numpy().sum(0), cur[cols].to_numpy().sum(0)


def _report_values(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, float]:
    return {r.column: r.value for r in report(ref, cur)}


def _agree(ours: dict[str, float], ref: dict[str, float], cols: list[str]) -> bool:
    return all(abs(ours[c] - ref[c]) <= 1e-9 * max(1.0, abs(ref[c])) for c in cols)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    n_ks = 10_000 if args.smoke else 10_000_000
    n_tab, n_cols = (10_000, 5) if args.smoke else (1_000_000, 20)
    repeat = 3
    rng = np.random.default_rng(0)
    cases = []

    a, b = rng.normal(size=n_ks), rng.normal(0.01, 1.0, n_ks)
    ks_ours = measure(lambda: ks_2samp(a, b), repeat)
    ks_ref = measure(lambda: st.ks_2samp(a, b), repeat)
    same = abs(ks_ours.result.statistic - ks_ref.result.statistic) <= 1e-12
    cases.append(
        case(f"ks_2samp {n_ks:.0e} vs {n_ks:.0e}", ks_ours, "scipy.stats.ks_2samp", ks_ref, same)
    )

    cols = [f"x{i}" for i in range(n_cols)]
    ref_df = pd.DataFrame(rng.normal(size=(n_tab, n_cols)), columns=cols)
    cur_df = pd.DataFrame(rng.normal(0.05, 1.1, size=(n_tab, n_cols)), columns=cols)
    cfg = DriftConfig()
    tab_ours = measure(lambda: drift_check(ref_df, cur_df, cols, cfg), repeat)
    tab_ref = measure(lambda: _scipy_table(ref_df, cur_df, cfg.psi_bins), repeat)
    arr_r, arr_c = ref_df.to_numpy(), cur_df.to_numpy()
    floor = measure(lambda: (arr_r.sum(axis=0), arr_c.sum(axis=0)), 5)
    equal = all(
        abs(o.ks_statistic - r[0]) <= 1e-12 and abs(o.psi - r[1]) <= 1e-9
        for o, r in zip(tab_ours.result, tab_ref.result, strict=True)
    )
    cases.append(
        case(
            f"KS+PSI table {n_tab:.0e} rows x {n_cols} cols",
            tab_ours,
            "scipy ks_2samp + numpy PSI loop",
            tab_ref,
            equal,
            memory_pass_s=floor.median,
            vs_memory_pass=tab_ours.median / floor.median,
        )
    )
    # Table-level report: Evidently's method choices (Wasserstein normed / JS for n > 1000).
    for n_rows, with_evidently in (
        (10_000 if args.smoke else 1_000_000, True),
        (None if args.smoke else 10_000_000, False),
    ):
        if n_rows is None:
            continue
        ref_t, cur_t = _table(n_rows, 20, 5, 1, 0.0), _table(n_rows, 20, 5, 2, 0.05)
        rep = measure(partial(_report_values, ref_t, cur_t), repeat)
        # The SciPy loop and Evidently take minutes at full size: each is warmed on a
        # small slice, then timed twice (three times at the smoke size).
        slow = 3 if args.smoke else 2
        _scipy_report(ref_t.head(500), cur_t.head(500))
        sp = measure(partial(_scipy_report, ref_t, cur_t), slow, warmup=0)
        num_cols = [f"x{i}" for i in range(20)]
        floor = measure(partial(_memory_pass, ref_t, cur_t, num_cols), 5)
        label = f"drift report {n_rows:.0e} rows x (20 numeric + 5 categorical)"
        cases.append(
            case(
                label,
                rep,
                "SciPy loop (KS, Wasserstein, chi2, JS)",
                sp,
                _agree(rep.result, sp.result, list(sp.result)),
                memory_pass_s=floor.median,
                vs_memory_pass=rep.median / floor.median,
            )
        )
        if with_evidently:
            _evidently(ref_t.head(500), cur_t.head(500))
            ev = measure(partial(_evidently, ref_t, cur_t), slow, warmup=0)
            cases.append(
                case(
                    label,
                    rep,
                    "Evidently 0.7 DataDriftPreset",
                    ev,
                    _agree(rep.result, ev.result, num_cols),
                )
            )
    write("bench_drift", args.smoke, cases, args.out)


if __name__ == "__main__":
    main()
