"""A deterministic synthetic retail business with known ground truth.

Tables (Parquet, timestamps are naive UTC microseconds):

- ``customers``: customer_id, email (PII), gender, age, region, plan, signup_time
- ``transactions``: customer_id, txn_time, amount, channel
- ``labels``: customer_id, label_time, churned (no purchase in the 30 days after label_time)
- ``campaign``: customer_id, campaign_time, treated (randomized), converted

Mechanics, so tests can check what models and statistics find:

- each customer buys as a Poisson process with rate ``lam`` (log-normal, lower with age)
  until a latent churn day drawn with a hazard that rises for low ``lam``, for young
  customers, for ``gender == "M"`` (a known base-rate gap for fairness checks) and by the
  subscription ``plan`` (a categorical with signal: basic churns most, premium least;
  ``PLAN_HAZARD``);
- sign-ups arrive uniformly from long before the data starts, so the active population is
  stationary: without the injected drift nothing moves;
- from ``drift_start`` (90 days before the end) amounts are multiplied by ``AMOUNT_DRIFT``
  and the app share of channels rises: features built from ``amount`` and ``channel``
  drift, the others do not;
- the campaign treats a random half of the customers active on its day; conversion
  probability gains ``tau`` that depends on age and region (true ATE recorded).

Everything is a pure function of the parameters and the seed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

END = np.datetime64("2026-01-01T00:00:00", "us")
DAY_US = 86_400 * 1_000_000
DRIFT_DAYS = 90
LABEL_HORIZON_DAYS = 30
LABEL_EVERY_DAYS = 14
ACTIVE_LOOKBACK_DAYS = 60
AMOUNT_DRIFT = 2.0
CHANNELS = np.array(["web", "store", "app"])
CHANNEL_P = np.array([0.45, 0.35, 0.20])
CHANNEL_P_DRIFT = np.array([0.30, 0.20, 0.50])
REGIONS = np.array(["north", "south", "east", "west"])
PLANS = np.array(["basic", "standard", "premium"])
PLAN_P = np.array([0.4, 0.4, 0.2])
PLAN_HAZARD = np.array([2.0, 1.0, 0.45])  # churn hazard multiplier per plan

# Customers per size; transactions are ~15x customers (large: ~15M rows, xlarge: ~45M).
SIZES: dict[str, int] = {
    "tiny": 600,
    "small": 4_000,
    "medium": 100_000,
    "large": 1_000_000,
    "xlarge": 3_000_000,
}


@dataclass(frozen=True)
class RetailParams:
    customers: int = 4_000
    days: int = 300
    seed: int = 7

    @property
    def start(self) -> np.datetime64:
        return END - np.timedelta64(self.days, "D")

    @property
    def drift_start(self) -> np.datetime64:
        return END - np.timedelta64(DRIFT_DAYS, "D")


def _customers(
    p: RetailParams, rng: np.random.Generator
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    n = p.customers
    ids = np.arange(1, n + 1, dtype=np.int64)
    gender = np.where(rng.random(n) < 0.5, "F", "M")
    age = rng.integers(18, 81, n).astype(np.int64)
    region = REGIONS[rng.integers(0, len(REGIONS), n)]
    # Sign-ups uniform over a long past so the active population is stationary in the window.
    signup_day = rng.uniform(-700.0, float(p.days), n)
    lam = np.exp(rng.normal(np.log(0.18), 0.6, n)) * np.where(age > 60, 0.7, 1.0)
    spend = np.exp(rng.normal(np.log(40.0), 0.5, n))
    plan = rng.choice(len(PLANS), n, p=PLAN_P)
    hazard = (
        (1 / 260.0)
        * np.exp(-0.7 * np.log(lam / 0.18))
        * np.where(age < 30, 1.35, 1.0)
        * np.where(gender == "M", 1.3, 1.0)
        * PLAN_HAZARD[plan]
    )
    churn_day = signup_day + rng.exponential(1.0 / hazard)
    start_us = p.start.astype(np.int64)
    signup_time = (start_us + (signup_day * DAY_US).astype(np.int64)).astype("datetime64[us]")
    df = pd.DataFrame(
        {
            "customer_id": ids,
            "email": [f"customer{i}@example.com" for i in ids],
            "gender": gender,
            "age": age,
            "region": region,
            "plan": PLANS[plan],
            "signup_time": signup_time,
        }
    )
    latent = {"lam": lam, "spend": spend, "signup_day": signup_day, "churn_day": churn_day}
    return df, latent


def _transactions(
    p: RetailParams, rng: np.random.Generator, lat: dict[str, np.ndarray]
) -> pd.DataFrame:
    lo = np.clip(lat["signup_day"], 0.0, p.days)
    hi = np.clip(lat["churn_day"], 0.0, p.days)
    active = np.maximum(hi - lo, 0.0)
    counts = rng.poisson(lat["lam"] * active)
    cust_idx = np.repeat(np.arange(p.customers), counts)
    day = lo[cust_idx] + rng.random(cust_idx.size) * active[cust_idx]
    drift_day = float(p.days - DRIFT_DAYS)
    drifted = day >= drift_day
    amount = lat["spend"][cust_idx] * np.exp(rng.normal(0.0, 0.4, cust_idx.size))
    amount = np.where(drifted, amount * AMOUNT_DRIFT, amount)
    u = rng.random(cust_idx.size)
    cdf_ref, cdf_drift = np.cumsum(CHANNEL_P), np.cumsum(CHANNEL_P_DRIFT)
    ch = np.where(drifted, np.searchsorted(cdf_drift, u), np.searchsorted(cdf_ref, u))
    t_us = p.start.astype(np.int64) + (day * DAY_US).astype(np.int64)
    order = np.lexsort((t_us, cust_idx))
    return pd.DataFrame(
        {
            "customer_id": (cust_idx[order] + 1).astype(np.int64),
            "txn_time": t_us[order].astype("datetime64[us]"),
            "amount": np.round(amount[order], 2),
            "channel": CHANNELS[np.minimum(ch[order], 2)],
        }
    )


def _labels(p: RetailParams, txns: pd.DataFrame) -> pd.DataFrame:
    """Churn labels every 14 days for customers with a purchase in the previous 60 days."""
    cust = txns["customer_id"].to_numpy()
    # One sorted int64 key per transaction: customer in the high bits, seconds since start
    # in the low 29 bits (17 years); transactions are already ordered by (customer, time).
    sec = 1_000_000
    t = txns["txn_time"].to_numpy().astype(np.int64) // sec
    span = np.int64(1) << 29
    base = p.start.astype(np.int64) // sec
    keys = cust * span + (t - base)
    ids = np.arange(1, p.customers + 1, dtype=np.int64)
    last_label = END - np.timedelta64(LABEL_HORIZON_DAYS, "D")
    first_label = p.start + np.timedelta64(ACTIVE_LOOKBACK_DAYS + 30, "D")
    frames = []
    lt = last_label
    while lt >= first_label:
        off = lt.astype(np.int64) // sec - base
        idx = np.searchsorted(keys, ids * span + off, side="right")
        prev_ok = (idx > 0) & (keys[np.maximum(idx - 1, 0)] // span == ids)
        prev_t = keys[np.maximum(idx - 1, 0)] % span
        active = prev_ok & (prev_t > off - ACTIVE_LOOKBACK_DAYS * 86_400)
        nxt = np.minimum(idx, keys.size - 1)
        has_next = (idx < keys.size) & (keys[nxt] // span == ids)
        bought = has_next & (keys[nxt] % span <= off + LABEL_HORIZON_DAYS * 86_400)
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": ids[active],
                    "label_time": np.full(int(active.sum()), lt),
                    "churned": (~bought[active]).astype(np.int64),
                }
            )
        )
        lt = lt - np.timedelta64(LABEL_EVERY_DAYS, "D")
    out = pd.concat(frames[::-1], ignore_index=True)
    out["label_time"] = out["label_time"].astype("datetime64[us]")
    return out


def _campaign(
    p: RetailParams, rng: np.random.Generator, cust: pd.DataFrame, lat: dict[str, np.ndarray]
) -> tuple[pd.DataFrame, dict[str, float]]:
    day = float(p.days - 120)
    active = (lat["signup_day"] <= day) & (lat["churn_day"] > day)
    idx = np.flatnonzero(active)
    treated = (rng.random(idx.size) < 0.5).astype(np.int64)
    age = cust["age"].to_numpy()[idx]
    region = cust["region"].to_numpy()[idx]
    base = np.clip(0.05 + 0.25 * np.tanh(lat["lam"][idx] / 0.3), 0.0, 0.6)
    tau = 0.02 + 0.08 * (age < 35) - 0.03 * (region == "south")
    converted = (rng.random(idx.size) < base + tau * treated).astype(np.int64)
    t = p.start + np.timedelta64(int(day), "D")
    df = pd.DataFrame(
        {
            "customer_id": cust["customer_id"].to_numpy()[idx],
            "campaign_time": np.full(idx.size, t).astype("datetime64[us]"),
            "treated": treated,
            "converted": converted,
        }
    )
    truth = {"true_ate": float(tau.mean()), "n": int(idx.size)}
    return df, truth


def generate_retail(
    params: RetailParams, out_dir: Path, *, force: bool = False
) -> dict[str, object]:
    """Generate the retail tables into ``out_dir`` and return the ground truth.

    Idempotent: if ``out_dir`` already holds data for the same parameters it is reused.
    The folder appears whole or not at all (written to a temp folder, then renamed).

    Examples
    --------
    >>> truth = generate_retail(RetailParams(customers=600), Path("/tmp/retail"))  # doctest: +SKIP
    >>> sorted(truth["drift"]["columns"])  # doctest: +SKIP
    ['amount', 'channel']
    """
    out_dir = Path(out_dir)
    truth_path = out_dir / "ground_truth.json"
    if truth_path.is_file() and not force:
        cached: dict[str, object] = json.loads(truth_path.read_text())
        if cached.get("params") == asdict(params):
            cached["reused"] = True
            return cached

    rng = np.random.default_rng(params.seed)
    cust, lat = _customers(params, rng)
    txns = _transactions(params, rng, lat)
    labels = _labels(params, txns)
    campaign, camp_truth = _campaign(params, rng, cust, lat)
    gender = cust.set_index("customer_id")["gender"]
    lab_g = gender.reindex(labels["customer_id"]).to_numpy()
    truth: dict[str, object] = {
        "params": asdict(params),
        "start": str(params.start),
        "end": str(END),
        "rows": {
            "customers": len(cust),
            "transactions": len(txns),
            "labels": len(labels),
            "campaign": len(campaign),
        },
        "churn_rate": float(labels["churned"].mean()),
        "churn_rate_by_gender": {
            g: float(labels["churned"].to_numpy()[lab_g == g].mean()) for g in ("F", "M")
        },
        "churn_rate_by_plan": {
            str(p): float(
                labels["churned"]
                .to_numpy()[
                    cust.set_index("customer_id")["plan"].reindex(labels["customer_id"]).to_numpy()
                    == p
                ]
                .mean()
            )
            for p in PLANS
        },
        "campaign": camp_truth,
        "drift": {
            "start": str(params.drift_start),
            "columns": {
                "amount": f"multiplied by {AMOUNT_DRIFT}",
                "channel": f"shares {CHANNEL_P.tolist()} -> {CHANNEL_P_DRIFT.tolist()} "
                f"for {CHANNELS.tolist()}",
            },
            # Features whose window lies wholly after drift_start for labels in the current
            # window; a drift check must flag these and none of `stable_features`.
            "drifted_features": [
                "amount_sum_7d",
                "amount_sum_30d",
                "amount_mean_30d",
                "app_share_30d",
                "last_amount",
            ],
            "stable_features": ["txn_count_7d", "txn_count_30d", "txn_count_90d", "age", "plan"],
        },
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, df in (
            ("customers", cust),
            ("transactions", txns),
            ("labels", labels),
            ("campaign", campaign),
        ):
            pq.write_table(
                pa.Table.from_pandas(df, preserve_index=False),
                tmp / f"{name}.parquet",
                row_group_size=1_000_000,
            )
        (tmp / "ground_truth.json").write_text(json.dumps(truth, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return truth
