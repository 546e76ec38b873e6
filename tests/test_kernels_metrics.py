"""AUC kernel and its bootstrap against scikit-learn, many seeds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from engine.kernels.metrics import _weighted_auc, auc, auc_bootstrap


def _data(seed: int, n: int = 800) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
    s = rng.normal(y * rng.uniform(0, 1.5), 1.0)
    if seed % 2:
        s = np.round(s, 1)  # ties
    y[:2] = [0, 1]
    return y, s


def test_auc_matches_sklearn(seed: int) -> None:
    y, s = _data(seed)
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_weighted_auc_matches_sklearn_sample_weight(seed: int) -> None:
    """Each bootstrap resample is a weighted AUC over the sorted rows."""
    y, s = _data(seed, 300)
    w = np.random.default_rng(seed + 1).multinomial(300, np.full(300, 1 / 300)).astype(float)
    o = np.argsort(s, kind="stable")
    ours = _weighted_auc(s[o], y[o].astype(float), w[o])
    keep = w > 0
    assert ours == pytest.approx(roc_auc_score(y[keep], s[keep], sample_weight=w[keep]), abs=1e-12)


def _scipy_bca(data: tuple[np.ndarray, ...], stat: object, seed: int) -> tuple[float, float]:
    """scipy's BCa: its own resamples and a brute-force leave-one-out jackknife."""
    from scipy.stats import bootstrap

    r = bootstrap(
        data,
        stat,
        paired=True,
        vectorized=False,
        n_resamples=3000,
        method="BCa",
        random_state=np.random.default_rng(seed),
    )
    return float(r.confidence_interval.low), float(r.confidence_interval.high)


@pytest.mark.stats
def test_auc_bootstrap_resamples_like_the_row_bootstrap_and_matches_scipy_bca() -> None:
    from engine.kernels.metrics import _boot

    y, s = _data(3, 2000)
    a = auc_bootstrap(y, s, n_boot=1000, seed=5)
    assert a == auc_bootstrap(y, s, n_boot=1000, seed=5)
    assert a.low < a.estimate < a.high
    # The resamples: our weighted walk against sklearn on plain row resamples.
    rng = np.random.default_rng(9)
    ref = [
        roc_auc_score(y[i], s[i]) for i in (rng.integers(0, y.size, y.size) for _ in range(1000))
    ]
    o = np.argsort(s, kind="stable")
    ours = _boot(s[o], y[o].astype(float), 1000, 5)
    se = np.std(ref)
    for q in (0.025, 0.5, 0.975):
        assert abs(np.quantile(ours, q) - np.quantile(ref, q)) < 0.25 * se
    # The interval: BCa against scipy's BCa (independent resamples and jackknife).
    for seed in (1, 2, 4):
        y, s = _data(seed, 500)
        a = auc_bootstrap(y, s, n_boot=3000, seed=seed)
        lo, hi = _scipy_bca((y, s), roc_auc_score, seed)
        sd = (hi - lo) / 3.92
        assert abs(a.low - lo) < 0.3 * sd and abs(a.high - hi) < 0.3 * sd, (seed, a, lo, hi)


def test_jackknife_from_placements_equals_leave_one_out(seed: int) -> None:
    from engine.kernels.metrics import _jackknife, _placements

    y, s = _data(seed, 60)
    o = np.argsort(s, kind="stable")
    ys, ss = y[o].astype(float), s[o]
    jk = _jackknife(ys, _placements(ss, ys), roc_auc_score(y, s))
    keep = np.ones(ys.size, dtype=bool)
    for i in range(ys.size):
        keep[i] = False
        assert jk[i] == pytest.approx(roc_auc_score(ys[keep], ss[keep]), abs=1e-12)
        keep[i] = True


def test_auc_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="one class only"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0/1"):
        auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        auc([0, 1, 1], [0.1, np.nan, 0.3])


def test_paired_difference_matches_row_bootstrap_and_is_zero_for_one_model(seed: int) -> None:
    from engine.kernels.metrics import paired_auc_difference

    y, s = _data(seed, 600)
    rng = np.random.default_rng(seed)
    s2 = s + rng.normal(0, 0.7, s.size)
    d = paired_auc_difference(y, s, s2, n_boot=400, seed=seed)
    assert d.estimate == pytest.approx(roc_auc_score(y, s) - roc_auc_score(y, s2), abs=1e-12)
    assert d.low <= d.estimate <= d.high
    same = paired_auc_difference(y, s, s, n_boot=50, seed=seed)
    assert same == (0.0, 0.0, 0.0)


@pytest.mark.stats
@pytest.mark.parametrize("seed", range(3))
def test_paired_difference_interval_matches_scipy_bca(seed: int) -> None:
    from engine.kernels.metrics import paired_auc_difference

    y, s = _data(seed, 400)
    s2 = s + np.random.default_rng(seed).normal(0, 0.7, s.size)
    d = paired_auc_difference(y, s, s2, n_boot=3000, seed=seed)
    lo, hi = _scipy_bca((y, s, s2), lambda a, b, c: roc_auc_score(a, b) - roc_auc_score(a, c), seed)
    sd = (hi - lo) / 3.92
    assert abs(d.low - lo) < 0.3 * sd and abs(d.high - hi) < 0.3 * sd, (d, lo, hi)
