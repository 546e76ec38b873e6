"""What a targeting model version holds and does: the refitted uplift model, the two
segmentations (to name each customer's segment), the effect segments' lift intervals, and
the economics; ``decide`` turns customers into a ranked contact list under a budget.

A customer's interval is their effect segment's: the honest (held-out half) lift of the
customers who share their rule, for the arm chosen. A per-customer model estimate has no
interval that covers; a segment's does (tested by simulation).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.config.target import Budget
from engine.targeting.learners import UpliftModel
from engine.targeting.policy import Economics, best_arms, check_budget, contacts_for
from engine.targeting.segments import Segmentation

ARTIFACT = "targeter.pkl"


@dataclass
class Targeter:
    model: UpliftModel
    tree: Segmentation
    clusters: Segmentation
    tree_lift: dict[tuple[int, int], tuple[float, float, float]]  # (leaf, arm) -> est, lo, hi
    econ: Economics
    budget: Budget | None
    key: str | None
    snapshot: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def arms(self) -> list[str]:
        return self.model.arms

    def decide(
        self, x: pd.DataFrame, budget: Budget | None = None, keys: pd.Series | None = None
    ) -> pd.DataFrame:
        """One row per customer, best first: contact or not, the arm, the expected lift
        with its segment's interval, the net value, the segment and the rule behind it."""
        b = budget if budget is not None else self.budget
        if b is not None:
            check_budget(b, self.econ)
        x = self.model.inputs(x)  # typed as in training: text as its categories
        tau = self.model.uplift(x)
        arm, net = best_arms(tau, self.econ)
        by_money = b is not None and b.money is not None
        key = net / np.maximum(self.econ.costs[arm], 1e-12) if by_money else net
        order = np.argsort(-key, kind="stable")
        worth = order[net[order] > 0]
        take = contacts_for(b, self.econ.costs[arm], worth) if b is not None else worth.size
        contact = np.zeros(len(x), dtype=bool)
        contact[worth[:take]] = True
        leaf = self.tree.assign(x)
        cluster = self.clusters.assign(x)
        rows = np.arange(len(x))
        lift = tau[rows, arm - 1]
        lo = np.array(
            [
                self.tree_lift.get((int(s), int(a)), (np.nan,) * 3)[1]
                for s, a in zip(leaf, arm, strict=True)
            ]
        )
        hi = np.array(
            [
                self.tree_lift.get((int(s), int(a)), (np.nan,) * 3)[2]
                for s, a in zip(leaf, arm, strict=True)
            ]
        )
        rank = np.empty(len(x), dtype=np.int64)
        rank[order] = np.arange(1, len(x) + 1)
        out = pd.DataFrame(
            {
                "contact": contact,
                "arm": np.where(contact, np.asarray(self.arms, dtype=object)[arm], ""),
                "best_arm": np.asarray(self.arms, dtype=object)[arm],
                "expected_lift": lift,
                "segment_lift_low": lo,
                "segment_lift_high": hi,
                "net_value": net,
                "cost": np.where(contact, self.econ.costs[arm], 0.0),
                "segment": np.asarray(self.tree.names, dtype=object)[leaf],
                "cluster": np.asarray(self.clusters.names, dtype=object)[cluster],
                "rank": rank,
                "row": np.arange(len(x)),  # the customer's position in the input
            },
            index=x.index,
        )
        if keys is not None:
            out.insert(0, self.key or "key", keys.to_numpy())
        return out.sort_values("rank", kind="stable").reset_index(drop=True)

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=5)

    @staticmethod
    def loads(data: bytes) -> Targeter:
        obj = pickle.loads(data)
        if not isinstance(obj, Targeter):
            raise TypeError(f"not a targeter: {type(obj).__name__}")
        return obj


def online_decisions(
    t: Targeter,
    x: pd.DataFrame,
    reserve: Callable[[list[float]], list[bool]],
    rng: np.random.Generator,
    holdout: float,
    threshold: float,
) -> list[dict[str, Any]]:
    """Decisions for customers arriving now (one request), in the request's order: the
    ones worth at least ``threshold`` net, less a random ``holdout`` share (the live
    control), ask ``reserve`` for their contacts, best first; ``reserve`` grants while the
    budget lasts (the Serve app's ledger, shared by every replica)."""
    dec = t.decide(x)  # best first; "row": the request's order
    want = (dec["net_value"] >= max(threshold, 1e-12)).to_numpy()
    held = want & (rng.random(len(dec)) < holdout)
    ask = want & ~held
    granted = np.zeros(len(dec), dtype=bool)
    if ask.any():
        costs = [float(t.econ.costs[t.arms.index(a)]) for a in dec["best_arm"][ask]]
        granted[np.flatnonzero(ask)] = reserve(costs)
    answer: list[dict[str, Any]] = [{} for _ in range(len(dec))]
    for j, r in enumerate(dec.to_dict("records")):
        reason = (
            "held out at random (the live control)"
            if held[j]
            else "net value below the budget's cut-off"
            if not want[j]
            else "budget spent"
            if not granted[j]
            else "contact"
        )
        answer[int(r["row"])] = {
            "contact": bool(granted[j]),
            "arm": r["best_arm"] if granted[j] else None,
            "best_arm": r["best_arm"],
            "expected_lift": float(r["expected_lift"]),
            "lift_interval": [_num(r["segment_lift_low"]), _num(r["segment_lift_high"])],
            "net_value": float(r["net_value"]),
            "segment": r["segment"],
            "cluster": r["cluster"],
            "held_out": bool(held[j]),
            "why": f"{reason}; segment: {r['segment']}",
        }
    return answer


def _num(v: Any) -> float | None:
    f = float(v)
    return None if f != f else f


def summary(decisions: pd.DataFrame, econ: Economics) -> dict[str, Any]:
    """Totals of a decision list: contacts per arm, spend, expected incremental outcome and
    profit (from the model's estimates; the card gives the held-out CI)."""
    c = decisions[decisions["contact"]]
    inc = float(c["expected_lift"].sum())
    return {
        "customers": len(decisions),
        "contacts": len(c),
        "by_arm": {str(k): int(v) for k, v in c["arm"].value_counts().items()},
        "spend": float(c["cost"].sum()),
        "expected_incremental": inc,
        "expected_profit": float(econ.value * inc - c["cost"].sum()),
    }
