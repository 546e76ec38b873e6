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
