"""A contact policy under a budget, its value with a confidence interval, and the
strategies it must beat.

The policy: for each customer and treatment arm k, the net value of contacting them with
k is ``value x tau_k(x) - cost_k``; each customer's best arm is the one with the largest
net value; customers whose best net value is positive are contacted, best first (by net
value for a budget in contacts, by net value per unit of cost for a budget in money: the
greedy answer to the knapsack), until the budget is spent.

Its value on the campaign's own rows is estimated without bias from models that never saw
the row (cross-fitted outcome models mu_a, the arms' shares p_a as propensities): the
doubly robust score of giving row i arm a is ``G[i, a] = mu_a(x_i) + 1[A_i = a] (y_i -
mu_a(x_i)) / p_a`` (Dudik et al. 2011), so a strategy that gives row i arm s_i earns
``sum_i value (G[i, s_i] - G[i, 0]) - cost(s_i)`` over treating no one, with a normal CI
from the rows' independent contributions. The same estimator values treat-all, random
targeting and treat-by-risk (contact whoever is likeliest to act anyway, or to churn), so
the comparison is like for like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.config.target import Budget, TargetBusiness
from engine.errors import ConfigError
from engine.kernels.intervals import z_value


@dataclass
class Economics:
    value: float
    costs: NDArray[np.float64]  # per arm, control = 0
    currency: str = "EUR"

    @classmethod
    def of(cls, b: TargetBusiness, arms: list[str]) -> Economics:
        costs = np.asarray([0.0] + [b.cost(a) for a in arms[1:]])
        return cls(float(b.value_per_conversion), costs, b.currency)


def dr_scores(
    y: NDArray[np.float64], arm: NDArray[np.int64], mu: NDArray[np.float64], shares: NDArray[Any]
) -> NDArray[np.float64]:
    """G[i, a]: the doubly robust outcome of row i under arm a."""
    g = mu.copy()
    for a in range(mu.shape[1]):
        on = arm == a
        g[on, a] += (y[on] - mu[on, a]) / shares[a]
    return g


def best_arms(
    tau: NDArray[np.float64], econ: Economics
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Each row's best treatment arm (1..) and its net value (may be <= 0)."""
    net = econ.value * tau - econ.costs[1:]
    k = np.argmax(net, axis=1)
    return (k + 1).astype(np.int64), net[np.arange(net.shape[0]), k]


def contacts_for(budget: Budget, arm_cost: NDArray[np.float64], order: NDArray[np.int64]) -> int:
    """How many of the rows in ``order`` the budget reaches."""
    if budget.contacts is not None:
        return min(int(budget.contacts), order.size)
    spent = np.cumsum(arm_cost[order])
    return int(np.searchsorted(spent, float(budget.money or 0), side="right"))


def check_budget(budget: Budget, econ: Economics) -> None:
    """A budget that buys not even one contact is a mistake, not an empty list."""
    if budget.money is not None:
        cheapest = float(np.min(econ.costs[1:]))
        if budget.money < cheapest:
            raise ConfigError(
                f"business.budget.money is {budget.money:g} {econ.currency}, below the "
                f"cheapest contact ({cheapest:g}): no one could be contacted. Fix: raise "
                "the budget or lower business.cost_per_contact."
            )
        if cheapest == 0:
            raise ConfigError(
                "business.budget.money is set but a contact costs 0: money limits nothing. "
                "Fix: set business.cost_per_contact, or give the budget in contacts."
            )


