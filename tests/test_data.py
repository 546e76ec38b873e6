"""Sample data: deterministic, and its recorded ground truth holds in the tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.data import RetailParams, generate_retail
from engine.data.retail import AMOUNT_DRIFT, LABEL_HORIZON_DAYS


def _read(d: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(d / f"{name}.parquet")


def test_deterministic_and_idempotent(tmp_path: Path) -> None:
    a = generate_retail(RetailParams(customers=300, seed=3), tmp_path / "a")
    b = generate_retail(RetailParams(customers=300, seed=3), tmp_path / "b")
    assert a == b
    for name in ("customers", "transactions", "labels", "campaign"):
        pd.testing.assert_frame_equal(_read(tmp_path / "a", name), _read(tmp_path / "b", name))
    again = generate_retail(RetailParams(customers=300, seed=3), tmp_path / "a")
    assert again["reused"] is True
    other = generate_retail(RetailParams(customers=300, seed=4), tmp_path / "a")
    assert "reused" not in other
    assert json.loads((tmp_path / "a" / "ground_truth.json").read_text())["params"]["seed"] == 4


def test_labels_match_transactions(tmp_path: Path) -> None:
    """churned == no purchase in (t, t+30d], recomputed by brute force in pandas."""
    d = tmp_path / "r"
    generate_retail(RetailParams(customers=400, seed=11), d)
    tx, lab = _read(d, "transactions"), _read(d, "labels")
    m = lab.merge(tx, on="customer_id", how="left")
    horizon = pd.Timedelta(days=LABEL_HORIZON_DAYS)
    m["in_next"] = (m["txn_time"] > m["label_time"]) & (m["txn_time"] <= m["label_time"] + horizon)
    m["in_prev"] = (m["txn_time"] <= m["label_time"]) & (
        m["txn_time"] > m["label_time"] - pd.Timedelta(days=60)
    )
    g = m.groupby(["customer_id", "label_time"]).agg(nxt=("in_next", "any"), prv=("in_prev", "any"))
    merged = lab.set_index(["customer_id", "label_time"]).join(g)
    assert merged["prv"].all(), "every labelled customer bought in the previous 60 days"
    np.testing.assert_array_equal(merged["churned"].to_numpy(), (~merged["nxt"]).astype(int))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ground_truth_effects_are_present(tmp_path: Path, seed: int) -> None:
    d = tmp_path / "r"
    truth = generate_retail(RetailParams(customers=6000, seed=seed), d)
    # Known base-rate gap: men churn more.
    by_g = truth["churn_rate_by_gender"]
    assert isinstance(by_g, dict) and by_g["M"] > by_g["F"]
    # The randomized campaign: difference in means is within 4 standard errors of the truth.
    c = _read(d, "campaign")
    y1, y0 = c.loc[c.treated == 1, "converted"], c.loc[c.treated == 0, "converted"]
    est = y1.mean() - y0.mean()
    se = np.sqrt(y1.var() / len(y1) + y0.var() / len(y0))
    camp = truth["campaign"]
    assert isinstance(camp, dict)
    assert abs(est - camp["true_ate"]) < 4 * se
    # Injected drift: amounts after drift_start are AMOUNT_DRIFT times larger (medians).
    tx = _read(d, "transactions")
    drift = truth["drift"]
    assert isinstance(drift, dict)
    after = tx["txn_time"] >= pd.Timestamp(drift["start"])
    ratio = tx.loc[after, "amount"].median() / tx.loc[~after, "amount"].median()
    assert abs(ratio - AMOUNT_DRIFT) < 0.15 * AMOUNT_DRIFT
    app_share = (tx.loc[after, "channel"] == "app").mean()
    assert app_share > 0.4 > (tx.loc[~after, "channel"] == "app").mean()
