"""The report (``insight report``) and the live dashboard (``insight dashboard``): KPIs,
drift, lift, fairness, latency, alerts and the model timeline, from aggregates only."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.project import ProjectConfig
from engine.workspace import Workspace

MAX_BYTES = 2 * 1024 * 1024


@dataclass
class ReportResult:
    path: Path
    bytes: int
    cards: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    header: dict[str, Any] = field(default_factory=dict)


def write_page(path: Path, text: str) -> None:
    """Temp file beside it, then rename: a reader never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def card_pages(data: dict[str, Any], cards: dict[str, dict[str, Any]]) -> dict[str, str]:
    """relative href -> page, one per version with a card."""
    from engine.report.page import card_href, render_card

    model = data["header"]["model"]
    return {card_href(model, v): render_card(c) for v, c in cards.items()}


def build(
    cfg: ProjectConfig, ws: Workspace, model: str | None = None, *, refresh_s: int | None = None
) -> tuple[dict[str, Any], str, dict[str, str]]:
    """(data, report page, card pages by relative href)."""
    from engine.report.collect import collect, versions
    from engine.report.page import render_report

    vs = versions(cfg, ws, model or cfg.train.model_name)
    data = collect(cfg, ws, model, registered=vs)
    page = render_report(data, refresh_s=refresh_s)
    return data, page, card_pages(data, {v["version"]: v["card"] for v in vs if v.get("card")})


def write_report(
    cfg: ProjectConfig, ws: Workspace, model: str | None = None, out: Path | None = None
) -> ReportResult:
    """Write the report (default: <workspace>/report/report.html) and a page per model card
    under ``cards/`` beside it."""
    t0 = time.monotonic()
    out = (out or ws.site / "report.html").resolve()
    data, page, cards = build(cfg, ws, model)
    written = []
    for href, text in cards.items():
        p = out.parent / href
        write_page(p, text)
        written.append(p)
    write_page(out, page)
    size = len(page.encode("utf-8"))
    return ReportResult(out, size, written, time.monotonic() - t0, data["header"])


def write_forecast_report(proj: Any, ws: Workspace, out: Path | None = None) -> ReportResult:
    """The report of a forecasting-only project (no churn model): its demand panel
    (backtest, stock, live accuracy) and its alerts, from aggregates only."""
    import json

    from engine.forecast.monitor import APP
    from engine.monitor.store import monitor_dir, read_history
    from engine.report.collect import _iso, alerts, control_events
    from engine.report.demand import demand_section
    from engine.report.page import render_report

    t0 = time.monotonic()
    out = (out or ws.site / "report.html").resolve()
    hist = read_history(ws, "history-forecast")
    sp = monitor_dir(ws) / "state.json"
    state = json.loads(sp.read_text()) if sp.is_file() else {}
    state["alerts"] = {
        k: a for k, a in (state.get("alerts") or {}).items() if k.startswith(APP + "|")
    }
    demand = demand_section(ws)
    champ = next((d["version"] for d in demand if d["model"] == proj.forecast.model_name), None)
    last = hist[-1] if hist else {}
    header = {
        "kind": "forecast",
        "project": proj.name,
        "model": proj.forecast.model_name,
        "champion": champ,
        "generated_at": _iso(time.time()),
        "monitor_runs": len(hist),
        "points": len(hist),
        "from_iso": _iso(last.get("from")),
        "to_iso": _iso(last.get("to")),
        "requests": int(last.get("requests") or 0),
        "requests_as_of": last.get("ran_at"),
        "audit_folder": str(ws.audit / APP),
        "audit_segments": [],
        "audit_records": 0,
        "audit_ranges": {},
        "chain_ok": all(h.get("chain_ok", True) for h in hist),
        "versions_served": sorted({v for h in hist for v in h.get("models") or {}}, key=int),
        "versions_registered": [d["version"] for d in demand],
    }
    data = {
        "header": header,
        "series": {},
        "alerts": alerts(hist, state),
        "control": control_events(ws),
        "versions": [],
        "demand": demand,
    }
    page = render_report(data, panels=["demand", "alerts"])
    write_page(out, page)
    return ReportResult(out, len(page.encode("utf-8")), [], time.monotonic() - t0, header)
