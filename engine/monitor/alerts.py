"""Alert rules judged on a monitor result, alert state that survives restarts, and delivery.

Judging (:func:`judge`): for each rule, each model version it covers and each slice (a
feature, a sensitive attribute, or the model as a whole), the rule *holds* when the
statistic's interval lies wholly beyond the threshold (``>``: its low end above; ``<``: its
high end below; the point estimate where there is no interval) on a slice of at least
``min_rows`` rows. Too few rows, or no value, is "not enough data": it never holds, and the
result says so.

State (:class:`AlertState`, one JSON file written atomically): per dedup key
``rule|version|slice`` the Prometheus states: *pending* when a rule starts to hold,
*firing* once it has held for ``for``, back to inactive (with one *resolve*) once it has not
held for ``keep_firing_for``. Time is the monitored window's end, so replays are exact.
Notifications go to an outbox in the same file before any is sent, and leave it only once
delivered: a restart resends nothing delivered and loses nothing pending; a sink that is
down keeps its notifications for the next run (a 400 drops them, logged: retrying cannot
help). A rule with ``action: retrain`` requests one retrain per incident, within its
cooldown and weekly budget.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.monitor.config import MonitorConfig, RuleConfig, seconds
from engine.workspace import atomic_write_text

WEEK_S = 7 * 86400

# statistic -> where it lives in a model's result: (section, key)
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


@dataclass
class Judgement:
    key: str
    rule: str
    version: str
    role: str
    slice: str
    holds: bool
    value: float | None
    interval: list[float | None]
    n: int
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _values(
    rule: RuleConfig, model: dict[str, Any], result: dict[str, Any]
) -> list[tuple[str, Any]]:
    """(slice, statistic) pairs of one rule on one model's result."""
    if rule.statistic == "audit.problems":
        n = len(result["audit"]["problems"])
        return [("", {"estimate": float(n), "low": None, "high": None, "n": 10**9})]
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


def _holds(rule: RuleConfig, s: Any) -> tuple[bool, str]:
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


def judge(cfg: MonitorConfig, result: dict[str, Any]) -> list[Judgement]:
    out = []
    for rule in cfg.rules:
        for version, model in result.get("models", {}).items():
            role = model.get("role", "")
            if rule.models != "all" and role != rule.models:
                continue
            for sl, s in _values(rule, model, result):
                holds, how = _holds(rule, s)
                key = f"{rule.name}|v{version}|{sl or '-'}"
                est = s.get("estimate") if isinstance(s, dict) else None
                iv: list[float | None] = (
                    [s.get("low"), s.get("high")] if isinstance(s, dict) else [None, None]
                )
                out.append(
                    Judgement(
                        key,
                        rule.name,
                        str(version),
                        role,
                        sl,
                        holds,
                        est,
                        iv,
                        int(s.get("n") or 0) if isinstance(s, dict) else 0,
                        how,
                    )
                )
    return out


@dataclass
class AlertState:
    """Everything the monitor remembers between runs (one file, atomic writes)."""

    path: Path
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    retrains: list[dict[str, Any]] = field(default_factory=list)
    last_to: float | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)  # a short delivery log

    @classmethod
    def load(cls, path: Path) -> AlertState:
        if not path.is_file():
            return cls(path)
        d = json.loads(path.read_text())
        return cls(
            path,
            d.get("alerts", {}),
            d.get("outbox", []),
            d.get("retrains", []),
            d.get("last_to"),
            d.get("sent", []),
        )

    def save(self) -> None:
        atomic_write_text(
            self.path,
            json.dumps(
                {
                    "alerts": self.alerts,
                    "outbox": self.outbox,
                    "retrains": self.retrains,
                    "last_to": self.last_to,
                    "sent": self.sent[-200:],
                },
                indent=1,
            ),
        )


def _note(
    action: str, rule: RuleConfig, j: Judgement, a: dict[str, Any], ctx: dict[str, Any]
) -> dict[str, Any]:
    where = f" on {j.slice}" if j.slice else ""
    iv = j.interval
    shown = f"{j.value:.4g}" if j.value is not None else "n/a"
    if iv[0] is not None or iv[1] is not None:
        shown += f" ({'' if iv[0] is None else f'{iv[0]:.4g}'}..{'' if iv[1] is None else f'{iv[1]:.4g}'})"
    verb = "fires" if action == "trigger" else "resolved"
    return {
        "id": uuid.uuid4().hex,
        "action": action,
        "dedup_key": j.key,
        "rule": rule.name,
        "severity": rule.severity,
        "model": ctx.get("model"),
        "version": j.version,
        "role": j.role,
        "slice": j.slice,
        "statistic": rule.statistic,
        "value": j.value,
        "interval": iv,
        "threshold": f"{rule.op} {rule.threshold}",
        "window": ctx.get("window"),
        "run_id": ctx.get("run_id"),
        "source": f"insight-engine/{ctx.get('project')}",
        "summary": f"{ctx.get('model')} v{j.version} ({j.role}): {rule.name} {verb}{where}: "
        f"{rule.statistic} = {shown}, rule {rule.op} {rule.threshold}",
        "incident": a.get("incident"),
    }


