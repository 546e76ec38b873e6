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


def test_auc_bootstrap_is_reproducible_and_close_to_plain_bootstrap() -> None:
    y, s = _data(3, 2000)
    a = auc_bootstrap(y, s, n_boot=1000, seed=5)
    assert a == auc_bootstrap(y, s, n_boot=1000, seed=5)
    rng = np.random.default_rng(9)
    ref = []
    for _ in range(1000):
        i = rng.integers(0, y.size, y.size)
        ref.append(roc_auc_score(y[i], s[i]))
    lo, hi = np.quantile(ref, [0.025, 0.975])
    se = np.std(ref)
    assert abs(a.low - lo) < 0.25 * se and abs(a.high - hi) < 0.25 * se
    assert a.low < a.estimate < a.high


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
    if seed < 3:  # the plain paired row bootstrap as the reference (slow: a few seeds)
        ref = []
        for _ in range(400):
            i = rng.integers(0, y.size, y.size)
            if y[i].min() != y[i].max():
                ref.append(roc_auc_score(y[i], s[i]) - roc_auc_score(y[i], s2[i]))
        lo, hi = np.quantile(ref, [0.025, 0.975])
        sd = np.std(ref)
        assert abs(d.low - lo) < 0.35 * sd and abs(d.high - hi) < 0.35 * sd
