"""The demo's targeting leg: the sample business's randomised e-mail campaign (two offer
arms and a control, known effects per customer) taken as a user would (``insight init
--treatment``), trained, and then used on next month's customers under a budget. Because
the generator knows every customer's true effect, the demo can say how much of the
achievable profit the policy captured, and what contacting by churn risk (the usual
instinct) would have earned instead.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import yaml

from engine.console import console
from engine.workspace import Workspace

VALUE = 30.0  # EUR per extra visit that buys
COSTS = {"Discount E-Mail": 1.0, "News E-Mail": 0.25}


def _true_profit(assign: np.ndarray, truth: pd.DataFrame, arms: list[str]) -> float:
    """Incremental profit of giving row i arm assign[i] (0: no contact), from the truth."""
    tau = np.column_stack([np.zeros(len(truth))] + [truth[f"true_{a}"] for a in arms[1:]])
    cost = np.asarray([0.0] + [COSTS[a] for a in arms[1:]])
    rows = np.arange(len(truth))
    return float((VALUE * tau[rows, assign] - cost[assign]).sum())


def _best_by(score: np.ndarray, arm: int, budget: int) -> np.ndarray:
    out = np.zeros(score.size, dtype=np.int64)
    out[np.argsort(-score, kind="stable")[:budget]] = arm
    return out


def run_targeting(ws: Workspace, size: str | None = None, serve: bool = False) -> dict[str, Any]:
    from engine.config.target import TargetProject
    from engine.data.campaign import make_campaign
    from engine.data.init import snake
    from engine.stages.target import load_targeter, stage_target_train
    from engine.targeting.init import plan_campaign, write_campaign_project

    n = 4000 if size == "tiny" else 30_000
    folder = ws.data / "campaign"
    folder.mkdir(parents=True, exist_ok=True)
    table, _ = make_campaign(n, seed=7)
    table.to_csv(folder / "campaign.csv", index=False)
    plan = plan_campaign(folder / "campaign.csv", "segment", "No E-Mail", "visit")
    path = write_campaign_project(plan, folder / "insight.yaml", force=True)
    raw = yaml.safe_load(path.read_text())
    raw["name"] = "email-campaign"
    raw["target"]["risk"] = "churn_score"
    if size == "tiny":
        # the smoke size: one configuration, three folds (the search is exercised by the
        # targeting tests; the demo's point is the story end to end)
        raw["target"].update({"learners": ["t_learner"], "depths": [2], "folds": 3})
    raw["business"] = {
        "value_per_conversion": VALUE,
        "cost_per_contact": COSTS,
        "budget": {"contacts": n // 5},
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    console.print(
        f"campaign: {n:,} customers e-mailed at random ({', '.join(plan.balance['arms'])}); "
        f"project written by insight init: {path}"
    )
    proj = TargetProject.load(path)
    t0 = time.monotonic()
    # the smoke size searches in this process (one configuration: a Tune trial's start-up
    # would be most of it); the full demo searches on Ray Tune
    r = stage_target_train(
        proj, ws, engine="local" if size == "tiny" else "auto", log=console.print
    )
    card = r.card
    at = card["policy"]["at_budget"]
    cur = "EUR"
    console.print(
        f"held out (cross-fitted) at {n // 5:,} contacts: policy "
        f"{at['policy']['profit']:,.0f} {cur} (95% CI {at['policy']['low']:,.0f}.."
        f"{at['policy']['high']:,.0f}) vs random {at['random']['profit']:,.0f}, by churn risk "
        f"{at['treat_by_churn_score']['profit']:,.0f}, everyone {at['treat_all']['profit']:,.0f}"
    )
    declared = {
        k: sum(x["significant"] for x in card["segments"][k]["table"])
        for k in ("kmeans", "effect_tree")
    }
    console.print(
        f"segments with a lift that differs from 0 after Benjamini-Hochberg: "
        f"{declared['kmeans']} of {len(card['segments']['kmeans']['table'])} K-means, "
        f"{declared['effect_tree']} of {len(card['segments']['effect_tree']['table'])} effect-tree"
    )
    # next month: new customers, a budget, the truth
    nxt, truth = make_campaign(n // 2, seed=8)
    customers = nxt.drop(columns=["segment", "visit"])
    customers.columns = [snake(c) for c in customers.columns]
    tg, _ = load_targeter(ws, proj.model_name)
    budget = n // 10
    from engine.config.target import Budget

    dec = tg.decide(customers[tg.model.features], Budget(contacts=budget)).sort_values("row")
    arms = tg.arms
    policy = np.where(dec["contact"], [arms.index(a) if a else 0 for a in dec["arm"]], 0)
    tau = np.column_stack([truth[f"true_{a}"] for a in arms[1:]])
    net = VALUE * tau - np.asarray([COSTS[a] for a in arms[1:]])
    oracle = np.zeros(len(truth), dtype=np.int64)
    best = net.max(axis=1)
    top = np.argsort(-best, kind="stable")[:budget]
    top = top[best[top] > 0]
    oracle[top] = net[top].argmax(axis=1) + 1
    avg_arm = int(np.argmax(net.mean(axis=0))) + 1
    rng = np.random.default_rng(0)
    random = _best_by(rng.random(len(truth)), avg_arm, budget)
    by_risk = _best_by(customers["churn_score"].to_numpy(), avg_arm, budget)
    got = {
        "policy": _true_profit(policy, truth, arms),
        "achievable": _true_profit(oracle, truth, arms),
        "by_churn_risk": _true_profit(by_risk, truth, arms),
        "random": _true_profit(random, truth, arms),
    }
    captured = got["policy"] / got["achievable"] if got["achievable"] > 0 else float("nan")
    rho = float(pd.Series(customers["churn_score"]).rank().corr(pd.Series(best).rank()))
    console.print(
        f"next month, {len(truth):,} customers, budget {budget:,} contacts (true effects): the "
        f"policy earns [bold]{got['policy']:,.0f} {cur}[/], [bold]{captured:.0%}[/] of the "
        f"achievable {got['achievable']:,.0f}; contacting by churn risk "
        f"{got['by_churn_risk']:,.0f}, at random {got['random']:,.0f}. Churn risk and uplift "
        f"rank customers differently (Spearman {rho:+.2f})."
    )
    out: dict[str, Any] = {
        "project": str(path),
        "model": f"{proj.model_name} v{r.version}",
        "chosen": card["chosen"]["name"],
        "oof_qini": card["chosen"]["qini"],
        "at_budget": {k: v["profit"] for k, v in at.items()},
        "true_profit": got,
        "captured": captured,
        "churn_vs_uplift_spearman": rho,
        "seconds": round(time.monotonic() - t0, 1),
    }
    if serve:
        out["served"] = _serve(proj, ws, customers, tg)
    return out


def _serve(proj: Any, ws: Workspace, customers: pd.DataFrame, tg: Any) -> dict[str, Any]:
    """POST /decide with next month's first 200 customers, 20 at a time, on a budget of 25."""
    import httpx

    from engine.config.target import Budget
    from serve.target_app import target_up

    url = target_up(proj, ws, replicas=1, budget=Budget(contacts=25))
    cols = [c for c in [tg.key, *tg.model.features] if c and c in customers.columns]
    rows = customers[cols].head(200).to_dict("records")
    contacts = 0
    held = 0
    with httpx.Client(timeout=60) as c:
        for i in range(0, len(rows), 20):
            r = c.post(f"{url}/", json={"customers": rows[i : i + 20]})
            r.raise_for_status()
            d = r.json()["decisions"]
            contacts += sum(x["contact"] for x in d)
            held += sum(x["held_out"] for x in d)
    console.print(
        f"served POST {url}/: 200 customers in 10 requests, {contacts} contacts (budget 25), "
        f"{held} held out at random as the live control; audit: {ws.audit / 'decide'}"
    )
    return {"url": url, "contacts": contacts, "held_out": held}
