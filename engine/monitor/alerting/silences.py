"""Silences (``insight alerts silence``): muting matching alerts' notifications for a while,
as Alertmanager does. Kept in one JSON file beside the alert state (written atomically);
every creation and early expiry is also appended to the hash-chained control audit log,
so who muted what, when and why can be checked later."""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine.config.monitor import seconds
from engine.errors import ConfigError, StateError
from engine.monitor.alerting.model import Matcher, Silence
from engine.workspace import Workspace, atomic_write_text


def silences_path(ws: Workspace) -> Path:
    from engine.monitor.store import monitor_dir

    return monitor_dir(ws) / "silences.json"


def load(ws: Workspace) -> list[Silence]:
    p = silences_path(ws)
    if not p.is_file():
        return []
    return [Silence.model_validate(s) for s in json.loads(p.read_text())]


def _save(ws: Workspace, items: list[Silence]) -> None:
    p = silences_path(ws)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps([s.model_dump(mode="json") for s in items], indent=1))


def _audit(ws: Workspace, event: str, s: Silence, by: str) -> None:
    from engine.audit import AuditWriter

    w = AuditWriter(ws.audit / "control", writer="alerts")
    try:
        w.append(
            [
                {
                    "kind": "silence",
                    "event": event,
                    "silence": s.id,
                    "matchers": [str(m) for m in s.matchers],
                    "starts_at": s.starts_at,
                    "ends_at": s.ends_at,
                    "comment": s.comment,
                    "by": by,
                    "time": time.time(),
                }
            ]
        )
    finally:
        w.close()


def create(
    ws: Workspace,
    matchers: list[str],
    duration: str,
    comment: str,
    by: str,
    now: float | None = None,
) -> Silence:
    """A new silence from ``label=value`` / ``label=~regex`` matchers, for ``duration``."""
    if not matchers:
        raise ConfigError(
            "a silence needs at least one --match label=value. Fix: e.g. --match rule=feature-drift."
        )
    if not comment.strip():
        raise ConfigError("a silence needs --comment: say why it is muted (it is audited).")
    try:
        parsed = [Matcher.parse(m) for m in matchers]
        span = seconds(duration)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    t = time.time() if now is None else now
    s = Silence(
        matchers=parsed, starts_at=t, ends_at=t + span, comment=comment, created_by=by, created_at=t
    )
    items = load(ws)
    _save(ws, [*items, s])
    _audit(ws, "created", s, by)
    return s


def expire(ws: Workspace, sid: str, by: str, now: float | None = None) -> Silence:
    """End a silence now (kept in the list as expired)."""
    t = time.time() if now is None else now
    items = load(ws)
    hits = [s for s in items if s.id.startswith(sid)]
    if len(hits) != 1:
        known = ", ".join(s.id for s in items) or "none"
        raise StateError(
            f"silence '{sid}' matches {len(hits)} silences (known: {known}). Fix: pass an id from `insight alerts silences`."
        )
    s = hits[0]
    if s.ends_at > t:
        s.ends_at, s.expired_by = max(t, s.starts_at), by
        _save(ws, items)
        _audit(ws, "expired", s, by)
    return s


def status(s: Silence, now: float) -> str:
    if now < s.starts_at:
        return "pending"
    return "active" if s.active(now) else "expired"
