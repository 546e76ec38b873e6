"""The stock policy against the textbook and against a simulated store: with i.i.d. normal
demand and its mean as the forecast, the order-up-to level approaches P mu + z sigma
sqrt(P); run as a periodic-review inventory for many cycles, it meets the cycle service
level it was set for, and the fill rate it predicts, within two points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from engine.forecast import inventory as inv


def _errors(rng: np.random.Generator, sigma: float, scale: float, p_max: int, n: int) -> dict:
    """Backtest-like cumulative errors, scale-free: sums of P normal errors / scale."""
    e = rng.normal(0, sigma, (n, p_max)).cumsum(axis=1) / scale
    return {p: e[:, p - 1] for p in range(1, p_max + 1)}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("lead", "review", "level"), [(2, 1, 0.95), (1, 2, 0.9), (3, 1, 0.8)])
def test_the_order_up_to_level_is_the_textbook_one_for_normal_demand(
    seed: int, lead: int, review: int, level: float
) -> None:
    rng = np.random.default_rng(seed)
    mu, sigma, scale = 100.0, 15.0, 12.0
    grid = inv.error_grid(_errors(rng, sigma, scale, 6, 40_000))
    fc = pd.DataFrame({"unique_id": "a", "step": range(1, 7), "forecast": mu})
    plan = inv.plan(fc, pd.Series({"a": scale}), grid, inv.Policy(level, lead, review), "W-MON")
    p = lead + review
    want = p * mu + norm.ppf(level) * sigma * np.sqrt(p)
    assert plan["order_up_to"].iloc[0] == pytest.approx(want, rel=0.01)
    # the normal loss function: expected shortage per cycle sigma sqrt(P) L(z)
    z = norm.ppf(level)
    esc = sigma * np.sqrt(p) * (norm.pdf(z) - z * (1 - norm.cdf(z)))
    assert plan["expected_fill_rate"].iloc[0] == pytest.approx(1 - esc / (review * mu), abs=0.003)


def _simulate(
    s_level: float,
    lead: int,
    review: int,
    mu: float,
    sigma: float,
    rng: np.random.Generator,
    cycles: int,
) -> tuple[float, float]:
    """Periodic review with backorders: every ``review`` periods order up to S (inventory
    position: net stock plus what is on order); an order arrives ``lead`` periods later.
    Returns (share of orders whose cycle ends without a backorder: net stock >= 0 just
    before the next order arrives, share of demand met from stock)."""
    periods = cycles * review + lead + review
    demand = rng.normal(mu, sigma, periods)
    net = s_level
    arriving = np.zeros(periods + lead + 1)
    on_order = 0.0
    short = tot = 0.0
    end_net = np.full(periods, np.nan)
    for t in range(periods):
        net += arriving[t]
        on_order -= arriving[t]
        if t % review == 0:
            q = max(s_level - (net + on_order), 0.0)
            arriving[t + lead] += q
            on_order += q
        before = net
        net -= demand[t]
        short += max(0.0, -net) - max(0.0, -before)
        tot += demand[t]
        end_net[t] = net
    checks = [end_net[t + lead + review - 1] >= 0 for t in range(0, cycles * review, review)]
    return float(np.mean(checks)), 1 - short / tot


@pytest.mark.parametrize(("lead", "review", "level"), [(2, 1, 0.95), (1, 2, 0.9)])
def test_a_simulated_store_meets_the_service_level_and_the_predicted_fill_rate(
    lead: int, review: int, level: float
) -> None:
    rng = np.random.default_rng(7)
    mu, sigma, scale = 100.0, 15.0, 12.0
    grid = inv.error_grid(_errors(rng, sigma, scale, 4, 40_000))
    fc = pd.DataFrame({"unique_id": "a", "step": range(1, 5), "forecast": mu})
    plan = inv.plan(fc, pd.Series({"a": scale}), grid, inv.Policy(level, lead, review), "W-MON")
    s_level = float(plan["order_up_to"].iloc[0])
    csl, fill = _simulate(s_level, lead, review, mu, sigma, rng, 40_000)
    assert abs(csl - level) <= 0.02, (csl, level)
    assert abs(fill - float(plan["expected_fill_rate"].iloc[0])) <= 0.02
    assert plan["inventory_turnover"].iloc[0] == pytest.approx(
        52 * mu / (plan["safety_stock"].iloc[0] + review * mu / 2)
    )


def test_a_protection_interval_beyond_the_horizon_is_a_clear_error() -> None:
    from engine.errors import ConfigError

    grid = {1: [0.0] * inv.GRID.size, 2: [0.0] * inv.GRID.size}
    fc = pd.DataFrame({"unique_id": "a", "step": [1, 2], "forecast": 1.0})
    with pytest.raises(ConfigError, match="longer than the horizon 2"):
        inv.plan(fc, pd.Series({"a": 1.0}), grid, inv.Policy(0.9, 2, 1), "W-MON")


def test_costs_set_the_service_level_by_the_critical_ratio() -> None:
    from engine.config.forecast import InventoryConfig

    assert InventoryConfig(lead_time=1, holding_cost=1, stockout_cost=9).target == 0.9
    with pytest.raises(ValueError, match="not both"):
        InventoryConfig(lead_time=1, service_level=0.9, holding_cost=1, stockout_cost=9)
