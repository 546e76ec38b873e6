"""From firing alerts to notifications, along Alertmanager's lines: group, inhibit,
silence, then queue into the outbox (delivered with dedup and retries by :mod:`.notify`).

- **Group** (``monitor.route``): alerts that share the ``group_by`` labels (the app, the rule
  and the model version by default) are one group. A group opens when one of its members
  fires and is not inhibited; the first page lists every member firing by then (after
  ``group_wait``), a member joining or leaving is one *update* (after ``group_interval``),
  an unchanged group is re-sent after ``repeat_interval``, and the group is resolved once,
  when no member fires. The group's key is the notification's dedup key, so PagerDuty
  folds a group's trigger, updates and resolve into one incident.
- **Inhibit** (``monitor.inhibit``): an alert matched by a firing source alert with equal
  ``equal`` labels is not notified: a broken audit chain or an app without traffic mutes
  drift alerts; a critical alert mutes its warning twin.
- **Silence** (``insight alerts silence``): matching alerts are not notified while the
  silence is active (wall-clock time); a group still firing when it ends is notified then.
- A rule with ``action: retrain`` requests one retrain per group incident (cooldown and
  weekly budget apply); a group whose members are all inhibited opens no incident.
"""

from __future__ import annotations

import re
from typing import Any

from engine.config.monitor import InhibitRule, MonitorConfig, RuleConfig, seconds
from engine.monitor.alerting.model import Alert, AlertStatus, Group, Notification, Silence
from engine.monitor.alerting.state import AlertState, _t, request_retrain

_SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}

# what the person on call does first, by the statistic's family; and where the report shows it
FIRST_STEP: dict[str, tuple[str, str]] = {
    "feature": (
        "open the report's drift panel and compare the named features' live values with the "
        "training window; check the upstream source for a schema or unit change before "
        "retraining",
        "drift",
    ),
    "score": (
        "check whether the inputs drifted (drift panel) or the traffic mix changed; a score "
        "shift without input drift points at the model or its serving version",
        "drift",
    ),
    "decision": ("compare the decision rate with the training selection rate (KPIs)", "kpi"),
    "forecast": (
        "open the report's demand panel: compare the named group's actuals with its forecasts "
        "(a promotion, a price change or a new store?); if the world changed, retrain "
        "(`insight forecast train`) on the grown table",
        "demand",
    ),
    "latency": (
        "check replicas and load (`insight serve status`); scale out or lower the batch size",
        "latency",
    ),
    "labels": ("check that delayed labels still arrive (`insight labels ingest`)", "kpi"),
    "concept": (
        "the relation of features and outcome moved: compare realized AUC with the card's and "
        "plan a retrain on recent labels",
        "models",
    ),
    "fairness": (
        "open the fairness panel: which group's rate moved, and is the gap beyond its interval",
        "fairness",
    ),
    "uplift": (
        "compare live lift with the card's ATE (uplift panel); pause targeting if it reversed",
        "uplift",
    ),
    "review": (
        "analysts dispute more decisions than the rule allows: read the disputes' reasons "
        "(`insight review stats`, reviews.jsonl) and compare the disputed decisions' versions "
        "with the model timeline before the next roll-out",
        "models",
    ),
    "target": (
        "open the report's targeting panel: the named segment's live lift against what the "
        "policy promised; if it reversed, stop contacting that segment (a new version without "
        "it, `insight target rollout`) and retrain on the recent campaign",
        "targeting",
    ),
    "audit": (
        "run `insight audit verify` and find the segment named; nothing else in this window "
        "can be trusted until it is explained",
        "alerts",
    ),
    "traffic": ("check that the app is up and routed (`insight serve status`)", "latency"),
}


def labels_match(matchers: dict[str, str], labels: dict[str, str]) -> bool:
    """``label: value`` equal, or ``label: "~regex"`` a full match."""
    for name, want in matchers.items():
        got = labels.get(name, "")
        if want.startswith("~"):
            if re.fullmatch(want[1:], got) is None:
                return False
        elif got != want:
            return False
    return True


