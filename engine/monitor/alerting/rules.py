"""Rules judged on a monitor result: each statistic is declared once in
:data:`engine.monitor.config.STATISTICS` with its scope, and found here in the result.

For each rule, each model version it covers and each slice (a feature, a sensitive
attribute, the model as a whole, or the app for app-scope statistics), the rule *holds*
when the statistic's interval lies wholly beyond the threshold (``>``: its low end above;
``<``: its high end below; the point estimate where there is no interval) on a slice of at
least ``min_rows`` rows. Too few rows, or no value, is "not enough data": it never holds,
and the result says so.
"""

from __future__ import annotations

from typing import Any

from engine.monitor.alerting.model import Judgement
from engine.monitor.config import MonitorConfig, RuleConfig

# model-scope statistic -> where it lives in a model's result: (section, key)
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


def _app_value(rule: RuleConfig, result: dict[str, Any]) -> dict[str, Any]:
    if rule.statistic == "audit.problems":
        n = len(result.get("audit", {}).get("problems", []))
    else:  # traffic.requests
        n = int(result.get("traffic", {}).get("requests") or 0)
    return {"estimate": float(n), "low": None, "high": None, "n": _ALWAYS}


def _values(rule: RuleConfig, model: dict[str, Any]) -> list[tuple[str, Any]]:
    """(slice, statistic) pairs of one rule on one model's result."""
    if rule.scope == "feature":
        key = rule.statistic.split(".", 1)[1]
        feats = model.get("features", {})
        names = rule.features if rule.features is not None else list(feats)
        out = []
        for f in names:
            v = feats.get(f, {}).get(key)
            if isinstance(v, float | int) and not isinstance(v, bool):
                v = {"estimate": float(v), "low": None, "high": None, "n": feats[f].get("rows", 0)}
            out.append((f, v))
        return out
    if rule.scope == "group":
        key = rule.statistic.split(".", 1)[1]
        fair = model.get("fairness", {})
        attrs = [rule.attribute] if rule.attribute else list(fair)
        return [(a, fair.get(a, {}).get(key)) for a in attrs]
    section, key = _PATHS[rule.statistic]
    return [("", model.get(section, {}).get(key))]


def holds(rule: RuleConfig, s: Any) -> tuple[bool, str]:
    if not isinstance(s, dict) or s.get("estimate") is None:
        return False, "no value (not enough data)"
    if int(s.get("n") or 0) < rule.min_rows:
        return False, f"{s.get('n', 0)} rows < min_rows {rule.min_rows}: not judged"
    lo, hi, est = s.get("low"), s.get("high"), s["estimate"]
    if rule.op == ">":
        edge = lo if lo is not None else est
        return bool(edge > rule.threshold), "interval low" if lo is not None else "point"
    edge = hi if hi is not None else est
    return bool(edge < rule.threshold), "interval high" if hi is not None else "point"


def alert_key(app: str, rule: str, version: str, sl: str) -> str:
    """An alert's identity: the app first (two apps in one workspace are two alerts)."""
    return f"{app}|{rule}|{version}|{sl or '-'}"


def judge(cfg: MonitorConfig, result: dict[str, Any], app: str = "insight") -> list[Judgement]:
    out = []
    for rule in cfg.rules:
        if rule.scope == "app":
            pairs = [("-", "", [("", _app_value(rule, result))])]
        else:
            pairs = [
                (f"v{version}", model.get("role", ""), _values(rule, model))
                for version, model in result.get("models", {}).items()
                if rule.models == "all" or model.get("role", "") == rule.models
            ]
        for version, role, values in pairs:
            for sl, s in values:
                ok, how = holds(rule, s)
                est = s.get("estimate") if isinstance(s, dict) else None
                iv: list[float | None] = (
                    [s.get("low"), s.get("high")] if isinstance(s, dict) else [None, None]
                )
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
                        value=est,
                        interval=iv,
                        n=int(s.get("n") or 0) if isinstance(s, dict) else 0,
                        note=how,
                    )
                )
    return out
