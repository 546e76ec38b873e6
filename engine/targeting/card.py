"""The targeting card: what the campaign was, which learner was chosen and how sure that
choice is, whether the predicted uplift is calibrated, the segments with their lift CIs,
and the policy's held-out value at the budget against the strategies it must beat.

Every number in it comes from out-of-fold predictions on the campaign's own rows (each row
scored by models fitted without it), so it describes what the policy would have earned on
customers the models had not seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine.config.target import TargetProject
from engine.kernels.effects import ate, bootstrap_ci
from engine.targeting import policy as pol
from engine.targeting.campaign import Campaign
from engine.targeting.evaluate import ConfigScore, calibration
from engine.targeting.learners import crossfit, fit
from engine.targeting.segments import Segmentation, effect_tree, kmeans, segment_table
from engine.targeting.targeter import Targeter


def build_card(
    proj: TargetProject,
    c: Campaign,
    bal: dict[str, Any],
    scores: list[ConfigScore],
    pick: ConfigScore,
    why: str,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], Targeter]:
    t, seg_cfg = proj.target, proj.target.segments
    threads = 2
    cf = crossfit(c, pick.learner, pick.hp, t.folds, t.seed, threads)
    econ = pol.Economics.of(proj.business, c.arms)
    g = pol.dr_scores(c.y, c.arm, cf.mu, c.shares())
    budget = proj.business.budget
    if budget is not None:
        pol.check_budget(budget, econ)
    risk, risk_name = (c.risk, f"{t.risk}") if c.risk is not None else (cf.mu[:, 0], "baseline")
    at = pol.strategies(cf.tau, g, econ, budget, risk, risk_name, t.seed)
    cutoff = at.pop("cutoff")
    curve = pol.profit_curve(cf.tau, g, econ)
    clusters = kmeans(c.x, seg_cfg.k, seg_cfg.k_max, t.seed)
    tree = effect_tree(
        c,
        lambda half: crossfit(half, pick.learner, pick.hp, t.folds, t.seed, threads).tau,
        seg_cfg.tree_depth,
        seg_cfg.min_share,
        t.seed,
    )
    k_table = segment_table(c, clusters, fdr=seg_cfg.fdr, n_boot=seg_cfg.n_boot, seed=t.seed)
    t_table = segment_table(c, tree, fdr=seg_cfg.fdr, n_boot=seg_cfg.n_boot, seed=t.seed)
    log(
        f"segments: {len(clusters.names)} clusters ({clusters.criterion.split(' (')[0]}), "
        f"{len(tree.names)} effect-tree leaves; "
        f"{sum(r['significant'] for r in k_table + t_table)} of {len(k_table) + len(t_table)} "
        f"(segment, arm) lifts differ from 0 at FDR {seg_cfg.fdr}"
    )
    final = fit(c, pick.learner, pick.hp, t.seed, threads)
    tree_lift = {
        (tree.names.index(r["segment"]), c.arms.index(r["arm"])): (r["lift"], r["low"], r["high"])
        for r in t_table
        if r["lift"] is not None
    }
    targeter = Targeter(
        final,
        _slim(tree),
        _slim(clusters),
        tree_lift,
        econ,
        budget,
        t.key,
        meta={"learner": pick.name, "oof_qini": pick.qini, "cutoff": cutoff},
    )
    arms_ate = []
    for k in range(1, c.n_arms):
        on = (c.arm == 0) | (c.arm == k)
        yy, tt = c.y[on], (c.arm[on] == k).astype(np.float64)
        w = ate(yy, tt)
        b = bootstrap_ci(yy, tt, n_boot=1000, seed=t.seed)
        arms_ate.append(
            {
                "arm": c.arms[k],
                "rows": int((c.arm == k).sum()),
                "ate": {"estimate": w.estimate, "low": w.low, "high": w.high},
                "ate_bootstrap": {"low": b.low, "high": b.high},
            }
        )
    n = c.arm.size
    share = at["policy"]["contacts"] / n if n else 0.0
    card: dict[str, Any] = {
        "task": "target",
        "project": proj.name,
        "campaign": {
            "rows": n,
            "arms": c.arms,
            "control": c.arms[0],
            "rows_per_arm": bal["arms"],
            "outcome": t.outcome,
            "outcome_kind": c.outcome_kind,
            "dropped": c.dropped,
            "features": list(c.x.columns),
            "effects": arms_ate,
        },
        "randomisation": {k: v for k, v in bal.items() if k != "comparisons"}
        | {"comparisons": len(bal["comparisons"])},
        "search": {
            "configurations": [
                {"name": s.name, "qini": s.qini, "se": s.se, "per_arm": s.per_arm} for s in scores
            ],
            "chosen": pick.name,
            "why": why,
            "folds": t.folds,
            "metric": "out-of-fold Qini AUC (scikit-uplift's normalisation), row-weighted over "
            "arms",
        },
        "chosen": {"name": pick.name, "qini": pick.qini, "se": pick.se, "per_arm": pick.per_arm},
        "qini_at_budget": _qini_at(c, cf.tau, share),
        "calibration": calibration(c, cf.tau),
        "segments": {
            "kmeans": {"criterion": clusters.criterion, "table": k_table},
            "effect_tree": {"criterion": tree.criterion, "table": t_table},
            "fdr": seg_cfg.fdr,
            "n_boot": seg_cfg.n_boot,
        },
        "policy": {
            "value_per_conversion": econ.value,
            "cost_per_contact": {
                a: float(x) for a, x in zip(c.arms[1:], econ.costs[1:], strict=True)
            },
            "currency": econ.currency,
            "budget": None if budget is None else budget.model_dump(exclude_none=True),
            "at_budget": at,
            "rivals_arm": c.arms[at.pop("rivals_arm")],
            "policy_arms": {c.arms[a]: n for a, n in at.pop("policy_arms").items()},
            "profit_curve": curve,
            "estimator": "doubly robust, cross-fitted outcome models, arm shares as "
            "propensities; normal CI over rows",
            "risk_ranking": risk_name,
            "serving_cutoff": cutoff,
        },
        "curves": _curves(c, cf.tau, t.seed),
    }
    return card, targeter


def _slim(s: Segmentation) -> Segmentation:
    """A segmentation without its per-row codes (the artifact carries no campaign rows)."""
    return Segmentation(
        s.kind,
        np.zeros(0, dtype=np.int64),
        s.names,
        s.criterion,
        s.detail,
        s.model,
        s.columns,
        s.fill,
    )


def _qini_at(c: Campaign, tau: np.ndarray, share: float) -> list[dict[str, Any]]:
    """Each arm's Qini curve at the budget's share of rows (incremental outcome among the
    arm's top-ranked rows, scaled to the rows compared)."""
    from engine.kernels.lift import qini_curve_any

    out = []
    for k in range(1, c.n_arms):
        on = (c.arm == 0) | (c.arm == k)
        x, q = qini_curve_any(c.y[on], (c.arm[on] == k).astype(float), tau[on, k - 1])
        out.append(
            {
                "arm": c.arms[k],
                "share": share,
                "qini": float(np.interp(share * x[-1], x, q)),
                "random": float(share * q[-1]),
            }
        )
    return out


def _curves(c: Campaign, tau: np.ndarray, seed: int) -> list[dict[str, Any]]:
    out = []
    for k in range(1, c.n_arms):
        on = (c.arm == 0) | (c.arm == k)
        y, tt, s = c.y[on], (c.arm[on] == k).astype(float), tau[on, k - 1]
        if c.outcome_kind == "binary":
            from engine.train.uplift import curves

            cv = curves(y, tt, s, alpha=0.05, seed=seed)
        else:
            from engine.kernels.lift import qini_curve_any

            x, q = qini_curve_any(y, tt, s)
            frac = np.linspace(0, 1, 51)
            qi = np.interp(frac * x[-1], x, q)
            cv = {
                "fraction": frac.round(4).tolist(),
                "qini": qi.tolist(),
                "random": (frac * q[-1]).tolist(),
                "rows": int(y.size),
            }
        out.append({"arm": c.arms[k], **cv})
    return out


def card_markdown(card: dict[str, Any]) -> str:
    cm, ch, p = card["campaign"], card["chosen"], card["policy"]
    cur = p["currency"]
    lines = [
        f"# Targeting card: {card['project']}",
        "",
        f"Campaign: {cm['rows']:,} customers, arms "
        + ", ".join(f"{a} ({n:,})" for a, n in cm["rows_per_arm"].items())
        + f"; outcome `{cm['outcome']}` ({cm['outcome_kind']}).",
        "",
        "| arm | rows | ATE | 95% CI |",
        "|---|---|---|---|",
    ]
    for e in cm["effects"]:
        a = e["ate"]
        lines.append(
            f"| {e['arm']} | {e['rows']:,} | {a['estimate']:+.4f} | {a['low']:+.4f}..{a['high']:+.4f} |"
        )
    r = card["randomisation"]
    lines += [
        "",
        "Randomisation check: "
        + (
            "arms balanced on every feature"
            if r["looks_randomised"]
            else f"{len(r['flagged'])} imbalanced comparison(s) ({r['rule']})"
        ),
        "",
    ]
    lines += [
        f"Chosen: **{ch['name']}**, out-of-fold Qini {ch['qini']:.4f} (SE {ch['se']:.4f}). "
        f"{card['search']['why']}.",
        "",
    ]
    lines += ["| configuration | OOF Qini | SE |", "|---|---|---|"]
    for s in card["search"]["configurations"]:
        lines.append(f"| {s['name']} | {s['qini']:.4f} | {s['se']:.4f} |")
    lines += [
        "",
        f"## Policy at the budget ({p['budget'] or 'unlimited'})",
        "",
        f"| strategy | contacts | incremental | profit ({cur}) | 95% CI |",
        "|---|---|---|---|---|",
    ]
    for name, v in p["at_budget"].items():
        lines.append(
            f"| {name} | {v['contacts']:,.0f} | {v['incremental']:,.1f} | {v['profit']:,.0f} | "
            f"{v['low']:,.0f}..{v['high']:,.0f} |"
        )
    for kind in ("kmeans", "effect_tree"):
        sg = card["segments"][kind]
        lines += [
            "",
            f"## Segments: {kind}",
            "",
            sg["criterion"],
            "",
            "| segment | arm | rows (arm/control) | lift | 95% CI | BH p | differs |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in sg["table"]:
            lift = "n/a" if row["lift"] is None else f"{row['lift']:+.4f}"
            ci = "n/a" if row["low"] is None else f"{row['low']:+.4f}..{row['high']:+.4f}"
            padj = "n/a" if row["p_adjusted"] is None else f"{row['p_adjusted']:.3g}"
            lines.append(
                f"| {row['segment']} | {row['arm']} | {row['rows_arm']:,}/{row['rows_control']:,} | "
                f"{lift} | {ci} | {padj} | {'yes' if row['significant'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"
