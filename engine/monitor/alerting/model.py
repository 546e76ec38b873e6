"""The alerting contract: typed records that the rules, the state, the notification
pipeline, the CLI and the report share (Prometheus' ``AlertState`` enum and ``Alert``
struct, Alertmanager's groups and silences), persisted as JSON by :mod:`.state`."""

from __future__ import annotations

import enum
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def _no_interval() -> list[float | None]:
    return [None, None]


class AlertStatus(enum.StrEnum):
    """Prometheus' states: a rule that holds is *pending*, *firing* once it has held for
    ``for``; *inactive* again (one resolve) once it has not held for ``keep_firing_for``."""

    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


class _Record(BaseModel):
    # state files written by older versions carry fields no longer used: ignored on load
    model_config = ConfigDict(extra="ignore", validate_assignment=False)


class Judgement(_Record):
    """One rule on one slice of one model version in one monitor run."""

    key: str  # app|rule|version|slice: the alert's identity (dedup key of its state)
    app: str
    rule: str
    version: str
    role: str
    slice: str
    statistic: str
    severity: str
    holds: bool
    value: float | None
    interval: list[float | None]
    n: int
    note: str = ""

    def labels(self) -> dict[str, str]:
        from engine.config.monitor import STATISTICS

        return {
            "app": self.app,
            "rule": self.rule,
            "version": self.version,
            "role": self.role,
            "slice": self.slice,
            "statistic": self.statistic,
            "severity": self.severity,
            "scope": STATISTICS.get(self.statistic, ("", ""))[0],
        }

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


class Alert(_Record):
    """The remembered state of one alert (one key)."""

    state: AlertStatus = AlertStatus.INACTIVE
    labels: dict[str, str] = Field(default_factory=dict)
    value: float | None = None
    interval: list[float | None] = Field(default_factory=_no_interval)
    n: int = 0
    last_eval: float | None = None
    active_since: float | None = None
    last_holds_at: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    incidents: int = 0
    incident: str | None = None
    retrain: str | None = None

    @property
    def rule(self) -> str:
        return self.labels.get("rule", "")


class Group(_Record):
    """An Alertmanager aggregation group: the alerts that share the route's ``group_by``
    labels, notified together (one page per incident, updates when its members change)."""

    key: str
    labels: dict[str, str]
    first_seen: float | None = None  # when a member first fired (group_wait counts from it)
    open: bool = False  # a trigger went out and no resolve yet
    incident: int = 0
    notified: list[str] = Field(default_factory=list)  # members in the last notification
    last_notified_at: float | None = None


class Notification(_Record):
    """One message to one sink: a group's trigger (first page, update or repeat) or resolve."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    sink: str
    action: str  # trigger | resolve (PagerDuty Events v2's event_action)
    kind: str  # new | update | repeat | resolve
    dedup_key: str  # the group's key: the app, the rule and the version by default
    group: dict[str, str]
    rule: str
    severity: str
    model: str | None = None
    version: str
    slice: str = ""  # the members' slices, joined (a feature rule: the features)
    statistic: str = ""
    value: float | None = None
    interval: list[float | None] = Field(default_factory=_no_interval)
    threshold: str = ""
    alerts: list[dict[str, Any]] = Field(default_factory=list)  # every member with its numbers
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    window: dict[str, Any] | None = None
    run_id: str | None = None
    source: str = "insight-engine"
    summary: str
    first_step: str = ""  # what the person on call does first
    link: str = ""  # the report's section
    incident: str | None = None
    attempts: int = 0
    last_error: str | None = None

    def payload(self) -> dict[str, Any]:
        """What a sink sends: everything but the delivery bookkeeping."""
        return self.model_dump(exclude={"sink", "attempts", "last_error"})


class Matcher(_Record):
    """``label=value`` (equal) or ``label=~regex`` (full match), as Alertmanager writes them."""

    label: str
    value: str
    regex: bool = False

    @classmethod
    def parse(cls, text: str) -> Matcher:
        name, op, value = text.partition("=~") if "=~" in text else text.partition("=")
        name, value = name.strip(), value.strip().strip('"')
        if not op or not name or not value:
            raise ValueError(
                f"matcher {text!r} is not label=value or label=~regex. Fix: e.g. "
                "--match rule=feature-drift or --match slice=~'amount.*'."
            )
        if op == "=~":
            import re

            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"matcher {text!r}: bad regex ({exc}).") from None
        return cls(label=name, value=value, regex=op == "=~")

    def matches(self, labels: dict[str, str]) -> bool:
        got = labels.get(self.label, "")
        if self.regex:
            import re

            return re.fullmatch(self.value, got) is not None
        return got == self.value

    def __str__(self) -> str:
        return f"{self.label}{'=~' if self.regex else '='}{self.value}"


class Silence(_Record):
    """Mute notifications of matching alerts from ``starts_at`` to ``ends_at`` (seconds since
    the epoch); their states still move, and an alert still firing when the silence ends
    is notified then."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    matchers: list[Matcher]
    starts_at: float
    ends_at: float
    comment: str
    created_by: str
    created_at: float
    expired_by: str | None = None  # who ended it early

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)
