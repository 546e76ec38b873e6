"""From a forecast to stock: a periodic-review, order-up-to policy per series.

Every ``review_period`` periods an order raises the inventory position to ``S``; it arrives
``lead_time`` periods later, so ``S`` must cover the demand of the protection interval
``P = lead_time + review_period``. With the forecast of that demand ``F = sum(yhat[1..P])``
and the backtest's *cumulative* errors of the chosen models over ``P`` periods, scale-free
(``(sum y - sum yhat) / scale``, pooled across series and windows, the same errors that
calibrate the intervals), the empirical distribution ``E`` of those errors gives:

- the target cycle service level ``a``: given (``service_level``), or the newsvendor's
  critical ratio ``stockout_cost / (stockout_cost + holding_cost)``;
- ``S = F + q_a(E) * scale`` and the safety stock ``S - F`` (never below zero);
- the expected shortage per cycle ``ESC = scale * mean((E - q_a)^+)`` and the fill rate
  ``1 - ESC / (review_period * mean demand per period)``;
- the average inventory ``safety stock + review_period * mean demand / 2`` and the
  **inventory turnover** ``periods per year * mean demand / average inventory``.

Textbook check (tests): with i.i.d. normal demand and its true mean as the forecast, ``S``
approaches ``P mu + z_a sigma sqrt(P)`` and a simulated inventory meets the service level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.forecast.models import positions_of

GRID = np.linspace(0.0, 1.0, 201)  # quantile grid stored per protection interval

PERIODS_PER_YEAR = {"W": 52.0, "D": 365.0, "M": 12.0, "Q": 4.0, "H": 8760.0}


def periods_per_year(freq: str) -> float:
    return PERIODS_PER_YEAR.get("M" if freq.startswith("M") else freq[0], 52.0)


def cumulative_errors(
    bt: pd.DataFrame, picks: pd.DataFrame, cands: list[str], horizon: int
) -> dict[int, np.ndarray]:
    """Scale-free errors of the cumulative forecasts of the cross-fitted choices (``picks``:
    unique_id, window, pick; window k's pick made on the other windows), per protection
    interval P = 1..horizon: one per series and window where all P periods were recorded."""
    rows = bt.merge(picks, on=["unique_id", "window"], how="inner")
    c = rows["pick"]
    rows["yhat"] = rows[cands].to_numpy()[np.arange(len(rows)), positions_of(cands, c)]
    rows = rows.sort_values(["unique_id", "window", "step"])
    g = rows.groupby(["unique_id", "window"], sort=False)
    rows["cy"] = g["y"].cumsum()
    rows["cf"] = g["yhat"].cumsum()
    rows["cobs"] = g["observed"].cummin()
    out = {}
    for p in range(1, horizon + 1):
        r = rows[(rows["step"] == p) & rows["cobs"].astype(bool)]
        out[p] = ((r["cy"] - r["cf"]) / r["scale"]).to_numpy(dtype=float)
    return out


def error_grid(errors: dict[int, np.ndarray]) -> dict[int, list[float]]:
    """Each P's error distribution as quantiles on :data:`GRID` (what the forecaster keeps)."""
    return {
        p: np.quantile(e, GRID).tolist() if e.size else [0.0] * GRID.size for p, e in errors.items()
    }


@dataclass(frozen=True)
class Policy:
    service_level: float
    lead_time: int
    review_period: int


def plan(
    forecasts: pd.DataFrame,
    scale: pd.Series,
    grid: dict[int, list[float]],
    policy: Policy,
    freq: str,
) -> pd.DataFrame:
    """Per series (``forecasts``: unique_id, step, forecast): the protection interval's
    forecast, order-up-to level, safety stock, expected fill rate and turnover."""
    p = policy.lead_time + policy.review_period
    if p > max(grid):
        from engine.errors import ConfigError

        raise ConfigError(
            f"inventory: lead_time + review_period = {p} periods, longer than the horizon "
            f"{max(grid)} the backtest measured. Fix: a horizon of at least {p}."
        )
    q = np.asarray(grid[p])
    k = float(np.interp(policy.service_level, GRID, q))
    # E[(E - k)^+] from the quantile grid (each grid step holds 1/200 of the mass)
    mid = (q[1:] + q[:-1]) / 2
    excess = float(np.mean(np.maximum(mid - k, 0.0)))
    f = forecasts[forecasts["step"] <= p]
    demand_p = f.groupby("unique_id", sort=False)["forecast"].sum()
    mean_per = f.groupby("unique_id", sort=False)["forecast"].mean()
    sc = scale.reindex(demand_p.index).fillna(scale.median() if len(scale) else 1.0)
    level = demand_p + k * sc
    safety = (level - demand_p).clip(lower=0.0)
    esc = sc * excess
    cycle = policy.review_period * mean_per
    fill = np.where(cycle > 0, 1 - esc / cycle.where(cycle > 0, 1.0), 1.0)
    avg_inv = safety + cycle / 2
    turnover = np.where(
        avg_inv > 0, periods_per_year(freq) * mean_per / avg_inv.where(avg_inv > 0, 1.0), np.nan
    )
    return pd.DataFrame(
        {
            "unique_id": demand_p.index,
            "protection_periods": p,
            "demand_forecast": demand_p.to_numpy(),
            "order_up_to": level.to_numpy(),
            "safety_stock": safety.to_numpy(),
            "expected_fill_rate": np.clip(fill, 0.0, 1.0),
            "average_inventory": avg_inv.to_numpy(),
            "inventory_turnover": turnover,
        }
    )


def summary(plan_df: pd.DataFrame) -> dict[str, float]:
    """The whole assortment: units of safety stock, the demand-weighted fill rate and
    the turnover of the total (total demand / total average inventory)."""
    d = plan_df["demand_forecast"] / plan_df["protection_periods"]
    tot_inv = float(plan_df["average_inventory"].sum())
    w = d / d.sum() if d.sum() > 0 else d * 0
    return {
        "series": len(plan_df),
        "safety_stock": float(plan_df["safety_stock"].sum()),
        "fill_rate": float((plan_df["expected_fill_rate"] * w).sum()),
        "inventory_turnover": float(
            (plan_df["inventory_turnover"] * plan_df["average_inventory"]).sum() / tot_inv
        )
        if tot_inv > 0
        else float("nan"),
    }
