"""Delivery of the outbox: each notification to its sink, saving after each one, so what
was delivered is never resent and what was not stays queued. A sink that is down (a 429, a
5xx, a refused connection) keeps its notifications for the next run; a 400 drops them,
logged: retrying cannot help. Each sink retries within one delivery by its own settings."""

from __future__ import annotations

import time
from typing import Any

from engine.config.monitor import MonitorConfig
from engine.monitor.alerting.state import AlertState


def deliver(cfg: MonitorConfig, state: AlertState, log: Any = print) -> dict[str, int]:
    """Send the outbox, saving after each delivery: what was delivered is never resent."""
    from engine.monitor.sinks import SinkError, send

    counts = {"sent": 0, "kept": 0, "dropped": 0}
    for note in list(state.outbox):
        sink = cfg.sinks.get(note.sink)
        try:
            if sink is None:
                raise SinkError(f"sink '{note.sink}' is no longer configured", retryable=False)
            send(sink, note.payload())
        except SinkError as exc:
            note.attempts += 1
            note.last_error = str(exc)
            if exc.retryable:
                counts["kept"] += 1
                log(f"alert {note.dedup_key} -> {note.sink}: {exc}; kept for the next run")
                state.save()
                continue
            counts["dropped"] += 1
            log(f"alert {note.dedup_key} -> {note.sink}: {exc}; dropped (retrying cannot help)")
        else:
            counts["sent"] += 1
            state.sent.append(
                {
                    "id": note.id,
                    "key": note.dedup_key,
                    "sink": note.sink,
                    "action": note.action,
                    "kind": note.kind,
                    "at": time.time(),
                }
            )
        state.outbox = [n for n in state.outbox if n is not note]
        state.save()
    return counts
