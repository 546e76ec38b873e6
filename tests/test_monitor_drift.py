"""engine.monitor.drift.drift_check (the demo's and the drift command's check) against SciPy's
KS, a NumPy PSI, SciPy's chi-square and Jensen-Shannon, with missing values, on several
seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

from engine.config.project import DriftConfig
from engine.monitor.drift import drift_check


def _psi(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    edges = np.unique(np.quantile(a, np.arange(1, bins) / bins, method="inverted_cdf"))
    p = np.bincount(np.searchsorted(edges, a), minlength=edges.size + 1) / a.size
    q = np.bincount(np.searchsorted(edges, b), minlength=edges.size + 1) / b.size
    p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


@pytest.mark.parametrize("seed", range(6))
def test_drift_check_matches_scipy_and_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(50, 5000)), int(rng.integers(50, 5000))
    cats = np.array(["a", "b", "c", "d"], dtype=object)
    ref = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "k": rng.integers(0, 5, n).astype(float),
            "s": rng.choice(cats, n, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )
    cur = pd.DataFrame(
        {
            "x": rng.normal(0.3 * (seed % 2), 1, m),
            "k": rng.integers(0, 6, m).astype(float),
            "s": rng.choice(
                cats, m, p=[0.25, 0.25, 0.25, 0.25] if seed % 2 else [0.4, 0.3, 0.2, 0.1]
            ),
        }
    )
    ref.loc[rng.random(n) < 0.1, "x"] = np.nan
    cur.loc[rng.random(m) < 0.05, "s"] = None
    cfg = DriftConfig()
    got = {c.column: c for c in drift_check(ref, cur, ["x", "k", "s"], cfg)}
    assert set(got) == {"x", "k", "s"}
    s = got["s"]
    a, b = ref["s"].value_counts(), cur["s"].dropna().value_counts()
    table = np.vstack([a.reindex(cats, fill_value=0), b.reindex(cats, fill_value=0)])
    from scipy.spatial.distance import jensenshannon

    assert s.kind == "categorical" and s.nan_cur == int(cur["s"].isna().sum())
    assert s.chi2_pvalue == pytest.approx(
        st.chi2_contingency(table, correction=False).pvalue, rel=1e-9, abs=1e-300
    )
    assert s.jensen_shannon == pytest.approx(
        float(jensenshannon(table[0], table[1], base=2)), abs=1e-9
    )
    assert s.drifted == (s.p_adjusted < cfg.fdr and s.jensen_shannon >= cfg.js_threshold)
    for col in ("x", "k"):
        a, b = ref[col].dropna().to_numpy(), cur[col].dropna().to_numpy()
        r = got[col]
        assert r.ks_statistic == pytest.approx(st.ks_2samp(a, b).statistic, abs=1e-12)
        assert r.psi == pytest.approx(_psi(a, b, cfg.psi_bins), abs=1e-9)
        assert (r.n_ref, r.nan_ref) == (a.size, int(ref[col].isna().sum()))
        assert r.drifted == (r.p_adjusted < cfg.fdr and r.psi >= cfg.psi_threshold)


@pytest.mark.parametrize("seed", range(6))
def test_one_drift_rule_for_insight_drift_and_the_monitor(seed: int) -> None:
    """The one Benjamini-Hochberg equals statsmodels' fdr_bh; `insight drift` and the
    monitor decide with the same function and the same defaults (drift.fdr)."""
    from statsmodels.stats.multitest import multipletests

    from engine.config.project import DriftConfig
    from engine.kernels.report import benjamini_hochberg
    from engine.monitor.drift import decide

    rng = np.random.default_rng(seed)
    p = rng.random(25) ** 3
    want = multipletests(p, method="fdr_bh")[1]
    np.testing.assert_allclose(benjamini_hochberg(p), want, rtol=1e-12)
    cfg = DriftConfig()
    dist = rng.random(25) * 0.4
    kinds = rng.choice(["numeric", "categorical"], 25).tolist()
    _adj, verdict = decide(list(p), list(dist), kinds, cfg)
    limit = np.where(np.array(kinds) == "numeric", cfg.psi_threshold, cfg.js_threshold)
    assert verdict == ((want < cfg.fdr) & (dist >= limit)).tolist()


def test_the_old_drift_settings_say_where_they_went() -> None:
    from pydantic import ValidationError

    from engine.config.monitor import MonitorConfig
    from engine.config.project import DriftConfig

    with pytest.raises(ValidationError, match=r"replaced by drift\.fdr"):
        DriftConfig.model_validate({"ks_alpha": 0.01})
    with pytest.raises(ValidationError, match=r"moved to drift\.fdr"):
        MonitorConfig.model_validate({"fdr": 0.05})