def ranking(
    tau: NDArray[np.float64], econ: Economics, by_money: bool
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """(row order, best arm per row, net value per row): rows worth contacting first."""
    arm, net = best_arms(tau, econ)
    key = net / np.maximum(econ.costs[arm], 1e-12) if by_money else net
    order = np.argsort(-key, kind="stable")
    order = order[net[order] > 0]
    return order.astype(np.int64), arm, net


@dataclass
class Value:
    incremental: float  # outcome units (conversions or amount) over treating no one
    profit: float
    low: float
    high: float
    contacts: int
    spend: float

    def asdict(self) -> dict[str, float]:
        return {
            "incremental": self.incremental,
            "profit": self.profit,
            "low": self.low,
            "high": self.high,
            "contacts": float(self.contacts),
            "spend": self.spend,
        }


def value_of(
    assign: NDArray[np.int64], g: NDArray[np.float64], econ: Economics, alpha: float = 0.05
) -> Value:
    """Profit of giving row i arm assign[i] (0 = no contact) over contacting no one."""
    rows = np.arange(assign.size)
    inc = g[rows, assign] - g[:, 0]
    cost = econ.costs[assign]
    d = econ.value * inc - cost
    total = float(d.sum())
    se = math.sqrt(assign.size * float(d.var(ddof=1))) if assign.size > 1 else float("nan")
    z = z_value(alpha)
    return Value(
        float(inc.sum()),
        total,
        total - z * se,
        total + z * se,
        int((assign > 0).sum()),
        float(cost.sum()),
    )


def strategies(
    tau: NDArray[np.float64],
    g: NDArray[np.float64],
    econ: Economics,
    budget: Budget | None,
    risk: NDArray[np.float64],
    risk_name: str,
    seed: int = 0,
) -> dict[str, Any]:
    """The policy and its rivals on the same rows, at the budget (or unlimited)."""
    n = tau.shape[0]
    by_money = budget is not None and budget.money is not None
    order, arm, net = ranking(tau, econ, by_money)
    b = budget or Budget(contacts=n)
    take = contacts_for(b, econ.costs[arm], order)
    policy = np.zeros(n, dtype=np.int64)
    policy[order[:take]] = arm[order[:take]]
    # one arm for everyone in the rivals: the one with the best average net value
    avg = econ.value * (g[:, 1:] - g[:, :1]).mean(axis=0) - econ.costs[1:]
    one = int(np.argmax(avg)) + 1
    everyone = np.arange(n)
    m = contacts_for(b, np.full(n, econ.costs[one]), everyone)
    rng = np.random.default_rng(seed)
    rand = np.zeros(n, dtype=np.int64)
    rand[rng.choice(n, size=m, replace=False)] = one
    risky = np.zeros(n, dtype=np.int64)
    risky[np.argsort(-risk, kind="stable")[:m]] = one
    out: dict[str, Any] = {
        "policy": value_of(policy, g, econ).asdict(),
        "treat_all": value_of(np.full(n, one), g, econ).asdict(),
        "treat_none": value_of(np.zeros(n, dtype=np.int64), g, econ).asdict(),
        "random": value_of(rand, g, econ).asdict(),
        f"treat_by_{risk_name}": value_of(risky, g, econ).asdict(),
    }
    out["rivals_arm"] = one
    # what an online policy serving one customer at a time uses: the least net value the
    # budget reached on these rows (0 without a budget: every profitable contact)
    out["cutoff"] = float(net[order[take - 1]]) if budget is not None and take > 0 else 0.0
    out["policy_arms"] = {int(a): int((policy == a).sum()) for a in np.unique(policy) if a > 0}
    return out


def profit_curve(
    tau: NDArray[np.float64],
    g: NDArray[np.float64],
    econ: Economics,
    points: int = 21,
    alpha: float = 0.05,
) -> list[dict[str, float]]:
    """Policy profit (with CI) at ``points`` budgets from 0 to every row, in contacts: the
    customers ranked once by net value, each budget's total and variance from running
    sums (the same numbers as :func:`value_of` on each budget's assignment, tested)."""
    net_all = econ.value * tau - econ.costs[1:]
    best = (np.argmax(net_all, axis=1) + 1).astype(np.int64)
    net = net_all[np.arange(net_all.shape[0]), best - 1]
    full = np.argsort(-net, kind="stable")
    worth = int((net > 0).sum())
    n = tau.shape[0]
    rows = full
    arm = best[full]
    inc = g[rows, arm] - g[rows, 0]
    cost = econ.costs[arm]
    d = econ.value * inc - cost
    zero = np.zeros(1)
    s_d, s_d2 = np.r_[zero, np.cumsum(d)], np.r_[zero, np.cumsum(d * d)]
    s_inc, s_cost = np.r_[zero, np.cumsum(inc)], np.r_[zero, np.cumsum(cost)]
    z = z_value(alpha)
    out = []
    for share in np.linspace(0.0, 1.0, points):
        k = round(float(share) * n)  # the curve goes past the break-even point
        total = float(s_d[k])
        var = (float(s_d2[k]) - total * total / n) / (n - 1) if n > 1 else float("nan")
        se = math.sqrt(n * max(var, 0.0))
        out.append(
            {
                "share": float(share),
                "contacts": float(k),
                "spend": float(s_cost[k]),
                "profit": total,
                "low": total - z * se,
                "high": total + z * se,
                "incremental": float(s_inc[k]),
                "worth_it": float(k <= worth),
            }
        )
    return out
