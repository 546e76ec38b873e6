"""The ``monitor:`` block of the project file: what the live-traffic monitor measures, the
alert rules (data, not code), where alerts go, and what a firing rule does.

A rule names a statistic of the monitor's result (catalogue: :data:`STATISTICS`), an
operator and a threshold. It *holds* when the statistic's interval lies wholly beyond the
threshold (the point estimate, for statistics without one) and the slice has at least
``min_rows`` rows. Alerts follow Prometheus' semantics: a rule that holds becomes
*pending*, *firing* once it has held for ``for``, and *resolved* once it has not held for
``keep_firing_for``; each alert has a key (app, rule, model version, slice). Firing alerts
reach people through the route (group, inhibit, silence: engine.monitor.alerting).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from engine.config.base import Model

# statistic -> (scope, description). Scope "feature" rules name features (or all of them),
# "group" rules name a sensitive attribute, "model" rules are one number per model version,
# "segment" rules one number per group of forecast series (and "all"), "app" rules one
# number per run (judged even when no version answered).
STATISTICS: dict[str, tuple[str, str]] = {
    "feature.psi": ("feature", "PSI of a numeric feature against the training window"),
    "feature.js": ("feature", "Jensen-Shannon distance of a categorical feature"),
    "feature.p_adjusted": ("feature", "drift test p-value (KS / chi-square), BH-adjusted"),
    "feature.variance_change": ("feature", "relative change of a numeric feature's variance"),
    "feature.null_rate_change": ("feature", "null rate minus the training null rate"),
    "feature.unseen_share": ("feature", "share of a categorical feature's values never seen"),
    "feature.out_of_range_share": ("feature", "share of numeric values outside training range"),
    "score.psi": ("model", "PSI of the scores against the training window's scores"),
    "score.mean_change": ("model", "relative change of the mean score (the predicted rate)"),
    "decision.rate": ("model", "share of rows at or above the threshold"),
    "latency.p95_ms": ("model", "95th percentile request latency"),
    "latency.p99_ms": ("model", "99th percentile request latency"),
    "labels.coverage": ("model", "share of decisions with a delayed label joined"),
    "concept.auc": ("model", "realized ROC AUC on labeled decisions"),
    "concept.correlation": ("model", "score-label correlation on labeled decisions"),
    "concept.correlation_ratio": ("model", "that correlation / its value at training"),
    "concept.ece": ("model", "expected calibration error on labeled decisions"),
    "fairness.selection_rate_gap": ("group", "max-min selection rate across groups"),
    "fairness.outcome_rate_gap": ("group", "max-min observed outcome rate across groups"),
    "fairness.outcome_rate_shift": ("group", "largest |outcome rate - training rate| of a group"),
    "review.dispute_rate": ("app", "share of reviewed decisions analysts disputed (Wilson 95%)"),
    "uplift.ate": ("model", "live ATE of the logged treatment on the logged outcome"),
    "uplift.ate_change": ("model", "relative change of the live ATE vs the training ATE"),
    "forecast.mase": ("segment", "realized MASE of a series group's forecasts (actuals in)"),
    "forecast.mase_ratio": ("segment", "realized MASE / the backtest's on the same series"),
    "forecast.bias": ("segment", "sum(forecast - actual) / sum(actual): + over-forecasts"),
    "forecast.coverage_80": ("segment", "share of actuals inside the 80% intervals"),
    "forecast.coverage_95": ("segment", "share of actuals inside the 95% intervals"),
    "forecast.actuals_share": ("segment", "share of issued forecast points with an actual"),
    "target.lift": (
        "segment",
        "live lift, contacted vs held out among the customers a "
        "targeting policy chose, per effect segment (and all)",
    ),
    "target.lift_change": (
        "segment",
        "relative change of that live lift vs what the model "
        "expected for the same customers: < -0.05 is a 5% decline",
    ),
    "audit.problems": ("app", "problems found verifying the audit chains read"),
    "traffic.requests": ("app", "requests the app answered in the window, all versions"),
}

_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")


def seconds(text: str) -> float:
    """'5m' -> 300.0 (s, m, h, d)."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"'{text}' is not a duration. Fix: e.g. '30s', '5m', '2h' or '7d'.")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


