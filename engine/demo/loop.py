"""The demo's last act: the monitoring loop on live traffic, end to end.

Local receivers on 127.0.0.1 stand in for Slack, PagerDuty and a mail server. Traffic like
the training window is replayed through HTTP, then later, drifted traffic; the monitor
reads the audit log and the drift rule fires to the PagerDuty receiver; labels for the later
traffic arrive and concept drift is measured; the firing rule's retrain runs (fresh
snapshot, search, gate) and a passing challenger is rolled out step by step while traffic
flows, promoted or rolled back. Every step is printed with its time.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from engine.config.project import ProjectConfig
from engine.console import console
from engine.features.snapshot import Snapshot
from engine.monitor.result import Stat
from engine.workspace import Workspace

ENV = {
    "INSIGHT_SLACK_WEBHOOK_URL": "/slack/services/T0/B0/demo",
    "INSIGHT_PAGERDUTY_URL": "/pagerduty/v2/enqueue",
    "INSIGHT_ALERT_WEBHOOK_URL": "/webhook",
}


@contextlib.contextmanager
def receivers() -> Iterator[tuple[Any, Any]]:
    """HTTP (Slack, PagerDuty, webhook) and SMTP receivers, with the project's sink
    variables pointing at them for the demo's duration."""
    from engine.monitor.receiver import http_receiver, smtp_receiver

    old = {
        k: os.environ.get(k) for k in [*ENV, "INSIGHT_PAGERDUTY_ROUTING_KEY", "INSIGHT_SMTP_PORT"]
    }
    with http_receiver() as rx, contextlib.ExitStack() as stack:
        mail = None
        with contextlib.suppress(ImportError):
            mail = stack.enter_context(smtp_receiver())
        os.environ.update({k: rx.url + v for k, v in ENV.items()})
        os.environ["INSIGHT_PAGERDUTY_ROUTING_KEY"] = "demo-routing-key"
        if mail is not None:
            os.environ["INSIGHT_SMTP_PORT"] = str(mail.port)
        try:
            yield rx, mail
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _send(url: str, rows: pd.DataFrame, features: list[str], key: str, batch: int = 20) -> int:
    import httpx

    from serve.inputs import request_rows

    n = 0
    with httpx.Client(timeout=60) as c:
        for i in range(0, len(rows), batch):
            part = rows.iloc[i : i + batch]
            body = {"rows": request_rows(part[features]), "ids": [str(v) for v in part[key]]}
            c.post(f"{url}/predict", json=body).raise_for_status()
            n += len(part)
    return n


def _fresh_monitor_state(ws: Workspace) -> None:
    """Each demo run replays the loop from the start: an earlier run's alert state (firing
    alerts, retrain cooldowns) is moved aside, kept, and named."""
    from engine.monitor.store import state_path

    p = state_path(ws)
    if p.is_file():
        kept = p.with_name(f"state.{time.strftime('%Y%m%dT%H%M%S')}.json")
        p.rename(kept)
        console.print(
            f"an earlier demo run's alert state (firing alerts, retrain cooldown) moved to "
            f"{kept.name}: this run's rules start inactive"
        )