def step(
    cfg: MonitorConfig,
    state: AlertState,
    judgements: list[Judgement],
    now: float,
    ctx: dict[str, Any],
) -> list[dict[str, Any]]:
    """Move every alert one evaluation forward at time ``now``; queue notifications and
    retrain requests in ``state`` (not yet saved or sent). Returns the transitions."""
    rules = {r.name: r for r in cfg.rules}
    seen = set()
    changes: list[dict[str, Any]] = []
    for j in judgements:
        seen.add(j.key)
        rule = rules[j.rule]
        a = state.alerts.setdefault(
            j.key,
            {
                "state": "inactive",
                "rule": j.rule,
                "version": j.version,
                "slice": j.slice,
                "incidents": 0,
            },
        )
        a.update(last_eval=now, value=j.value, interval=j.interval, role=j.role)
        _advance(rule, a, j, j.holds, now, state, changes, ctx)
    for key, a in state.alerts.items():  # alerts with no data this run: judged as not holding
        if key not in seen and a["state"] != "inactive" and a["rule"] in rules:
            j = Judgement(
                key,
                a["rule"],
                a["version"],
                a.get("role", ""),
                a["slice"],
                False,
                a.get("value"),
                a.get("interval", [None, None]),
                0,
                "no traffic",
            )
            _advance(rules[a["rule"]], a, j, False, now, state, changes, ctx)
    return changes


def _advance(
    rule: RuleConfig,
    a: dict[str, Any],
    j: Judgement,
    holds: bool,
    now: float,
    state: AlertState,
    changes: list[dict[str, Any]],
    ctx: dict[str, Any],
) -> None:
    before = a["state"]
    if holds:
        a["last_holds_at"] = now
        if before == "inactive":
            a["state"], a["active_since"] = "pending", now
        if a["state"] == "pending" and now - float(a["active_since"]) >= seconds(rule.for_):
            a["state"], a["fired_at"] = "firing", now
            a["incidents"] = int(a.get("incidents", 0)) + 1
            a["incident"] = f"{j.key}#{a['incidents']}"
            _queue(rule, "trigger", a, j, state, ctx)
            _retrain(rule, a, state, now)
    elif before == "pending":
        a["state"] = "inactive"
    elif before == "firing" and now - float(a.get("last_holds_at", now)) >= seconds(
        rule.keep_firing_for
    ):
        a["state"], a["resolved_at"] = "inactive", now
        _queue(rule, "resolve", a, j, state, ctx)
    if a["state"] != before:
        changes.append({"key": j.key, "from": before, "to": a["state"], "at": now})


def _queue(
    rule: RuleConfig,
    action: str,
    a: dict[str, Any],
    j: Judgement,
    state: AlertState,
    ctx: dict[str, Any],
) -> None:
    note = _note(action, rule, j, a, ctx)
    for sink in rule.sinks:
        state.outbox.append({**note, "sink": sink, "attempts": 0})


def _retrain(rule: RuleConfig, a: dict[str, Any], state: AlertState, now: float) -> None:
    if rule.action != "retrain":
        return
    mine = [r for r in state.retrains if r["rule"] == rule.name]
    last = max((float(r["at"]) for r in mine), default=-1e18)
    recent = sum(1 for r in mine if now - float(r["at"]) < WEEK_S)
    if now - last < seconds(rule.retrain.cooldown):
        a["retrain"] = f"skipped: cooldown {rule.retrain.cooldown} since the last retrain"
    elif recent >= rule.retrain.budget:
        a["retrain"] = f"skipped: budget of {rule.retrain.budget} retrains per 7 days spent"
    else:
        state.retrains.append(
            {"rule": rule.name, "incident": a["incident"], "at": now, "status": "requested"}
        )
        a["retrain"] = "requested"


def deliver(cfg: MonitorConfig, state: AlertState, log: Any = print) -> dict[str, int]:
    """Send the outbox, saving after each delivery: what was delivered is never resent."""
    from engine.monitor.sinks import SinkError, send

    counts = {"sent": 0, "kept": 0, "dropped": 0}
    for note in list(state.outbox):
        sink = cfg.sinks.get(note["sink"])
        try:
            if sink is None:
                raise SinkError(f"sink '{note['sink']}' is no longer configured", retryable=False)
            send(sink, {k: v for k, v in note.items() if k not in ("sink", "attempts")})
        except SinkError as exc:
            note["attempts"] = int(note.get("attempts", 0)) + 1
            note["last_error"] = str(exc)
            if exc.retryable:
                counts["kept"] += 1
                log(f"alert {note['dedup_key']} -> {note['sink']}: {exc}; kept for the next run")
                state.save()
                continue
            counts["dropped"] += 1
            log(
                f"alert {note['dedup_key']} -> {note['sink']}: {exc}; dropped (retrying cannot help)"
            )
        else:
            counts["sent"] += 1
            state.sent.append(
                {
                    "id": note["id"],
                    "key": note["dedup_key"],
                    "sink": note["sink"],
                    "action": note["action"],
                    "at": time.time(),
                }
            )
        state.outbox = [n for n in state.outbox if n is not note]
        state.save()
    return counts
