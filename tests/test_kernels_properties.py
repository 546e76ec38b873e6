"""Hypothesis: kernels agree with their references on arbitrary small inputs, and edge cases
give a defined value or a clear error, never a silent NaN."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats as st
from hypothesis import assume, given, settings
from hypothesis import strategies as hs
from hypothesis.extra.numpy import arrays

from engine.kernels.drift import chi2, ks_2samp, psi, wasserstein
from engine.kernels.fairness import fairness
from engine.kernels.qini import qini_auc, uplift_auc

floats = arrays(np.float64, hs.integers(1, 80), elements=hs.floats(-1e3, 1e3, width=32))
codes = arrays(np.int64, hs.integers(1, 80), elements=hs.integers(0, 6))


@settings(max_examples=150, deadline=None)
@given(floats, floats)
def test_wasserstein_property(a: np.ndarray, b: np.ndarray) -> None:
    w = wasserstein(a, b)
    assert np.isfinite(w) and w >= 0
    assert w == pytest.approx(st.wasserstein_distance(a, b), rel=1e-9, abs=1e-9)
    assert w == pytest.approx(wasserstein(b, a), rel=1e-12, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(floats, floats, hs.integers(2, 20))
def test_psi_is_finite_and_zero_on_self(a: np.ndarray, b: np.ndarray, bins: int) -> None:
    assert np.isfinite(psi(a, b, bins)) and psi(a, b, bins) >= 0
    assert psi(a, a, bins) == 0.0


def _ks_exact_brute(n: int, m: int, d: float) -> float:
    """P(D >= d) by enumerating every one of the C(n+m, n) interleavings (no ties)."""
    from itertools import combinations

    h = round(d * n * m)
    hits = total = 0
    for pos in combinations(range(n + m), n):
        chosen = set(pos)
        i = j = worst = 0
        for k in range(n + m):
            if k in chosen:
                i += 1
            else:
                j += 1
            worst = max(worst, abs(i * m - j * n))
        hits += worst >= h
        total += 1
    return hits / total


@settings(max_examples=150, deadline=None)
@given(floats, floats)
def test_ks_exact_pvalue_in_unit_interval(a: np.ndarray, b: np.ndarray) -> None:
    r = ks_2samp(a, b, method="exact")
    assert 0.0 <= r.pvalue <= 1.0 and 0.0 <= r.statistic <= 1.0
    if a.size + b.size <= 14:
        # Small samples: count the paths. scipy's n == m formula is off by up to 4e-5 here
        # (n = m = 7, D = 1/7: every path has D >= 1/7 so p = 1; scipy gives 0.99996).
        ref_p = _ks_exact_brute(a.size, b.size, r.statistic)
        assert r.pvalue == pytest.approx(ref_p, rel=1e-9, abs=1e-12)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = st.ks_2samp(a, b, method="exact")
    assert r.pvalue == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-12)


def test_ks_exact_pvalue_where_scipy_is_off() -> None:
    a, b = np.zeros(7), np.array([0.0] * 6 + [1.0])
    r = ks_2samp(a, b, method="exact")
    assert r.statistic == pytest.approx(1 / 7, abs=1e-15)
    assert r.pvalue == 1.0 == _ks_exact_brute(7, 7, 1 / 7)


@settings(max_examples=150, deadline=None)
@given(codes, codes)
def test_chi2_property(a: np.ndarray, b: np.ndarray) -> None:
    r = chi2(a, b)
    assert np.isfinite(r.statistic) and 0.0 <= r.pvalue <= 1.0
    k = int(max(a.max(), b.max())) + 1
    t = np.vstack([np.bincount(a, minlength=k), np.bincount(b, minlength=k)])
    t = t[:, t.sum(0) > 0]
    if t.shape[1] > 1:
        assert r.statistic == pytest.approx(
            st.chi2_contingency(t, correction=False).statistic, rel=1e-9, abs=1e-9
        )


@settings(max_examples=100, deadline=None)
@given(
    arrays(np.int64, 60, elements=hs.integers(0, 1)),
    arrays(np.int64, 60, elements=hs.integers(0, 1)),
    arrays(np.float64, 60, elements=hs.floats(-5, 5, width=16)),
)
def test_uplift_scores_match_sklift_or_raise(y: np.ndarray, t: np.ndarray, s: np.ndarray) -> None:
    assume(0 < t.sum() < t.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sklift.metrics import qini_auc_score, uplift_auc_score

        for ours, ref in ((qini_auc, qini_auc_score), (uplift_auc, uplift_auc_score)):
            try:
                expected = ref(y, s, t)
            except Exception:
                continue
            if not np.isfinite(expected):
                with pytest.raises(ValueError):
                    ours(y, t, s)
                continue
            assert ours(y, t, s) == pytest.approx(expected, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    arrays(np.int64, 50, elements=hs.integers(0, 1)),
    arrays(np.int64, 50, elements=hs.integers(0, 1)),
    arrays(np.int64, 50, elements=hs.integers(0, 2)),
)
def test_fairness_never_silent_nan(y: np.ndarray, p: np.ndarray, g: np.ndarray) -> None:
    assume(np.unique(g).size >= 2)
    for metric in ("demographic_parity_difference", "equalized_odds_difference"):
        try:
            r = fairness(y, p, g.astype(str), metric)  # type: ignore[arg-type]
        except ValueError as exc:
            assert "undefined" in str(exc)
            continue
        assert np.isfinite(r.value) and np.isfinite(r.low) and np.isfinite(r.high)