def inhibited(key: str, a: Alert, firing: dict[str, Alert], rules: list[InhibitRule]) -> str | None:
    """Why a firing alert is muted by another firing one, or None."""
    for r in rules:
        if not labels_match(r.target, a.labels):
            continue
        for k, s in firing.items():
            if (
                k != key
                and labels_match(r.source, s.labels)
                and all(s.labels.get(e) == a.labels.get(e) for e in r.equal)
            ):
                return f"inhibited by {k}: {r.why or 'an inhibit rule'}"
    return None


def group_of(labels: dict[str, str], by: list[str]) -> tuple[str, dict[str, str]]:
    sel = {b: labels.get(b, "") for b in by}
    return "|".join(sel.values()), sel


def mute(
    cfg: MonitorConfig, firing: dict[str, Alert], silences: list[Silence], wall: float
) -> dict[str, str]:
    """Firing alerts that are not notified, and why: inhibited by another firing alert, or
    matched by an active silence."""
    muted: dict[str, str] = {}
    for k, a in firing.items():
        if why := inhibited(k, a, firing, cfg.inhibit):
            muted[k] = why
        else:
            sil = next((s for s in silences if s.active(wall) and s.matches(a.labels)), None)
            if sil is not None:
                muted[k] = f"silenced by {sil.id} until {sil.ends_at:.0f}: {sil.comment}"
    return muted


def route(
    cfg: MonitorConfig,
    state: AlertState,
    now: float,
    ctx: dict[str, Any],
    silences: list[Silence],
    wall: float,
    app: str = "insight",
) -> dict[str, Any]:
    """Group, inhibit and silence the alerts; queue the notifications due at ``now`` and
    any retrain request. Returns what was muted and why (for the monitor's result)."""
    mine = {k: a for k, a in state.alerts.items() if a.labels.get("app") == app}
    firing = {k: a for k, a in mine.items() if a.state == AlertStatus.FIRING}
    muted = mute(cfg, firing, silences, wall)
    members: dict[str, list[str]] = {}
    for k, a in mine.items():
        gk, sel = group_of(a.labels, list(cfg.route.group_by))
        members.setdefault(gk, []).append(k)
        state.groups.setdefault(gk, Group(key=gk, labels=sel))
    for gk, keys in members.items():
        fire = sorted(k for k in keys if k in firing)
        _group_step(cfg, state, state.groups[gk], fire, muted, now, ctx)
    return {"muted": muted, "open_groups": sorted(k for k, g in state.groups.items() if g.open)}


def _open(cfg: MonitorConfig, state: AlertState, g: Group, eligible: list[str], now: float) -> None:
    """A new incident of the group, and one retrain request per rule that asks for it."""
    g.open, g.incident, g.first_seen, g.notified = True, g.incident + 1, now, []
    rules = {x.name: x for x in cfg.rules}
    for name in dict.fromkeys(state.alerts[k].rule for k in eligible):
        rule = rules.get(name)
        if rule is not None and rule.action == "retrain":
            app = str(state.alerts[eligible[0]].labels.get("app", "insight"))
            status = request_retrain(rule, f"{g.key}#{g.incident}", state, now, app)
            for k in eligible:
                state.alerts[k].retrain = status


def _group_step(
    cfg: MonitorConfig,
    state: AlertState,
    g: Group,
    fire: list[str],
    muted: dict[str, str],
    now: float,
    ctx: dict[str, Any],
) -> None:
    """One group at ``now``: open, notify (new, update, repeat), or resolve once."""
    r, rules = cfg.route, {x.name: x for x in cfg.rules}
    eligible = [k for k in fire if not muted.get(k, "").startswith("inhibited")]
    sendable = [k for k in eligible if k not in muted]
    if eligible and not g.open:
        _open(cfg, state, g, eligible, now)
    if not g.open:
        return
    if not fire:
        if g.notified:
            _queue(cfg, state, g, "resolve", g.notified, ctx, rules)
        g.open, g.notified = False, []
        return
    if not sendable:
        return
    since = now - _t(g.last_notified_at, now)
    if not g.notified:
        due, kind = now - _t(g.first_seen, now) >= seconds(r.group_wait), "new"
    elif set(sendable) != set(g.notified):
        due, kind = since >= seconds(r.group_interval), "update"
    else:
        due, kind = since >= seconds(r.repeat_interval), "repeat"
    if due:
        _queue(cfg, state, g, kind, sendable, ctx, rules)
        g.notified, g.last_notified_at = sendable, now


