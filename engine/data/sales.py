"""A retail sales panel whose truth is known: store x product weekly units.

Each series' expected demand is ``level * season(week) * (price / base_price) **
elasticity * (1 + promo_lift * promo)``, drawn Poisson. The truth kept beside the table:
the elasticity (one for the whole panel), the promotion lift, which series are
intermittent (low rates: most weeks zero), which one has a structural break (its level
drops by half 20 weeks before the end), which products are new (their history starts
late), and the expected demand and one Poisson draw of the ``horizon`` weeks after the
table's end, with the prices and promotions planned for them (written as a future table).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.workspace import atomic_write_text

START = pd.Timestamp("2023-01-02")  # a Monday


def generate_sales(
    out: Path,
    *,
    stores: int = 4,
    products: int = 12,
    weeks: int = 130,
    horizon: int = 8,
    elasticity: float = -1.8,
    promo_lift: float = 0.5,
    seed: int = 7,
) -> dict[str, Any]:
    """Write ``sales.csv``, ``future.csv`` (planned prices and promotions) and
    ``truth.json`` under ``out``; reuse them when already there with the same parameters."""
    params = {
        "stores": stores,
        "products": products,
        "weeks": weeks,
        "horizon": horizon,
        "elasticity": elasticity,
        "promo_lift": promo_lift,
        "seed": seed,
    }
    truth_path = out / "truth.json"
    if truth_path.is_file():
        truth = json.loads(truth_path.read_text())
        if truth.get("params") == params and (out / "sales.csv").is_file():
            return {**truth, "reused": True}
    rng = np.random.default_rng(seed)
    total = weeks + horizon
    t = np.arange(total)
    season = 1 + 0.3 * np.sin(2 * np.pi * (t - 10) / 52)
    rows, future, exp_future = [], [], {}
    intermittent = [f"S{s}/P{p:02d}" for s in range(stores) for p in range(products) if p % 6 == 5]
    new = [f"S{s}/P{p:02d}" for s in range(stores) for p in range(products) if p % 6 == 4]
    brk = f"S0/P{0:02d}"
    for s in range(stores):
        for p in range(products):
            uid = f"S{s}/P{p:02d}"
            level = 0.8 if uid in intermittent else rng.uniform(15, 120)
            base = round(rng.uniform(1.5, 6.0), 2)
            promo = (rng.random(total) < 0.12).astype(int)
            price = np.round(base * (1 - 0.2 * promo) * (1 + rng.normal(0, 0.03, total)), 2)
            mu = level * season * (price / base) ** elasticity * (1 + promo_lift * promo)
            if uid == brk:
                mu = np.where(t >= weeks - 20, mu * 0.5, mu)
            y = rng.poisson(mu)
            first = weeks - 26 if uid in new else 0
            for k in range(first, weeks):
                rows.append(
                    (
                        f"S{s}",
                        f"P{p:02d}",
                        (START + pd.Timedelta(weeks=int(k))).date().isoformat(),
                        int(y[k]),
                        float(price[k]),
                        int(promo[k]),
                    )
                )
            for k in range(weeks, total):
                future.append(
                    (
                        f"S{s}",
                        f"P{p:02d}",
                        (START + pd.Timedelta(weeks=int(k))).date().isoformat(),
                        float(price[k]),
                        int(promo[k]),
                    )
                )
            exp_future[uid] = {"expected": mu[weeks:].tolist(), "draw": y[weeks:].tolist()}
    out.mkdir(parents=True, exist_ok=True)
    cols = ["store", "product", "week", "units", "price", "promo"]
    atomic_write_text(out / "sales.csv", pd.DataFrame(rows, columns=cols).to_csv(index=False))
    atomic_write_text(
        out / "future.csv",
        pd.DataFrame(future, columns=["store", "product", "week", "price", "promo"]).to_csv(
            index=False
        ),
    )
    truth = {
        "params": params,
        "series": stores * products,
        "elasticity": elasticity,
        "promo_lift": promo_lift,
        "intermittent": intermittent,
        "new_products": new,
        "structural_break": brk,
        "future": exp_future,
    }
    atomic_write_text(truth_path, json.dumps(truth))
    return {**truth, "reused": False}


def against_truth(
    forecasts: pd.DataFrame, truth: dict[str, Any], levels: list[int]
) -> dict[str, Any]:
    """How close the forecasts came: their MAE against the true expected demand next to
    the MAE of the truth's own draw (the noise floor), and the intervals' coverage of the
    draw the future actually held."""
    exp, draw = [], []
    for uid, step in zip(forecasts["unique_id"], forecasts["step"], strict=True):
        tr = truth["future"].get(str(uid))
        k = int(step) - 1
        exp.append(np.nan if tr is None else tr["expected"][k])
        draw.append(np.nan if tr is None else tr["draw"][k])
    f = forecasts.assign(expected=exp, draw=draw).dropna(subset=["expected"])
    out: dict[str, Any] = {
        "rows": len(f),
        "mae_vs_expected": float(np.abs(f["forecast"] - f["expected"]).mean()),
        "noise_floor_mae": float(np.abs(f["draw"] - f["expected"]).mean()),
        "coverage": {
            str(lv): float(((f["draw"] >= f[f"lo-{lv}"]) & (f["draw"] <= f[f"hi-{lv}"])).mean())
            for lv in levels
        },
    }
    return out
