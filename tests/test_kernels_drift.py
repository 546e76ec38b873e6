"""Drift kernels against independent references (SciPy, pandas), for many seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra.numpy import arrays

from engine.kernels.drift import PSI_EPS, ks_2samp, psi


def _samples(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 3000, 2)
    a = rng.normal(0, 1, n)
    b = rng.normal(rng.uniform(-0.3, 0.3), rng.uniform(0.7, 1.5), m)
    if seed % 3 == 0:  # heavy ties
        a, b = np.round(a, 1), np.round(b, 1)
    if seed % 5 == 0:  # integer-valued counts
        a, b = rng.poisson(3, n).astype(float), rng.poisson(3.3, m).astype(float)
    return a, b


def test_ks_matches_scipy(seed: int) -> None:
    a, b = _samples(seed)
    ours = ks_2samp(a, b, method="asymp")
    ref = st.ks_2samp(a, b, method="asymp")
    assert abs(ours.statistic - ref.statistic) <= 1e-12
    en = a.size * b.size / (a.size + b.size)
    assert ours.pvalue == pytest.approx(st.kstwobign.sf(np.sqrt(en) * ref.statistic), abs=1e-10)
    if en >= 100:  # scipy's 'asymp' uses the finite-n distribution: close, not equal
        assert abs(ours.pvalue - ref.pvalue) < 1e-2


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.float64, hs.integers(1, 60), elements=hs.floats(-5, 5, width=16)),
    arrays(np.float64, hs.integers(1, 60), elements=hs.floats(-5, 5, width=16)),
)
def test_ks_statistic_property(a: np.ndarray, b: np.ndarray) -> None:
    ours = ks_2samp(a, b)
    assert abs(ours.statistic - st.ks_2samp(a, b, method="asymp").statistic) <= 1e-12
    assert ours.statistic == ks_2samp(b, a).statistic
    assert 0.0 <= ours.pvalue <= 1.0


def _psi_reference(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    """Independent PSI: numpy inverted-CDF quantiles, pandas right-closed cut."""
    edges = np.unique(np.quantile(a, np.arange(1, bins) / bins, method="inverted_cdf"))
    cuts = [-np.inf, *edges, np.inf]
    p = pd.Series(pd.cut(a, cuts, right=True)).value_counts(sort=False).to_numpy() / a.size
    q = pd.Series(pd.cut(b, cuts, right=True)).value_counts(sort=False).to_numpy() / b.size
    p, q = np.maximum(p, PSI_EPS), np.maximum(q, PSI_EPS)
    return float(np.sum((q - p) * np.log(q / p)))


@pytest.mark.parametrize("bins", [2, 10, 37])
def test_psi_matches_reference(seed: int, bins: int) -> None:
    a, b = _samples(seed)
    assert psi(a, b, bins) == pytest.approx(_psi_reference(a, b, bins), rel=1e-9, abs=1e-12)


def test_psi_zero_on_identical_and_grows_with_shift() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=20_000)
    assert psi(x, x) == 0.0
    small, big = psi(x, x + 0.1), psi(x, x + 1.0)
    assert 0 < small < 0.1 < 0.2 < big


def test_nan_dropped_and_bad_input_rejected() -> None:
    a = np.array([1.0, 2.0, np.nan, 3.0])
    b = np.array([1.0, 2.0, 3.0, np.nan, np.nan])
    assert ks_2samp(a, b).statistic == 0.0
    assert psi(a, b, 2) == 0.0
    with pytest.raises(ValueError, match="no finite values"):
        ks_2samp(np.array([np.nan]), a)
    with pytest.raises(ValueError, match="must be 1-D"):
        ks_2samp(np.ones((2, 2)), a)
    with pytest.raises(ValueError, match="infinite"):
        psi(np.array([1.0, np.inf]), a)
    with pytest.raises(TypeError, match="must be numeric"):
        psi(np.array(["a", "b"]), a)
    with pytest.raises(ValueError, match="'bins' must be an integer >= 2"):
        psi(a, b, 1)


def test_single_values_and_constants() -> None:
    assert ks_2samp([1.0], [1.0]).statistic == 0.0
    assert ks_2samp([1.0], [2.0]).statistic == 1.0
    c = np.full(100, 5.0)
    assert psi(c, c) == 0.0
    assert psi(c, c + 1) > 1.0  # everything moved to the '> value' bin
