"""Every confidence interval the engine reports, tested for coverage by simulation: draw many
samples from a population whose true value is known, and count how often the interval
covers it. Also: the interval contains its own estimate, in every sample.

Seeds are fixed, so each rate is deterministic (no flakes); the bounds leave room for the
Monte Carlo error of ~1.3 points at 300 samples. Rerun deeper with INSIGHT_COVERAGE_REPS.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import norm

from engine.kernels.effects import ate, bootstrap_ci
from engine.kernels.fairness import fairness
from engine.kernels.intervals import Interval
from engine.kernels.metrics import auc_bootstrap, paired_auc_difference
from engine.kernels.qini import qini_auc, qini_auc_bootstrap

pytestmark = pytest.mark.stats

REPS = int(os.environ.get("INSIGHT_COVERAGE_REPS", "300"))


def _coverage(draw: Callable[[np.random.Generator], Interval], truth: float, reps: int) -> float:
    hits = 0
    for s in range(reps):
        iv = draw(np.random.default_rng(10_000 + s))
        assert iv.low <= iv.estimate <= iv.high, f"sample {s}: {iv} excludes its estimate"
        hits += iv.low <= truth <= iv.high
    return hits / reps


# ---- fairness: max - min gaps, zero included ---------------------------------------------


def _fair_draw(
    metric: str, rates: list[float], n: int
) -> Callable[[np.random.Generator], Interval]:
    def draw(rng: np.random.Generator) -> Interval:
        g = rng.integers(0, len(rates), n)
        y = (rng.random(n) < 0.4).astype(int)
        # selection probability per group; for TPR/FPR gaps the same shift on both classes
        p = (rng.random(n) < np.asarray(rates)[g] + 0.2 * y).astype(int)
        return fairness(y, p, g.astype(str), metric).interval  # type: ignore[arg-type]

    return draw


@pytest.mark.parametrize(
    "metric",
    ["demographic_parity_difference", "equal_opportunity_difference", "equalized_odds_difference"],
)
@pytest.mark.parametrize(
    "rates",
    [[0.3, 0.3], [0.3, 0.32], [0.3, 0.45], [0.3, 0.3, 0.3], [0.3, 0.3, 0.36]],
    ids=["2g-gap0", "2g-gap.02", "2g-gap.15", "3g-gap0", "3g-gap.06"],
)
def test_fairness_gap_interval_covers_the_true_gap(metric: str, rates: list[float]) -> None:
    truth = max(rates) - min(rates)  # the same shift holds for selection, TPR and FPR
    cov = _coverage(_fair_draw(metric, rates, 4000), truth, REPS)
    # Simultaneous (Bonferroni) intervals are conservative by design: >= nominal, never far
    # below it. The percentile bootstrap this replaces covered a zero gap in 0% of samples.
    assert cov >= 0.93, f"{metric} {rates}: coverage {cov:.3f}"


def test_demographic_parity_ratio_interval_covers() -> None:
    def draw(rng: np.random.Generator) -> Interval:
        g = rng.integers(0, 2, 3000)
        p = (rng.random(3000) < np.where(g == 1, 0.3, 0.4)).astype(int)
        return fairness(np.zeros(3000, int), p, g.astype(str), "demographic_parity_ratio").interval

    assert _coverage(draw, 0.75, REPS) >= 0.93


# ---- AUC (BCa) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "mu", "prevalence", "floor"),
    [(300, 1.0, 0.3, 0.92), (100, 2.5, 0.3, 0.92), (400, 3.5, 0.3, 0.92), (200, 3.0, 0.1, 0.88)],
    ids=["auc.76", "auc.96-small", "auc.99", "auc.98-rare"],
)
def test_auc_interval_covers_the_binormal_truth(
    n: int, mu: float, prevalence: float, floor: float
) -> None:
    """Binormal scores: AUC = Phi(mu / sqrt 2). The percentile bootstrap covered the last
    two cases in 90% and 82% of samples; BCa in 95% and 91% (200 positives... 20 here)."""

    def draw(rng: np.random.Generator) -> Interval:
        y = (rng.random(n) < prevalence).astype(int)
        y[:2] = [0, 1]
        return auc_bootstrap(
            y, rng.normal(size=n) + mu * y, n_boot=300, seed=int(rng.integers(1 << 30))
        )

    assert _coverage(draw, float(norm.cdf(mu / np.sqrt(2))), REPS) >= floor


@pytest.mark.parametrize(("mu_a", "mu_b"), [(1.0, 1.0), (1.5, 1.0)], ids=["equal", "better"])
def test_paired_auc_difference_covers(mu_a: float, mu_b: float) -> None:
    truth = float(norm.cdf(mu_a / np.sqrt(2)) - norm.cdf(mu_b / np.sqrt(2)))

    def draw(rng: np.random.Generator) -> Interval:
        n = 300
        y = (rng.random(n) < 0.3).astype(int)
        y[:2] = [0, 1]
        z, e = rng.normal(size=n), rng.normal(size=n)
        a = z + mu_a * y
        b = 0.8 * z + 0.6 * e + mu_b * y  # correlated models, each with unit noise
        return paired_auc_difference(y, a, b, n_boot=300, seed=int(rng.integers(1 << 30)))

    assert _coverage(draw, truth, REPS) >= 0.92


# ---- ATE and Qini --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "p0", "p1"), [(200, 0.10, 0.15), (2000, 0.30, 0.30), (400, 0.02, 0.05)]
)
def test_ate_intervals_cover(n: int, p0: float, p1: float) -> None:
    def sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        t = (rng.random(n) < 0.5).astype(int)
        t[:2] = [0, 1]
        y = (rng.random(n) < np.where(t == 1, p1, p0)).astype(float)
        y[:4] = [0, 1, 1, 0]  # a variance in each arm
        return y, t

    welch = _coverage(lambda r: ate(*sample(r)), p1 - p0, REPS)
    boot = _coverage(lambda r: bootstrap_ci(*sample(r), n_boot=400, seed=1), p1 - p0, REPS)
    assert welch >= 0.92 and boot >= 0.92, (welch, boot)


def _campaign(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = rng.normal(size=n)
    t = (rng.random(n) < 0.5).astype(int)
    y = (rng.random(n) < 0.2 + 0.15 * t * (x > 0)).astype(int)
    return y, t, x + rng.normal(size=n)


def test_qini_interval_covers_the_population_qini() -> None:
    truth = float(
        np.mean([qini_auc(*_campaign(2_000_000, np.random.default_rng(s))) for s in (1, 2)])
    )
    reps = max(100, REPS // 2)  # each interval is 200 Qini AUCs

    def draw(rng: np.random.Generator) -> Interval:
        return qini_auc_bootstrap(*_campaign(600, rng), n_boot=200, seed=int(rng.integers(1 << 30)))

    assert _coverage(draw, truth, reps) >= 0.92


# ---- the monitor's live statistics ---------------------------------------------------------


@pytest.mark.parametrize("dist", ["normal", "lognormal"])
def test_variance_change_interval_covers(dist: str) -> None:
    """Delta-method interval from the fourth moment: no normality assumed (skewed data too)."""
    from engine.monitor import stats

    true_var = 1.0 if dist == "normal" else (np.exp(0.25) - 1) * np.exp(0.25)  # lognormal(0, .5)
    ref = {"variance": true_var / 1.1}  # the truth: a 10% rise

    def draw(rng: np.random.Generator) -> Interval:
        x = rng.normal(size=2000) if dist == "normal" else rng.lognormal(0, 0.5, 2000)
        s = stats._variance_change(stats.Moments.of(x), ref, 0.05)
        return Interval(s.estimate, s.low, s.high)

    assert _coverage(draw, 0.1, REPS) >= 0.92


def test_mean_change_and_correlation_intervals_cover() -> None:
    from engine.kernels.sketch import NumericSketch
    from engine.monitor import stats

    sk = NumericSketch.from_sample(np.random.default_rng(0).beta(2, 5, 5000), 1000, 10).to_dict()

    def mean_draw(rng: np.random.Generator) -> Interval:
        s = rng.beta(2, 5, 1500)  # scores in (0, 1), mean 2/7: 30% above the reference mean
        r = stats.score_stats(s, s >= 0.5, {"sketch": sk, "mean": (2 / 7) / 1.3}, 0.05)
        m = r.mean_change
        assert m is not None
        return Interval(m.estimate, m.low, m.high)

    assert _coverage(mean_draw, 0.3, REPS) >= 0.92
    # Score-label correlation on labeled decisions (point-biserial), Fisher-z interval:
    # score = mu * label + N(0, 1) noise, so r = mu sqrt(pq) / sqrt(mu^2 pq + 1).
    mu, p = 1.0, 0.3
    rho = mu * np.sqrt(p * (1 - p)) / np.sqrt(mu**2 * p * (1 - p) + 1)

    def corr_draw(rng: np.random.Generator) -> Interval:
        y = (rng.random(800) < p).astype(float)
        sc = mu * y + rng.normal(size=800)
        r = stats.concept(y, sc, {"concept": {"correlation": rho}}, 0.05, 800).correlation
        assert r is not None
        return Interval(r.estimate, r.low, r.high)

    assert _coverage(corr_draw, float(rho), max(100, REPS // 3)) >= 0.92