def _fmt(a: Alert) -> str:
    shown = f"{a.value:.4g}" if a.value is not None else "n/a"
    lo, hi = ([*a.interval, None, None])[:2]
    if lo is not None or hi is not None:
        shown += f" ({'' if lo is None else f'{lo:.4g}'}..{'' if hi is None else f'{hi:.4g}'})"
    return shown


def _queue(
    cfg: MonitorConfig,
    state: AlertState,
    g: Group,
    kind: str,
    keys: list[str],
    ctx: dict[str, Any],
    rules: dict[str, RuleConfig],
) -> None:
    alerts = [state.alerts[k] for k in keys]
    first = alerts[0]
    rule = rules.get(first.rule)
    stat = first.labels.get("statistic", "")
    family = stat.split(".", 1)[0]
    step, section = FIRST_STEP.get(family, ("open the report", "alerts"))
    severity = max(
        (a.labels.get("severity", "warning") for a in alerts),
        key=lambda s: _SEVERITY_RANK.get(s, 1),
    )
    slices = [a.labels.get("slice", "") for a in alerts]
    shown = [f"{s or 'model'} {_fmt(a)}" for s, a in zip(slices, alerts, strict=True)]
    listed = "; ".join(shown[:10]) + (f"; and {len(shown) - 10} more" if len(shown) > 10 else "")
    before = set(g.notified)
    added = sorted(set(keys) - before) if kind == "update" else []
    removed = sorted(before - set(keys)) if kind == "update" else []
    verb = {"new": "fires", "update": "updated", "repeat": "still firing", "resolve": "resolved"}[
        kind
    ]
    version = first.labels.get("version", "")
    app = first.labels.get("app", "")
    thr = f"{rule.op} {rule.threshold}" if rule else ""
    what = f"{len(alerts)} {'features' if family == 'feature' else 'slices'}" if any(slices) else ""
    change = ""
    if kind == "update":
        names = lambda ks: ", ".join(state.alerts[k].labels.get("slice") or k for k in ks)  # noqa: E731
        change = (f" (+{names(added)})" if added else "") + (
            f" (-{names(removed)})" if removed else ""
        )
    summary = (
        f"{app}/{ctx.get('model')} {version}: {first.rule} {verb}{change}"
        + (f" on {what}" if what else "")
        + (f": {stat} {listed}" if kind != "resolve" else f": {stat}")
        + (f"; rule {thr}" if thr else "")
    )
    link = f"{cfg.route.report_url}#{section}"
    sinks = list(
        dict.fromkeys(s for a in alerts for s in (rules[a.rule].sinks if a.rule in rules else []))
    )
    for sink in sinks:
        state.outbox.append(
            Notification(
                sink=sink,
                action="resolve" if kind == "resolve" else "trigger",
                kind=kind,
                dedup_key=g.key,
                group=g.labels,
                rule=first.rule,
                severity=severity,
                model=ctx.get("model"),
                version=version,
                slice=", ".join(s for s in slices if s),
                statistic=stat,
                value=first.value,
                interval=first.interval,
                threshold=thr,
                alerts=[
                    {
                        "key": k,
                        "slice": a.labels.get("slice", ""),
                        "value": a.value,
                        "interval": a.interval,
                        "rows": a.n,
                    }
                    for k, a in zip(keys, alerts, strict=True)
                ],
                added=added,
                removed=removed,
                window=ctx.get("window"),
                run_id=ctx.get("run_id"),
                source=f"insight-engine/{ctx.get('project')}/{app}",
                summary=summary,
                first_step="" if kind == "resolve" else step,
                link=link,
                incident=f"{g.key}#{g.incident}",
            )
        )
