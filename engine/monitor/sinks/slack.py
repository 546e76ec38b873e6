"""Slack incoming webhook: ``POST {"text": ...}`` to the URL in ``url_env``."""

from __future__ import annotations

from typing import Any

from engine.config.monitor import SlackSink
from engine.monitor.sinks._http import post_json, secret


def text(note: dict[str, Any]) -> str:
    state = "FIRING" if note["action"] == "trigger" else "RESOLVED"
    if note.get("kind") == "update":
        state = "FIRING, UPDATED"
    out = f"[{state}] {note['summary']} (dedup {note['dedup_key']})"
    if note.get("first_step"):
        out += f"\nFirst: {note['first_step']}"
    if note.get("link"):
        out += f"\nReport: {note['link']}"
    return out


def send(cfg: SlackSink, note: dict[str, Any]) -> None:
    post_json(cfg, secret(cfg.url_env, "slack"), {"text": text(note)}, "slack webhook")
