"""The report's targeting panel, from aggregates only: for each targeting model of the
workspace's registry, its champion's card (the campaign, the chosen learner's held-out
Qini with its band, the profit over budgets, the policy against its rivals at the budget,
the segment tables) and the targeting monitor's live lift per segment. Every number names
the model version it is about."""

from __future__ import annotations

import json
from typing import Any

from engine.workspace import Workspace


def _card(run_id: str) -> dict[str, Any] | None:
    import mlflow

    from engine.stages.target import CARD

    try:
        return dict(json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{CARD}")))
    except Exception:  # a run without a card
        return None


def targeting_section(ws: Workspace) -> list[dict[str, Any]]:
    """One entry per targeting model (empty: no targeting in this workspace)."""
    from engine.monitor.store import read_history
    from engine.report.demand import champions
    from engine.tracking import use_workspace

    use_workspace(ws)
    history = read_history(ws, "history-target")
    out = []
    for name, mv in champions("target"):
        card = _card(mv.run_id)
        if card is None:
            continue
        live = next((r for r in reversed(history) if r.get("model") == name), None)
        p = card["policy"]
        out.append(
            {
                "model": name,
                "version": str(mv.version),
                "campaign": card["campaign"],
                "chosen": card["chosen"],
                "why": card["search"]["why"],
                "configurations": [
                    {"name": s["name"], "qini": s["qini"], "se": s["se"]}
                    for s in card["search"]["configurations"]
                ],
                "curves": card.get("curves") or [],
                "profit_curve": p["profit_curve"],
                "at_budget": p["at_budget"],
                "budget": p["budget"],
                "currency": p["currency"],
                "policy_arms": p.get("policy_arms") or {},
                "segments": card["segments"],
                "randomisation": card["randomisation"],
                "live": live,
            }
        )
    return out
