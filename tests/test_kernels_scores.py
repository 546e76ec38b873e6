"""The card's and the monitor's shared score metrics against scikit-learn, any seed."""

from __future__ import annotations

import numpy as np
import pytest

from engine.kernels.scores import calibration


@pytest.mark.parametrize("seed", range(8))
def test_calibration_matches_sklearn_on_the_same_bins(seed: int) -> None:
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(seed)
    p = rng.beta(2, 5, 2000)
    y = (rng.random(2000) < np.clip(p * 1.3, 0, 1)).astype(float)
    got = calibration(y, p)
    true, pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    np.testing.assert_allclose([b["observed_rate"] for b in got["bins"]], true, atol=1e-12)
    np.testing.assert_allclose([b["mean_score"] for b in got["bins"]], pred, atol=1e-12)
    w = np.array([b["rows"] for b in got["bins"]]) / y.size
    assert got["ece"] == pytest.approx(float((w * np.abs(true - pred)).sum()), abs=1e-12)
