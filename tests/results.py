"""Typed monitor results built from the few fields a test cares about: the rest is filled
with an empty, valid window (engine.monitor.result validates every field it is given)."""

from __future__ import annotations

from typing import Any

from engine.monitor.result import MonitorResult


def version(role: str = "champion", rows: int = 500, **parts: Any) -> dict[str, Any]:
    """One version's result as a dict; ``parts`` replace its sections (score, features...)."""
    return {
        "role": role,
        "rows": rows,
        "requests": rows,
        "profile": True,
        "latency": {"requests": rows},
        "concept": {"coverage": {"estimate": None}, "labeled": 0},
        "score": {"decision_rate": {"estimate": None}},
        **parts,
    }


def result(
    models: dict[str, dict[str, Any]] | None = None,
    *,
    problems: list[str] | None = None,
    requests: int = 500,
) -> MonitorResult:
    return MonitorResult.model_validate(
        {
            "run_id": "r",
            "project": "p",
            "model": "m",
            "window": {"from": 0.0, "to": 1.0, "from_iso": "", "to_iso": ""},
            "generated_at": "",
            "audit": {
                "folder": "",
                "segments_read": 1,
                "problems": problems or [],
                "chain_ok": not problems,
                "inputs_logged": True,
            },
            "traffic": {"requests": requests, "rows": requests},
            "no_traffic": requests == 0,
            "models": models or {},
        }
    )
