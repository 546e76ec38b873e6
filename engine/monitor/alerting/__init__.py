"""Alerting, split along Prometheus and Alertmanager lines:

- :mod:`.rules`: each statistic is declared once (``engine.config.monitor.STATISTICS``) and
  judged on a monitor result (:func:`judge`);
- :mod:`.state`: alert states (:class:`AlertStatus`) and the persisted store
  (:class:`AlertState`);
- :mod:`.pipeline`: group, inhibit, silence, queue (:func:`route`);
- :mod:`.notify`: delivery with dedup and retries (:func:`deliver`);
- :mod:`.silences`: ``insight alerts silence``.

:func:`step` runs one evaluation: states, then the notification pipeline.
"""

from __future__ import annotations

import time
from typing import Any

from engine.config.monitor import MonitorConfig
from engine.monitor.alerting.model import (
    Alert,
    AlertStatus,
    Group,
    Judgement,
    Notification,
    Silence,
)
from engine.monitor.alerting.notify import deliver
from engine.monitor.alerting.pipeline import route
from engine.monitor.alerting.rules import alert_key, judge
from engine.monitor.alerting.state import AlertState, advance

__all__ = [
    "Alert",
    "AlertState",
    "AlertStatus",
    "Group",
    "Judgement",
    "Notification",
    "Silence",
    "alert_key",
    "deliver",
    "judge",
    "step",
]


def step(
    cfg: MonitorConfig,
    state: AlertState,
    judgements: list[Judgement],
    now: float,
    ctx: dict[str, Any],
    silences: list[Silence] | None = None,
    wall: float | None = None,
) -> list[dict[str, Any]]:
    """Move every alert one evaluation forward at ``now`` (the window's end) and queue the
    notifications that are due (not yet saved or sent). ``silences`` are matched at
    ``wall`` (now, by the clock). Returns the state transitions; what was muted and why is
    in ``ctx['muted']`` afterwards."""
    app = str(ctx.get("app") or (judgements[0].app if judgements else "insight"))
    changes = advance(cfg, state, judgements, now, app)
    routed = route(cfg, state, now, ctx, silences or [], time.time() if wall is None else wall, app)
    ctx["muted"] = routed["muted"]
    ctx["open_groups"] = routed["open_groups"]
    return changes
