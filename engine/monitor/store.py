"""The monitor's on-disk store, owned here: ``<workspace>/monitor/`` holds ``state.json``
(alert states, groups, outbox, retrain requests: engine.monitor.alerting), ``silences.json``,
``history.jsonl`` (one line per run: the numbers the report plots) and ``runs/`` (each run's
whole result), plus the cached reference profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.monitor.result import CategoricalFeature, MonitorResult, NumericFeature, Stat
from engine.workspace import Workspace


def monitor_dir(ws: Workspace) -> Path:
    return ws.monitor


def state_path(ws: Workspace) -> Path:
    return monitor_dir(ws) / "state.json"


def history_path(ws: Workspace, name: str = "history") -> Path:
    """``history.jsonl`` (the churn monitor's), ``history-forecast.jsonl`` (forecasts')."""
    return monitor_dir(ws) / f"{name}.jsonl"


def _est(s: Stat | None) -> float | None:
    return None if s is None else s.estimate


def _tri(s: Stat | None) -> list[float | None] | None:
    return None if s is None else s.triple()


def history_line(r: MonitorResult) -> dict[str, Any]:
    """The numbers of one run the report plots."""
    models = {}
    for v, m in r.models.items():
        sc, c = m.score, m.concept
        feats = m.features
        models[v] = {
            "role": m.role,
            "rows": m.rows,
            "requests": m.requests,
            "decision_rate": _est(sc.decision_rate),
            "score_mean": sc.mean,
            "score_psi": _est(sc.psi),
            "latency": {k: _est(getattr(m.latency, k)) for k in ("p50_ms", "p95_ms", "p99_ms")},
            "drifted": m.drifted,
            "psi": {f: _est(s.psi) for f, s in feats.items() if isinstance(s, NumericFeature)},
            "js": {f: _est(s.js) for f, s in feats.items() if isinstance(s, CategoricalFeature)},
            "concept": {
                k: _est(getattr(c, k))
                for k in (
                    "coverage",
                    "auc",
                    "correlation",
                    "correlation_ratio",
                    "label_rate",
                    "lift_top_decile",
                )
            },
            "confusion": None if c.confusion is None else c.confusion.model_dump(),
            "fairness": {
                a: {
                    "selection_rate_gap": _tri(f.selection_rate_gap),
                    "outcome_rate_gap": _tri(f.outcome_rate_gap),
                }
                for a, f in m.fairness.items()
            },
            "ate": _tri(m.uplift.ate) if m.uplift is not None else None,
            "forecast": {
                g: {
                    "series": q.series,
                    "points": q.points,
                    "issued_points": q.issued_points,
                    "actuals_share": _est(q.actuals_share),
                    "mase": _tri(q.mase),
                    "reference_mase": q.reference_mase,
                    "mase_ratio": _tri(q.mase_ratio),
                    "bias": _tri(q.bias),
                    "coverage": {lv: _tri(c) for lv, c in q.coverage.items()},
                }
                for g, q in m.forecast.items()
            }
            or None,
        }
    rules = r.rules
    return {
        "run_id": r.run_id,
        "ran_at": r.generated_at,
        "from": r.window.from_,
        "to": r.window.to,
        "requests": r.traffic.requests,
        "rows": r.traffic.rows,
        "chain_ok": r.audit.chain_ok,
        "models": models,
        "firing": rules.firing if rules else [],
        "pending": rules.pending if rules else [],
        "changes": rules.changes if rules else [],
        "covered": [[c.segment, c.first_seq, c.last_seq] for c in r.audit.covered],
    }


def append_history(ws: Workspace, r: MonitorResult, name: str = "history") -> None:
    """One line per run, the numbers the report plots (a partial last line, from a killed
    run, is skipped by readers)."""
    p = history_path(ws, name)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a", encoding="utf-8") as f:
        f.write(json.dumps(history_line(r), default=str) + "\n")


def read_history(ws: Workspace, name: str = "history") -> list[dict[str, Any]]:
    p = history_path(ws, name)
    if not p.is_file():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line a killed run left half-written
    return out
