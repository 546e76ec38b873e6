"""Alert state that survives restarts: one JSON file, written atomically.

Per alert key the Prometheus states (:class:`AlertStatus`): *pending* when a rule starts to
hold, *firing* once it has held for ``for``, back to *inactive* once it has not held for
``keep_firing_for``. Time is the monitored window's end, so replays are exact. The file also
holds the notification groups, the outbox of notifications not yet delivered (written
before any is sent: a restart resends nothing delivered and loses nothing pending), the
retrain requests and a short delivery log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.monitor import MonitorConfig, RuleConfig, seconds
from engine.monitor.alerting.model import Alert, AlertStatus, Group, Judgement, Notification
from engine.workspace import atomic_write_text

WEEK_S = 7 * 86400


def _t(v: float | None, default: float) -> float:
    """A remembered time, or ``default`` when there is none (0.0 is a time: the epoch)."""
    return default if v is None else float(v)


@dataclass
class AlertState:
    """Everything the monitor remembers between runs (one file, atomic writes)."""

    path: Path
    alerts: dict[str, Alert] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    outbox: list[Notification] = field(default_factory=list)
    retrains: list[dict[str, Any]] = field(default_factory=list)
    last_to: float | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)  # a short delivery log

    @classmethod
    def load(cls, path: Path) -> AlertState:
        if not path.is_file():
            return cls(path)
        d = json.loads(path.read_text())
        alerts = {k: Alert.model_validate(a) for k, a in d.get("alerts", {}).items()}
        return cls(
            path,
            # an alert of an older state file, without labels, is not this version's: left out
            {k: a for k, a in alerts.items() if a.labels},
            {k: Group.model_validate(g) for k, g in d.get("groups", {}).items()},
            [Notification.model_validate(n) for n in d.get("outbox", []) if "group" in n],
            d.get("retrains", []),
            d.get("last_to"),
            d.get("sent", []),
        )

    def save(self) -> None:
        atomic_write_text(
            self.path,
            json.dumps(
                {
                    "alerts": {k: a.model_dump(mode="json") for k, a in self.alerts.items()},
                    "groups": {k: g.model_dump(mode="json") for k, g in self.groups.items()},
                    "outbox": [n.model_dump(mode="json") for n in self.outbox],
                    "retrains": self.retrains,
                    "last_to": self.last_to,
                    "sent": self.sent[-200:],
                },
                indent=1,
            ),
        )

    def with_status(self, status: AlertStatus) -> list[str]:
        return sorted(k for k, a in self.alerts.items() if a.state == status)


def advance(
    cfg: MonitorConfig,
    state: AlertState,
    judgements: list[Judgement],
    now: float,
    app: str = "insight",
) -> list[dict[str, Any]]:
    """Move every alert of ``app`` one evaluation forward at time ``now``. Returns the
    transitions; an alert of the app with no value this run (no traffic) is judged as not
    holding. Another app's alerts are left as they are (its own runs judge them)."""
    rules = {r.name: r for r in cfg.rules}
    seen = set()
    changes: list[dict[str, Any]] = []
    for j in judgements:
        seen.add(j.key)
        a = state.alerts.setdefault(j.key, Alert(labels=j.labels()))
        a.labels = j.labels()
        a.last_eval, a.value, a.interval, a.n = now, j.value, j.interval, j.n
        _step(rules[j.rule], a, j.key, j.holds, now, changes)
    for key, a in state.alerts.items():
        if (
            key not in seen
            and a.labels.get("app") == app
            and a.state != AlertStatus.INACTIVE
            and a.rule in rules
        ):
            _step(rules[a.rule], a, key, False, now, changes)
    return changes


def _step(
    rule: RuleConfig, a: Alert, key: str, holds: bool, now: float, changes: list[dict[str, Any]]
) -> None:
    before = a.state
    if holds:
        a.last_holds_at = now
        if before == AlertStatus.INACTIVE:
            a.state, a.active_since = AlertStatus.PENDING, now
        if a.state == AlertStatus.PENDING and now - _t(a.active_since, now) >= seconds(rule.for_):
            a.state, a.fired_at = AlertStatus.FIRING, now
            a.incidents += 1
            a.incident = f"{key}#{a.incidents}"
    elif before == AlertStatus.PENDING:
        a.state = AlertStatus.INACTIVE
    elif before == AlertStatus.FIRING and now - _t(a.last_holds_at, now) >= seconds(
        rule.keep_firing_for
    ):
        a.state, a.resolved_at = AlertStatus.INACTIVE, now
    if a.state != before:
        changes.append({"key": key, "from": str(before), "to": str(a.state), "at": now})


def request_retrain(
    rule: RuleConfig, incident: str, state: AlertState, now: float, app: str = "insight"
) -> str:
    """One retrain per incident of a rule with ``action: retrain``, within its cooldown and
    weekly budget; returns what happened (requested, or why it was skipped). The request
    names the app: each app's retrain loop runs its own (churn, forecasting)."""
    mine = [r for r in state.retrains if r["rule"] == rule.name and r.get("app", "insight") == app]
    last = max((float(r["at"]) for r in mine), default=-1e18)
    recent = sum(1 for r in mine if now - float(r["at"]) < WEEK_S)
    if now - last < seconds(rule.retrain.cooldown):
        return f"skipped: cooldown {rule.retrain.cooldown} since the last retrain"
    if recent >= rule.retrain.budget:
        return f"skipped: budget of {rule.retrain.budget} retrains per 7 days spent"
    state.retrains.append(
        {"rule": rule.name, "incident": incident, "at": now, "status": "requested", "app": app}
    )
    return "requested"
