"""A randomised e-mail campaign with known effects: the sample business's targeting data.

Customers (age, tenure, spend last year, region, channel, a churn-risk score from the
churn model's world) are assigned at random to "No E-Mail" or one of the offer arms.
Each customer's conversion probability without contact depends on their attributes; each
arm adds a known, heterogeneous effect (``true_<arm>`` columns of the truth), so a test or
the demo can say how much of the achievable profit a policy captured. With ``effect=0``
the campaign has no effect at all (the null experiment).

Churn risk and uplift are different rankings on purpose, as in the field: the customers
likeliest to churn are often the least persuadable (the "lost causes"), and the likeliest
buyers buy anyway ("sure things").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ARMS = ("No E-Mail", "Discount E-Mail", "News E-Mail")
REGIONS = np.array(["north", "south", "east", "west"])
CHANNELS = np.array(["web", "store", "app"])


def make_campaign(
    n: int = 20_000,
    arms: tuple[str, ...] = ARMS,
    effect: float = 1.0,
    seed: int = 0,
    amount: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(campaign table, truth): the table as a user would have it, the truth per row
    (``base`` conversion probability, ``true_<arm>`` effect of each treatment arm,
    ``churn_risk``)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    tenure = rng.gamma(2.0, 12.0, n).round(1)
    spend = rng.lognormal(4.0, 0.8, n).round(2)
    region = REGIONS[rng.integers(0, REGIONS.size, n)]
    channel = CHANNELS[rng.choice(CHANNELS.size, n, p=[0.5, 0.3, 0.2])]
    recency = rng.integers(1, 365, n)
    # churn risk: long since the last purchase, short tenure
    churn_risk = 1 / (1 + np.exp(-(-1.5 + recency / 90 - tenure / 30)))
    base = np.clip(0.04 + 0.12 * np.tanh(spend / 150) + 0.05 * (channel == "app"), 0, 0.6)
    base = base * (1 - 0.6 * churn_risk)
    # the persuadables: young and mid-recency customers respond to a discount; long-tenure
    # customers to news; the south does not respond; lost causes (high churn risk) barely
    young = age < 35
    mid = (recency > 30) & (recency < 180)
    eff = {
        1: 0.01 + 0.09 * young * mid + 0.03 * mid - 0.02 * (region == "south"),
        2: 0.005 + 0.06 * (tenure > 30) - 0.01 * young,
    }
    truth = pd.DataFrame({"base": base, "churn_risk": churn_risk})
    a = rng.integers(0, len(arms), n)
    p = base.copy()
    for k in range(1, len(arms)):
        tau = effect * np.clip(eff[(k - 1) % 2 + 1] * (1 - 0.7 * churn_risk), -0.05, 0.3)
        truth[f"true_{arms[k]}"] = tau
        p = np.where(a == k, np.clip(base + tau, 0, 1), p)
    converted = rng.random(n) < p
    table = pd.DataFrame(
        {
            "Customer ID": [f"C{seed:02d}{i:07d}" for i in range(n)],
            "Age": age,
            "Tenure (months)": tenure,
            "Spend last year": spend,
            "Region": region,
            "Channel": channel,
            "Days since purchase": recency,
            # what the churn model says of them (its probability, with a model's error)
            "Churn score": np.clip(churn_risk + rng.normal(0, 0.08, n), 0, 1).round(3),
            "segment": np.asarray(arms, dtype=object)[a],
        }
    )
    if amount:
        basket = rng.gamma(2.0, 20.0, n).round(2)
        table["spend"] = np.where(converted, basket, 0.0)
        truth["basket_mean"] = 40.0
    else:
        table["visit"] = np.where(converted, "yes", "no")
    return table, truth