class _Sink(Model):
    """What every sink shares: retries with exponential backoff, and a timeout. Secrets are
    read from the environment variables a sink names, at send time; they never appear in
    the project file, a log or a report."""

    retries: int = Field(default=4, ge=0, le=10)
    backoff_s: float = Field(default=0.5, ge=0)
    timeout_s: float = Field(default=10, gt=0)


class SlackSink(_Sink):
    """A Slack incoming webhook."""

    type: Literal["slack"]
    url_env: str = Field(description="Variable holding the webhook URL (it is a secret).")


class WebhookSink(_Sink):
    """A generic webhook: the notification as JSON."""

    type: Literal["webhook"]
    url_env: str = Field(description="Variable holding the URL.")


class PagerDutySink(_Sink):
    """PagerDuty Events API v2."""

    type: Literal["pagerduty"]
    routing_key_env: str = Field(description="Variable holding the routing (integration) key.")
    url_env: str | None = Field(
        default=None,
        description="Variable overriding the Events API URL (default events.pagerduty.com).",
    )


class EmailSink(_Sink):
    """E-mail over SMTP."""

    type: Literal["email"]
    mail_to: list[str] = Field(min_length=1)
    mail_from: str = "insight@localhost"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_port_env: str | None = Field(
        default=None, description="Variable overriding smtp_port (e.g. a local relay)."
    )
    smtp_user_env: str | None = None
    smtp_password_env: str | None = None
    smtp_starttls: bool = False


# One config type per integration, chosen by `type` (Alertmanager's receivers: one config
# struct each); a field of another integration is an error naming this one's fields.
SinkConfig = Annotated[
    SlackSink | WebhookSink | PagerDutySink | EmailSink, Field(discriminator="type")
]


class RetrainAction(Model):
    cooldown: str = Field(default="1d", description="No second retrain within this time.")
    budget: int = Field(default=3, ge=1, description="At most this many retrains per 7 days.")

    @field_validator("cooldown")
    @classmethod
    def _dur(cls, v: str) -> str:
        seconds(v)
        return v


class RuleConfig(Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    statistic: str
    op: Literal[">", "<"]
    threshold: float
    features: list[str] | None = Field(
        default=None, description="feature rules: which features (default: every feature)."
    )
    attribute: str | None = Field(default=None, description="group rules: which attribute.")
    models: Literal["all", "champion", "challenger"] = "all"
    min_rows: int = Field(default=100, ge=1, description="Smallest slice the rule judges.")
    for_: str = Field(default="0s", alias="for", description="Hold this long before firing.")
    keep_firing_for: str = Field(default="0s", description="Resolve after not holding this long.")
    severity: Literal["critical", "error", "warning", "info"] = "warning"
    sinks: list[str] = Field(default_factory=list)
    action: Literal["none", "retrain"] = "none"
    retrain: RetrainAction = Field(default_factory=RetrainAction)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("statistic")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in STATISTICS:
            raise ValueError(
                f"unknown statistic '{v}'. Fix: use one of {', '.join(sorted(STATISTICS))}."
            )
        return v

    @field_validator("for_", "keep_firing_for")
    @classmethod
    def _durations(cls, v: str) -> str:
        seconds(v)
        return v

    @property
    def scope(self) -> str:
        return STATISTICS[self.statistic][0]


class RolloutConfig(Model):
    """A passing challenger's staggered rollout, watched by the monitor at every step."""

    steps: list[float] = Field(default_factory=lambda: [10.0, 50.0, 100.0])
    min_rows: int = Field(default=200, ge=1, description="Challenger rows per step before judging.")
    max_wait: str = Field(default="30m", description="Give up (and roll back) after this per step.")
    max_selection_gap_increase: float = Field(
        default=0.05,
        ge=0,
        description="Breach: challenger's selection-rate gap exceeds the "
        "champion's by more than this (interval beyond it).",
    )
    max_auc_drop: float = Field(
        default=0.02,
        ge=0,
        description="Breach, when labels exist: challenger realized AUC below "
        "the champion's by more than this.",
    )

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < s <= 100 for s in v) or v != sorted(v) or v[-1] != 100:
            raise ValueError(f"steps must rise within (0, 100] and end at 100, got {v}")
        return v


