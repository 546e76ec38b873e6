"""engine.monitor.drift.drift_check (the demo's and the drift command's check) against SciPy's
KS and a NumPy PSI, with missing values, on several seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

from engine.config import DriftConfig
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
    ref = pd.DataFrame(
        {"x": rng.normal(size=n), "k": rng.integers(0, 5, n).astype(float), "s": ["a"] * n}
    )
    cur = pd.DataFrame(
        {
            "x": rng.normal(0.3 * (seed % 2), 1, m),
            "k": rng.integers(0, 6, m).astype(float),
            "s": ["b"] * m,
        }
    )
    ref.loc[rng.random(n) < 0.1, "x"] = np.nan
    cfg = DriftConfig()
    got = {c.column: c for c in drift_check(ref, cur, ["x", "k", "s"], cfg)}
    assert set(got) == {"x", "k"}, "non-numeric columns are skipped"
    for col in ("x", "k"):
        a, b = ref[col].dropna().to_numpy(), cur[col].dropna().to_numpy()
        r = got[col]
        assert r.ks_statistic == pytest.approx(st.ks_2samp(a, b).statistic, abs=1e-12)
        assert r.psi == pytest.approx(_psi(a, b, cfg.psi_bins), abs=1e-9)
        assert (r.n_ref, r.nan_ref) == (a.size, int(ref[col].isna().sum()))
        assert r.drifted == (r.ks_pvalue < cfg.ks_alpha and r.psi >= cfg.psi_threshold)