def monitoring_loop(
    cfg: ProjectConfig, ws: Workspace, url: str, features: list[str], snap: Snapshot
) -> dict[str, Any]:
    from engine.monitor.labels import ingest
    from engine.stages.drift import windows
    from engine.stages.monitor import stage_monitor
    from engine.stages.retrain import run_requested

    key, y = snap.manifest["entity"], cfg.label.column
    ref, cur = windows(cfg, snap)
    # Earlier traffic: rows drawn like the training window's. Later traffic: one row per
    # customer (their outcomes arrive as labels, joined by customer and time).
    earlier = ref.sample(600, replace=len(ref) < 600, random_state=1)
    later = cur.groupby(key, group_keys=False).sample(1, random_state=2)
    later = later.sample(min(600, len(later)), random_state=2)
    out: dict[str, Any] = {}
    _fresh_monitor_state(ws)
    with receivers() as (rx, mail):
        t = time.monotonic()
        t0 = time.time()
        n = _send(url, earlier, features, key)
        t1 = time.time()
        r1 = stage_monitor(cfg, ws, t0, t1, log=console.print)
        m = next(iter(r1.result.models.values()))
        firing = r1.result.rules.firing if r1.result.rules else []
        console.print(
            f"[bold]traffic like the training window[/]: {n} rows replayed; monitor: "
            f"{r1.result.traffic.requests} requests, drifted: {', '.join(m.drifted) or 'none'}; "
            f"alerts firing: {len(firing)}  ({time.monotonic() - t:.1f} s)"
        )
        t = time.monotonic()
        n = _send(url, later, features, key)
        t2 = time.time()
        r2 = stage_monitor(cfg, ws, t1, t2, log=console.print)
        m = next(iter(r2.result.models.values()))
        changes = r2.result.rules.changes if r2.result.rules else []
        pages = [r["json"] for r in rx.delivered("/pagerduty/v2/enqueue")]
        console.print(
            f"[bold]later, drifted traffic[/]: {n} rows; drifted: {', '.join(m.drifted) or 'none'}"
        )
        for ch in changes:
            console.print(f"  alert {ch['key']}: {ch['from']} -> [bold red]{ch['to']}[/]")
        console.print(
            f"  receivers got {len(pages)} PagerDuty event(s) ("
            + ", ".join(sorted({p["event_action"] + " " + p["dedup_key"] for p in pages})[:4])
            + f"), {len(rx.delivered('/slack/services/T0/B0/demo'))} Slack message(s), "
            f"{len(mail.messages) if mail else 0} e-mail(s)  ({time.monotonic() - t:.1f} s)"
        )
        out["alerts_fired"] = [c["key"] for c in changes if c["to"] == "firing"]
        out["pagerduty_events"] = len(pages)
        # The outcomes of the later traffic arrive (the generator's truth), keyed by entity.
        t = time.monotonic()
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "outcomes.csv"
            pd.DataFrame(
                {
                    key: later[key].astype(str),
                    y: later[y].astype(int),
                    "label_time": pd.Timestamp.now(tz="UTC").isoformat(),
                }
            ).to_csv(p, index=False)
            ing = ingest(cfg, ws, p)
        r3 = stage_monitor(cfg, ws, t1, time.time(), send=True, log=console.print)
        c = next(iter(r3.result.models.values())).concept

        def show(s: Stat | None) -> str:
            if s is None or s.estimate is None:
                return "n/a"
            if s.low is None or s.high is None:
                return f"{s.estimate:.3f}"
            return f"{s.estimate:.3f} ({s.low:.3f}-{s.high:.3f})"

        console.print(
            f"[bold]labels arrived[/]: {ing.rows} outcomes joined by entity and time; coverage "
            f"{show(c.coverage)}, realized AUC {show(c.auc)}, score-label "
            f"correlation {show(c.correlation)} = {show(c.correlation_ratio)} of "
            f"training  ({time.monotonic() - t:.1f} s)"
        )
        out["realized_auc"] = c.auc.estimate if c.auc else None
        t = time.monotonic()
        pool = cur.sample(frac=1.0, random_state=3)
        cursor = {"i": 0}

        def traffic(pct: float) -> None:  # clients keep calling while the rollout steps
            i = cursor["i"] % max(1, len(pool) - 200)
            _send(url, pool.iloc[i : i + 200], features, key, batch=50)
            cursor["i"] += 200

        done = run_requested(cfg, ws, url=url, traffic=traffic, log=console.print)
        for o in done:
            console.print(
                f"[bold]retrain[/] ({o.incident}): {o.summary}; "
                + ", ".join(f"{k} {v:.1f} s" for k, v in o.seconds.items())
            )
            out["retrain"] = o.summary
            out["rollout"] = (o.rollout or {}).get("result")
        if not done:
            console.print("no retrain was requested in this run")
        console.print(f"monitoring loop: {time.monotonic() - t:.1f} s for retrain and rollout")
    return out