LABELS = ("app", "rule", "version", "role", "slice", "statistic", "severity", "scope")


class RouteConfig(Model):
    """How firing alerts become notifications (Alertmanager's route): alerts that share the
    ``group_by`` labels are one group, notified as one page that lists them. The first page
    waits ``group_wait`` after the group's first alert fires (monitor runs are discrete, so
    every alert firing in one run is in that page already); a member joining or leaving is
    one update after ``group_interval``; an unchanged group is re-sent after
    ``repeat_interval``; the group is resolved once, when no member fires any more."""

    group_by: list[
        Literal["app", "rule", "version", "role", "slice", "statistic", "severity", "scope"]
    ] = Field(
        default_factory=lambda: ["app", "rule", "version"]  # type: ignore[arg-type]
    )
    group_wait: str = "0s"
    group_interval: str = "5m"
    repeat_interval: str = "4h"
    report_url: str = Field(
        default="report.html",
        description="Where the report is read; a notification links to its section.",
    )

    @field_validator("group_wait", "group_interval", "repeat_interval")
    @classmethod
    def _dur(cls, v: str) -> str:
        seconds(v)
        return v


class InhibitRule(Model):
    """Alertmanager's inhibition: while an alert matching ``source`` fires, alerts matching
    ``target`` with the same values of the ``equal`` labels are not notified (their states
    still move). Matchers are ``label: value`` or ``label: "~regex"``."""

    source: dict[str, str]
    target: dict[str, str]
    equal: list[str] = Field(default_factory=lambda: ["app"])
    why: str = ""

    @field_validator("equal")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in LABELS]
        if bad:
            raise ValueError(f"equal: unknown label(s) {bad}. Fix: use {', '.join(LABELS)}.")
        return v


def default_inhibitions() -> list[InhibitRule]:
    """A broken audit chain or an app without traffic makes drift numbers meaningless: their
    drift and score alerts wait; a critical alert mutes its warning twin."""
    drift = "~(feature|score)\\..*"
    return [
        InhibitRule(
            source={"statistic": "audit.problems"},
            target={"statistic": drift},
            equal=["app"],
            why="the audit chain is broken: the window's numbers cannot be trusted",
        ),
        InhibitRule(
            source={"statistic": "traffic.requests"},
            target={"statistic": drift},
            equal=["app"],
            why="the app has no (or too little) traffic: drift on it is noise",
        ),
        InhibitRule(
            source={"severity": "critical"},
            target={"severity": "warning"},
            equal=["app", "statistic", "version", "slice"],
            why="a critical alert on the same statistic and slice fires",
        ),
    ]


class MonitorConfig(Model):
    """What the live-traffic monitor measures and how it alerts. Drift is decided by the
    project's ``drift:`` rule (engine.monitor.drift.decide), the same as `insight drift`."""

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "fdr" in data:
            raise ValueError(
                "monitor.fdr moved to drift.fdr: one drift rule serves `insight drift` and "
                f"`insight monitor`. Fix: write drift: {{fdr: {data['fdr']}}} and remove "
                "monitor.fdr."
            )
        return data

    latency_slo_p95_ms: float = Field(default=250, gt=0)
    alpha: float = Field(default=0.05, gt=0, lt=1, description="Level of every interval.")
    min_rows: int = Field(default=100, ge=1, description="Default smallest slice judged.")
    label_horizon: str = Field(
        default="60d", description="A label joins the entity's latest decision at most this old."
    )
    every: str = "5m"
    rules: list[RuleConfig] = Field(default_factory=list)
    sinks: dict[str, SinkConfig] = Field(default_factory=dict)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    route: RouteConfig = Field(default_factory=RouteConfig)
    inhibit: list[InhibitRule] = Field(default_factory=default_inhibitions)

    @model_validator(mode="after")
    def _refs(self) -> MonitorConfig:
        names = [r.name for r in self.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rules: names must be unique; repeated: {dup}")
        for r in self.rules:
            for s in r.sinks:
                if s not in self.sinks:
                    raise ValueError(
                        f"rules '{r.name}': unknown sink '{s}' (sinks: "
                        f"{', '.join(self.sinks) or 'none'}). Fix: declare it under monitor.sinks."
                    )
        for v in (self.label_horizon, self.every):
            seconds(v)
        return self
