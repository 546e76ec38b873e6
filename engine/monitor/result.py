"""The monitoring contract: one monitor run's result as typed models.

``engine.monitor.run.monitor_window`` builds a :class:`MonitorResult`; the rules
(engine.monitor.alerting.rules), the monitor stage, the staggered roll-out, the CLI and the
history the report plots read it through these types, and ``runs/<run_id>.json`` is its
JSON dump (:meth:`MonitorResult.dump`), read back with :meth:`MonitorResult.load`.

Every statistic is a :class:`Stat`: a point estimate with its interval (``low``/``high``
None where there is none) and the rows it rests on. Rules judge the interval, not the
point. Unknown fields are errors: a statistic is declared here once, or it does not exist.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.monitor.alerting.model import Judgement


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _clean(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


class Stat(_Part):
    """A statistic with its interval; non-finite values are stored as None."""

    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    n: int = 0

    @classmethod
    def of(
        cls, estimate: float | None, low: float | None = None, high: float | None = None, n: int = 0
    ) -> Stat:
        return cls(estimate=_clean(estimate), low=_clean(low), high=_clean(high), n=int(n))

    @property
    def measured(self) -> bool:
        return self.estimate is not None

    def triple(self) -> list[float | None] | None:
        """[estimate, low, high], or None when not measured (the history's form)."""
        return None if self.estimate is None else [self.estimate, self.low, self.high]

    def minus(self, c: float) -> Stat:
        if self.estimate is None or self.low is None or self.high is None:
            return self
        return Stat.of(self.estimate - c, self.low - c, self.high - c, self.n)


class _Feature(_Part):
    rows: int
    null_rate_change: Stat
    p_value: float | None = None
    p_adjusted: float | None = None
    drifted: bool | None = None

    def distance(self) -> Stat | None:  # PSI for numeric, Jensen-Shannon for categorical
        raise NotImplementedError


class NumericFeature(_Feature):
    kind: Literal["numeric"] = "numeric"
    ks_low: float | None = None
    ks_err: float | None = None
    psi: Stat | None = None
    out_of_range_share: Stat | None = None
    variance_change: Stat | None = None
    mean: float | None = None

    def distance(self) -> Stat | None:
        return self.psi


class CategoricalFeature(_Feature):
    kind: Literal["categorical"] = "categorical"
    unseen_share: Stat
    js: Stat | None = None

    def distance(self) -> Stat | None:
        return self.js


FeatureStats = Annotated[NumericFeature | CategoricalFeature, Field(discriminator="kind")]


class ScoreStats(_Part):
    decision_rate: Stat
    psi: Stat | None = None
    ks_low: float | None = None
    p_value: float | None = None
    mean: float | None = None
    mean_change: Stat | None = None


class Latency(_Part):
    requests: int = 0
    p50_ms: Stat | None = None
    p95_ms: Stat | None = None
    p99_ms: Stat | None = None
    slo_p95_ms: float | None = None
    slo_met: bool | None = None


class Confusion(_Part):
    tp: int
    fp: int
    fn: int
    tn: int


class Concept(_Part):
    """Realized quality on the rows whose labels arrived."""

    coverage: Stat
    labeled: int
    confusion: Confusion | None = None
    auc: Stat | None = None
    correlation: Stat | None = None
    correlation_ratio: Stat | None = None
    ece: Stat | None = None
    label_rate: Stat | None = None
    lift_top_decile: Stat | None = None


class Fairness(_Part):
    rows_with_group: int
    groups_below_min_rows: list[str] = Field(default_factory=list)
    selection_rate_gap: Stat | None = None
    selection_rate_by_group: dict[str, float] = Field(default_factory=dict)
    outcome_rate_gap: Stat | None = None
    outcome_rate_shift_by_group: dict[str, Stat] = Field(default_factory=dict)
    outcome_rate_shift: Stat | None = None


class Uplift(_Part):
    rows: int
    ate: Stat | None = None
    ate_change: Stat | None = None


class TargetLift(_Part):
    """Live lift of one targeting version in one effect segment (engine.targeting.live):
    contacted vs held out at random among the customers it chose."""

    contacted: int
    held_out: int
    lift: Stat
    lift_change: Stat


class ForecastQuality(_Part):
    """Realized accuracy of one group of series' issued forecasts whose actuals arrived,
    against the backtest that chose the model (engine.forecast.monitor). Intervals: a
    bootstrap over series (errors within a series are correlated), or over points when the
    group has fewer than five series."""

    series: int
    points: int
    issued_points: int
    actuals_share: Stat
    mase: Stat
    reference_mase: float | None = None
    mase_ratio: Stat | None = None
    bias: Stat
    coverage_80: Stat | None = None
    coverage_95: Stat | None = None
    coverage: dict[str, Stat] = Field(default_factory=dict)  # level -> share inside


class VersionResult(_Part):
    """One model version's traffic in the window, against its own reference profile."""

    role: str
    rows: int
    requests: int
    profile: bool
    latency: Latency
    concept: Concept
    score: ScoreStats
    features: dict[str, FeatureStats] = Field(default_factory=dict)
    drifted: list[str] = Field(default_factory=list)
    fairness: dict[str, Fairness] = Field(default_factory=dict)
    uplift: Uplift | None = None
    forecast: dict[str, ForecastQuality] = Field(default_factory=dict)  # group -> quality
    target: dict[str, TargetLift] = Field(default_factory=dict)  # effect segment -> lift
    note: str | None = None


class TimeWindow(_Part):
    from_: float = Field(alias="from")
    to: float
    from_iso: str
    to_iso: str


class Covered(_Part):
    segment: str
    first_seq: int
    last_seq: int
    first_hash: str
    last_hash: str
    requests: int


class AuditRead(_Part):
    """What the run read of the audit log, cited exactly, and what verifying it found."""

    folder: str
    segments_read: int
    covered: list[Covered] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    chain_ok: bool
    inputs_logged: bool
    read_by: str | None = None  # "threads: N" or "ray: N tasks" (engine.monitor.partials)
    segments_cached: int = 0  # segments whose partial aggregates came from the cache


class Traffic(_Part):
    requests: int
    rows: int


class LabelsJoined(_Part):
    available: int
    joined_rows: int


class RulesOutcome(_Part):
    """The rules judged on this result and what they moved (engine.monitor.alerting)."""

    judged: list[Judgement] = Field(default_factory=list)
    changes: list[dict[str, Any]] = Field(default_factory=list)  # {key, from, to, ...}
    firing: list[str] = Field(default_factory=list)
    pending: list[str] = Field(default_factory=list)
    muted: dict[str, str] = Field(default_factory=dict)  # alert key -> why not notified
    open_groups: list[str] = Field(default_factory=list)
    queued_notifications: int = 0
    retrain_requests: list[dict[str, Any]] = Field(default_factory=list)


NOTE = (
    "Rules judge intervals: a rule holds only when a statistic's interval lies wholly "
    "beyond its threshold, on a slice of at least the rule's min_rows rows."
)


class MonitorResult(_Part):
    run_id: str
    project: str
    model: str
    window: TimeWindow
    generated_at: str
    audit: AuditRead
    traffic: Traffic
    no_traffic: bool
    note: str = NOTE
    models: dict[str, VersionResult] = Field(default_factory=dict)
    labels: LabelsJoined | None = None
    seconds: dict[str, float] = Field(default_factory=dict)
    rules: RulesOutcome | None = None
    # the human review queue's dispute rate (engine.governance.review), Wilson 95%; None
    # until an analyst has reviewed a decision
    review: Stat | None = None

    def dump(self) -> dict[str, Any]:
        """The JSON form (``runs/<run_id>.json``): field names as written, None kept."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> str:
        return json.dumps(self.dump(), indent=1)

    @classmethod
    def load(cls, path: Path) -> MonitorResult:
        return cls.model_validate_json(path.read_text(encoding="utf-8"))
