"""Rules judged on a monitor result: each statistic is declared once in
:data:`engine.config.monitor.STATISTICS` with its scope, and found here in the result.

For each rule, each model version it covers and each slice (a feature, a sensitive
attribute, the model as a whole, or the app for app-scope statistics), the rule *holds*
when the statistic's interval lies wholly beyond the threshold (``>``: its low end above;
``<``: its high end below; the point estimate where there is no interval) on a slice of at
least ``min_rows`` rows. Too few rows, or no value, is "not enough data": it never holds,
and the result says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.config.monitor import MonitorConfig, RuleConfig
from engine.monitor.alerting.model import Judgement

if TYPE_CHECKING:  # engine.monitor.result imports the alerting model: no import at load
    from engine.monitor.result import MonitorResult, Stat, VersionResult

# model-scope statistic -> where it lives in a version's result: (section, field)
_PATHS: dict[str, tuple[str, str]] = {
    "score.psi": ("score", "psi"),
    "score.mean_change": ("score", "mean_change"),
    "decision.rate": ("score", "decision_rate"),
    "latency.p95_ms": ("latency", "p95_ms"),
    "latency.p99_ms": ("latency", "p99_ms"),
    "labels.coverage": ("concept", "coverage"),
    "concept.auc": ("concept", "auc"),
    "concept.correlation": ("concept", "correlation"),
    "concept.correlation_ratio": ("concept", "correlation_ratio"),
    "concept.ece": ("concept", "ece"),
    "uplift.ate": ("uplift", "ate"),
    "uplift.ate_change": ("uplift", "ate_change"),
}

_ALWAYS = 10**9  # app-scope counts are judged whatever the row count


def _app_value(rule: RuleConfig, result: MonitorResult) -> Stat:
    from engine.monitor.result import Stat

    if rule.statistic == "review.dispute_rate":
        return result.review or Stat(n=0)
    if rule.statistic == "audit.problems":
        n = len(result.audit.problems)
    else:  # traffic.requests
        n = result.traffic.requests
    return Stat(estimate=float(n), n=_ALWAYS)


def _field(obj: Any, name: str) -> Stat | None:
    from engine.monitor.result import Stat

    v = getattr(obj, name, None) if obj is not None else None
    if isinstance(v, Stat) or v is None:
        return v
    if isinstance(v, float | int) and not isinstance(v, bool):  # a bare number: no interval
        return Stat(estimate=float(v), n=int(getattr(obj, "rows", 0)))
    raise TypeError(f"{name} is not a statistic")


def _values(rule: RuleConfig, model: VersionResult) -> list[tuple[str, Stat | None]]:
    """(slice, statistic) pairs of one rule on one version's result."""
    key = rule.statistic.split(".", 1)[1]
    if rule.scope == "feature":
        names = rule.features if rule.features is not None else list(model.features)
        return [(f, _field(model.features.get(f), key)) for f in names]
    if rule.scope == "group":
        attrs = [rule.attribute] if rule.attribute else list(model.fairness)
        return [(a, _field(model.fairness.get(a), key)) for a in attrs]
    if rule.scope == "segment":  # per group of forecast series, or per effect segment
        if rule.statistic.startswith("target."):
            return [(g, _field(q, key)) for g, q in model.target.items()]
        return [(g, _field(q, key)) for g, q in model.forecast.items()]
    section, name = _PATHS[rule.statistic]
    return [("", _field(getattr(model, section), name))]


def holds(rule: RuleConfig, s: Stat | None) -> tuple[bool, str]:
    if s is None or s.estimate is None:
        return False, "no value (not enough data)"
    if s.n < rule.min_rows:
        return False, f"{s.n} rows < min_rows {rule.min_rows}: not judged"
    lo, hi, est = s.low, s.high, s.estimate
    if rule.op == ">":
        edge = lo if lo is not None else est
        return bool(edge > rule.threshold), "interval low" if lo is not None else "point"
    edge = hi if hi is not None else est
    return bool(edge < rule.threshold), "interval high" if hi is not None else "point"


def alert_key(app: str, rule: str, version: str, sl: str) -> str:
    """An alert's identity: the app first (two apps in one workspace are two alerts)."""
    return f"{app}|{rule}|{version}|{sl or '-'}"


def judge(cfg: MonitorConfig, result: MonitorResult, app: str = "insight") -> list[Judgement]:
    out = []
    for rule in cfg.rules:
        pairs: list[tuple[str, str, list[tuple[str, Stat | None]]]]
        if rule.scope == "app":
            pairs = [("-", "", [("", _app_value(rule, result))])]
        else:
            pairs = [
                (f"v{version}", model.role, _values(rule, model))
                for version, model in result.models.items()
                if rule.models == "all" or model.role == rule.models
            ]
        for version, role, values in pairs:
            for sl, s in values:
                ok, how = holds(rule, s)
                out.append(
                    Judgement(
                        key=alert_key(app, rule.name, version, sl),
                        app=app,
                        rule=rule.name,
                        version=version,
                        role=role,
                        slice=sl,
                        statistic=rule.statistic,
                        severity=rule.severity,
                        holds=ok,
                        value=None if s is None else s.estimate,
                        interval=[None, None] if s is None else [s.low, s.high],
                        n=0 if s is None else s.n,
                        note=how,
                    )
                )
    return out
