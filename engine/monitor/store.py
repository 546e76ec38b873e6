"""The monitor's on-disk store, owned here: ``<workspace>/monitor/`` holds ``state.json``
(alert states, groups, outbox, retrain requests: engine.monitor.alerting), ``silences.json``,
``history.jsonl`` (one line per run: the numbers the report plots) and ``runs/`` (each run's
whole result), plus the cached reference profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.workspace import Workspace


def monitor_dir(ws: Workspace) -> Path:
    return ws.monitor


def state_path(ws: Workspace) -> Path:
    return monitor_dir(ws) / "state.json"


def history_path(ws: Workspace) -> Path:
    return monitor_dir(ws) / "history.jsonl"


def _triple(d: dict[str, Any] | None) -> list[float | None] | None:
    """[estimate, low, high] of a statistic (None when not measured)."""
    if not d or d.get("estimate") is None:
        return None
    return [d.get("estimate"), d.get("low"), d.get("high")]


def append_history(ws: Workspace, r: dict[str, Any]) -> None:
    """One line per run, the numbers the report plots (a partial last line, from a killed
    run, is skipped by readers)."""
    models = {}
    for v, m in r["models"].items():
        sc = m.get("score", {})
        feats = m.get("features", {})
        models[v] = {
            "role": m["role"],
            "rows": m["rows"],
            "requests": m["requests"],
            "decision_rate": (sc.get("decision_rate") or {}).get("estimate"),
            "score_mean": sc.get("mean"),
            "score_psi": (sc.get("psi") or {}).get("estimate"),
            "latency": {
                k: (m["latency"].get(k) or {}).get("estimate")
                for k in ("p50_ms", "p95_ms", "p99_ms")
            },
            "drifted": m.get("drifted", []),
            "psi": {f: s["psi"]["estimate"] for f, s in feats.items() if "psi" in s},
            "js": {f: s["js"]["estimate"] for f, s in feats.items() if "js" in s},
            "concept": {
                k: (m["concept"].get(k) or {}).get("estimate")
                for k in (
                    "coverage",
                    "auc",
                    "correlation",
                    "correlation_ratio",
                    "label_rate",
                    "lift_top_decile",
                )
            },
            "confusion": m["concept"].get("confusion"),
            "fairness": {
                a: {k: _triple(f.get(k)) for k in ("selection_rate_gap", "outcome_rate_gap")}
                for a, f in m.get("fairness", {}).items()
            },
            "ate": _triple((m.get("uplift") or {}).get("ate")),
        }
    line = {
        "run_id": r["run_id"],
        "ran_at": r.get("generated_at"),
        "from": r["window"]["from"],
        "to": r["window"]["to"],
        "requests": r["traffic"]["requests"],
        "rows": r["traffic"]["rows"],
        "chain_ok": r["audit"]["chain_ok"],
        "models": models,
        "firing": r.get("rules", {}).get("firing", []),
        "pending": r.get("rules", {}).get("pending", []),
        "changes": r.get("rules", {}).get("changes", []),
        "covered": [
            [c["segment"], c["first_seq"], c["last_seq"]] for c in r["audit"].get("covered", [])
        ],
    }
    p = history_path(ws)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line, default=str) + "\n")


def read_history(ws: Workspace) -> list[dict[str, Any]]:
    p = history_path(ws)
    if not p.is_file():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line a killed run left half-written
    return out
