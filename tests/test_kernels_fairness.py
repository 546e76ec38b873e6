"""Fairness kernels against fairlearn's definitions, many seeds."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
)

from engine.kernels.fairness import fairness

REFS = {
    "demographic_parity_difference": demographic_parity_difference,
    "demographic_parity_ratio": demographic_parity_ratio,
    "equal_opportunity_difference": equal_opportunity_difference,
    "equalized_odds_difference": equalized_odds_difference,
}


@pytest.mark.parametrize("metric", sorted(REFS))
def test_matches_fairlearn(seed: int, metric: str) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(200, 3000))
    g = rng.choice(["F", "M", "X"][: int(rng.integers(2, 4))], n)
    y = (rng.random(n) < 0.3).astype(int)
    p = (rng.random(n) < np.where(g == "M", 0.4, 0.3)).astype(int)
    ours = fairness(y, p, g, metric)  # type: ignore[arg-type]
    ref = REFS[metric](y, p, sensitive_features=g)
    assert ours.value == pytest.approx(ref, abs=1e-12)
    assert ours.low <= ours.value <= ours.high, "the interval contains its estimate"


def test_ci_covers_true_gap_and_is_deterministic() -> None:
    hits = 0
    for s in range(40):
        rng = np.random.default_rng(100 + s)
        g = rng.choice(["F", "M"], 2000)
        y = np.zeros(2000, dtype=int)
        p = (rng.random(2000) < np.where(g == "M", 0.35, 0.30)).astype(int)
        r = fairness(y, p, g, "demographic_parity_difference")
        hits += r.low <= 0.05 <= r.high
    assert hits >= 33  # nominal 95% of 40 is 38; allow Monte Carlo slack
    a = fairness(y, p, g, "demographic_parity_difference")
    b = fairness(y, p, g, "demographic_parity_difference")
    assert a.interval == b.interval  # no resampling: the same data, the same interval


def test_pair_interval_equals_statsmodels_newcombe(seed: int) -> None:
    """The building block: Newcombe's hybrid score interval of p1 - p2, as statsmodels."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    from engine.kernels.intervals import newcombe_diff, z_value

    rng = np.random.default_rng(seed)
    n1, n2 = (int(v) for v in rng.integers(5, 3000, 2))
    x1, x2 = int(rng.integers(0, n1 + 1)), int(rng.integers(0, n2 + 1))
    alpha = float(rng.choice([0.05, 0.01, 0.05 / 3]))
    ours = newcombe_diff(x1, n1, x2, n2, z_value(alpha))
    lo, hi = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", alpha=alpha)
    assert (ours.low, ours.high) == pytest.approx((lo, hi), abs=1e-12)
    assert ours.low <= ours.estimate <= ours.high


def test_undefined_and_bad_input_are_clear() -> None:
    with pytest.raises(ValueError, match="undefined"):
        fairness([0, 0, 1, 1], [0, 1, 0, 1], ["a", "a", "b", "b"], "equal_opportunity_difference")
    with pytest.raises(ValueError, match="at least 2 groups"):
        fairness([0, 1], [0, 1], ["a", "a"], "demographic_parity_difference")
    with pytest.raises(ValueError, match="apply the decision threshold"):
        fairness([0, 1], [0.2, 0.9], ["a", "b"], "demographic_parity_difference")
