"""The report's demand panel, from aggregates only: each forecasting model of the
workspace's registry (its champion's card: held-out accuracy overall and per demand kind,
interval coverage, the families that won), the latest batch run's stock figures (safety
stock, expected fill rate, inventory turnover, from its audit record), and the forecast
monitor's history (realized accuracy per group of series, with intervals). Every number
names the model version it is about."""

from __future__ import annotations

import datetime as dt
from typing import Any

from engine.workspace import Workspace


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(float(t), dt.UTC).isoformat(timespec="seconds")


def champions(task: str) -> list[tuple[str, Any]]:
    """(name, champion version) of every registered model whose champion is of ``task``
    (forecast, target): the demand and targeting panels' models."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    c = MlflowClient()
    out = []
    for rm in c.search_registered_models():
        try:
            mv = c.get_model_version_by_alias(rm.name, "champion")
        except MlflowException:
            continue
        if (mv.tags or {}).get("task") == task:
            out.append((rm.name, mv))
    return out


def _card(run_id: str) -> dict[str, Any] | None:
    import json

    import mlflow

    from engine.forecast.monitor import CARD

    try:
        return dict(json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{CARD}")))
    except Exception:  # an older run without a card
        return None


def demand_section(ws: Workspace, *, max_points: int = 200) -> list[dict[str, Any]]:
    """One entry per forecasting model (empty: no forecasting in this workspace)."""
    from engine.forecast.monitor import last_batch
    from engine.monitor.store import read_history
    from engine.tracking import use_workspace

    use_workspace(ws)
    history = read_history(ws, "history-forecast")
    out = []
    for name, mv in champions("forecast"):
        card = _card(mv.run_id) or {}
        h = card.get("holdout") or {}
        batch = last_batch(ws, name)
        runs = [r for r in history if r.get("models")]
        live = None
        if runs:
            last = runs[-1]
            v = str(mv.version) if str(mv.version) in last["models"] else max(last["models"])
            live = {
                "version": v,
                "ran_at": last.get("ran_at"),
                "from_iso": _iso(last.get("from")),
                "to_iso": _iso(last.get("to")),
                "groups": last["models"][v].get("forecast") or {},
                "firing": [k for k in last.get("firing") or [] if k.startswith("forecast|")],
            }
        trend = [
            {
                "t": r.get("to"),
                "version": v_,
                "ratio": ((m.get("forecast") or {}).get("all") or {}).get("mase_ratio"),
                "coverage_80": (
                    ((m.get("forecast") or {}).get("all") or {}).get("coverage") or {}
                ).get("80"),
            }
            for r in runs[-max_points:]
            for v_, m in r["models"].items()
        ]
        out.append(
            {
                "model": name,
                "version": str(mv.version),
                "snapshot_id": card.get("snapshot_id"),
                "series": (card.get("series") or {}).get("total"),
                "horizon": card.get("horizon"),
                "freq": card.get("freq"),
                "holdout": {
                    "mase": h.get("mase"),
                    "best_single": h.get("best_single"),
                    "best_single_mase": (h.get("mase_by_candidate") or {}).get(
                        h.get("best_single") or ""
                    ),
                    "wape": h.get("wape"),
                    "bias": h.get("bias"),
                    "coverage": h.get("coverage") or {},
                    "by_group": h.get("by_group") or {},
                },
                "wins": card.get("wins") or {},
                "inventory": None
                if batch is None or not batch.get("inventory")
                else {
                    **batch["inventory"],
                    "version": str((batch.get("versions") or ["?"])[0]),
                    "at_iso": _iso(batch.get("time")),
                },
                "live": live,
                "trend": trend,
            }
        )
    return out
