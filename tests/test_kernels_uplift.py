"""Uplift kernels against scikit-uplift and independent NumPy computations, many seeds."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from engine.kernels.effects import ate, bootstrap_ci
from engine.kernels.qini import (
    qini_auc,
    qini_band,
    qini_curve,
    uplift_auc,
    uplift_curve,
    uplift_metrics,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from sklift.metrics import qini_auc_score, uplift_auc_score
    from sklift.metrics import qini_curve as sk_qini_curve


def _data(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, n)
    x = rng.normal(size=n)
    y = (rng.random(n) < 0.2 + 0.1 * t * (x > 0)).astype(int)
    score = x + rng.normal(0, 1, n)
    if seed % 3 == 0:
        score = np.round(score, 1)  # many ties
    return y, t, score


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_qini_and_uplift_auc_match_sklift(seed: int) -> None:
    y, t, s = _data(seed)
    assert qini_auc(y, t, s) == pytest.approx(qini_auc_score(y, s, t), abs=1e-9)
    assert uplift_auc(y, t, s) == pytest.approx(uplift_auc_score(y, s, t), abs=1e-9)
    x_ours, v_ours = qini_curve(y, t, s)
    x_ref, v_ref = sk_qini_curve(y, s, t)
    np.testing.assert_allclose(x_ours, x_ref)
    np.testing.assert_allclose(v_ours, v_ref, atol=1e-9)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_uplift_metrics_equals_the_separate_calls_and_sklift(seed: int) -> None:
    y, t, s = _data(seed, 2000)
    m = uplift_metrics(y, t, s, alpha=0.1)
    assert m.ate == pytest.approx(tuple(ate(y, t, alpha=0.1)), abs=1e-12)
    assert m.qini_auc == pytest.approx(qini_auc(y, t, s), abs=1e-12)
    assert m.uplift_auc == pytest.approx(uplift_auc(y, t, s), abs=1e-12)
    assert m.qini_auc == pytest.approx(qini_auc_score(y, s, t), abs=1e-9)
    assert m.uplift_auc == pytest.approx(uplift_auc_score(y, s, t), abs=1e-9)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_perfect_curves_counted_from_cells_match_sklift_on_skewed_cells(seed: int) -> None:
    """The perfect curves come from the 2x2 cell counts, not a sort: check the branches
    (control responders above or below treated non-responders) and missing cells."""
    rng = np.random.default_rng(seed)
    n = 500
    t = (rng.random(n) < rng.uniform(0.05, 0.95)).astype(int)
    y = (rng.random(n) < rng.uniform(0.02, 0.98)).astype(int)
    if seed % 4 == 0:
        y[t == 1] = 1  # no treated non-responders
    t[:2], y[:2] = [0, 1], [0, 0]  # keep both groups and both outcomes present
    s = rng.normal(size=n)
    assert qini_auc(y, t, s) == pytest.approx(qini_auc_score(y, s, t), abs=1e-9)
    assert uplift_auc(y, t, s) == pytest.approx(uplift_auc_score(y, s, t), abs=1e-9)


def test_uplift_curve_matches_sklift() -> None:
    from sklift.metrics import uplift_curve as sk_uplift_curve

    y, t, s = _data(3)
    x, v = uplift_curve(y, t, s)
    xr, vr = sk_uplift_curve(y, s, t)
    np.testing.assert_allclose(x, xr)
    np.testing.assert_allclose(v, vr, atol=1e-9)


def test_ate_matches_welch_by_hand(seed: int) -> None:
    y, t, _ = _data(seed)
    est, lo, hi = ate(y, t, alpha=0.1)
    y1, y0 = y[t == 1], y[t == 0]
    se = math.sqrt(y1.var(ddof=1) / y1.size + y0.var(ddof=1) / y0.size)
    assert est == pytest.approx(y1.mean() - y0.mean())
    assert hi - est == pytest.approx(1.6448536269514722 * se)
    assert est - lo == pytest.approx(1.6448536269514722 * se)


def test_bootstrap_binary_cells_equal_row_bootstrap_in_distribution() -> None:
    y, t, _ = _data(5, 4000)
    a = bootstrap_ci(y, t, n_boot=4000, seed=1)
    assert a == bootstrap_ci(y, t, n_boot=4000, seed=1), "reproducible per seed"
    rng = np.random.default_rng(2)  # the plain row bootstrap, as the reference
    idx = rng.integers(0, y.size, (4000, y.size))
    yb, tb = y[idx], t[idx]
    diffs = (yb * tb).sum(1) / tb.sum(1) - (yb * (1 - tb)).sum(1) / (1 - tb).sum(1)
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    se = diffs.std()
    assert abs(a.low - lo) < 0.15 * se and abs(a.high - hi) < 0.15 * se
    w = ate(y, t)
    assert abs(a.low - w.low) < 0.2 * se and abs(a.high - w.high) < 0.2 * se


def test_bootstrap_continuous_reproducible_and_close_to_welch() -> None:
    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, 3000)
    y = rng.normal(0.3 * t, 1.0)
    b1 = bootstrap_ci(y, t, n_boot=500, seed=7)
    assert b1 == bootstrap_ci(y, t, n_boot=500, seed=7)
    assert b1 != bootstrap_ci(y, t, n_boot=500, seed=8)
    w = ate(y, t)
    width = w.high - w.low
    assert abs(b1.low - w.low) < 0.1 * width and abs(b1.high - w.high) < 0.1 * width


def test_qini_band_contains_curve() -> None:
    y, t, s = _data(1, 2000)
    frac, lo, hi = qini_band(y, t, s, n_boot=100, seed=0)
    x, v = qini_curve(y, t, s)
    mid = np.interp(frac * y.size, x, v)
    assert np.mean((lo <= mid) & (mid <= hi)) > 0.9


def test_edge_cases_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="need both treated and control"):
        ate([1, 0, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="t must be 0/1"):
        qini_auc([1, 0], [2, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="y holds NaN"):
        ate([1.0, np.nan, 0.0, 1.0], [1, 0, 1, 0])
    with pytest.raises(ValueError, match="at least 2 rows"):
        ate([1, 0, 1], [1, 0, 0])
    with pytest.raises(ValueError, match=r"y must be 0/1 for this metric, got values \[2.0\]"):
        uplift_metrics([1, 0, 2, 1], [1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="score holds NaN"):
        qini_auc([1, 0, 0, 1], [1, 0, 1, 0], [0.1, np.nan, 0.3, 0.4])
    with pytest.raises(ValueError, match="one length"):
        uplift_auc([1, 0, 0, 1], [1, 0, 1, 0], [0.1, 0.3, 0.4])
    with pytest.raises(ValueError, match="zero area"):
        qini_auc([0, 0, 0, 0], [1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4])
