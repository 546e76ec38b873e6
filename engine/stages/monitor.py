"""Stage: monitor live traffic. One run reads the audit window ``[from, to)``, measures it
against each served version's reference profile (engine.monitor.run), judges the alert
rules, moves the alert states, writes the result and appends to the history, then delivers
the queued notifications. ``every`` loops until Ctrl-C.

Crash safety: the result and the alert state (with its outbox of notifications and any
retrain request) are written before anything is sent, each file atomically. A run killed
before its state is saved leaves the previous state, so the next run judges the same
window again and queues nothing twice; a run killed after it leaves the outbox, which the
next run delivers. (A kill *during* a delivery can resend that one notification: its dedup
key lets PagerDuty fold it into the same incident.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.forecast import ForecastProject
from engine.config.monitor import MonitorConfig, seconds
from engine.config.project import ProjectConfig
from engine.monitor.alerting import AlertState, AlertStatus, deliver, judge, step
from engine.monitor.alerting import silences as silence_store
from engine.monitor.result import MonitorResult, RulesOutcome
from engine.monitor.run import monitor_window
from engine.monitor.store import append_history, monitor_dir, state_path
from engine.workspace import Workspace, atomic_write_text


@dataclass
class MonitorRun:
    result: MonitorResult
    path: Path
    changes: list[dict[str, Any]]
    delivered: dict[str, int] = field(default_factory=dict)
    retrains: list[dict[str, Any]] = field(default_factory=list)


def stage_monitor(
    cfg: ProjectConfig,
    ws: Workspace,
    t_from: float | None = None,
    t_to: float | None = None,
    *,
    app: str = "insight",
    send: bool = True,
    log: Callable[[str], None] = print,
) -> MonitorRun:
    state = AlertState.load(state_path(ws))
    t_to = time.time() if t_to is None else t_to
    if t_from is None:
        t_from = state.last_to if state.last_to is not None else t_to - seconds(cfg.monitor.every)
    result = monitor_window(cfg, ws, t_from, t_to, app=app)
    return judge_and_record(cfg.monitor, cfg.name, ws, result, state, t_to, app, send, log)


def judge_and_record(
    mc: MonitorConfig,
    project: str,
    ws: Workspace,
    result: MonitorResult,
    state: AlertState,
    t_to: float,
    app: str,
    send: bool,
    log: Callable[[str], None],
    *,
    advance: bool = True,
    history: str = "history",
) -> MonitorRun:
    """Judge the rules on a result, move the alert states, write the result and the
    history, then deliver what is queued (see the module: the order is the crash safety)."""
    judgements = judge(mc, result, app=app)
    ctx: dict[str, Any] = {
        "app": app,
        "model": result.model,
        "project": project,
        "window": result.window.model_dump(by_alias=True),
        "run_id": result.run_id,
    }
    changes = step(mc, state, judgements, t_to, ctx, silence_store.load(ws))
    mine = [
        r for r in state.retrains if r["status"] == "requested" and r.get("app", "insight") == app
    ]
    result.rules = RulesOutcome(
        judged=judgements,
        changes=changes,
        firing=state.with_status(AlertStatus.FIRING),
        pending=state.with_status(AlertStatus.PENDING),
        muted=ctx["muted"],
        open_groups=ctx["open_groups"],
        queued_notifications=len(state.outbox),
        retrain_requests=mine,
    )
    path = monitor_dir(ws) / "runs" / f"{result.run_id}.json"
    atomic_write_text(path, result.to_json())
    if advance:  # the next run starts where this one ended
        state.last_to = t_to
    state.save()
    append_history(ws, result, history)
    delivered = deliver(mc, state, log) if send else {}
    return MonitorRun(result, path, changes, delivered, mine)


def every(
    cfg: ProjectConfig,
    ws: Workspace,
    period_s: float,
    *,
    app: str = "insight",
    runs: int | None = None,
    on_run: Callable[[MonitorRun], None] | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Run the monitor every ``period_s`` seconds (each run covers the time since the last
    one) until Ctrl-C (or ``runs`` runs); returns how many ran. The retention schedule
    (governance.retention) is applied once a day on the same loop."""
    done = 0
    try:
        while runs is None or done < runs:
            t = time.monotonic()
            r = stage_monitor(cfg, ws, app=app, log=log)
            done += 1
            from engine.governance.retention import apply_if_due

            apply_if_due(cfg, ws, log=log)  # the retention schedule, once a day
            if on_run is not None:
                on_run(r)
            if runs is not None and done >= runs:
                break
            time.sleep(max(0.0, period_s - (time.monotonic() - t)))
    except KeyboardInterrupt:
        log(f"stopped after {done} run(s); the next run starts where the last one ended")
    return done


FORECAST_LOOKBACK = "90d"  # default window of a forecast monitor run: forecasts issued since


def stage_forecast_monitor(
    proj: ForecastProject,
    ws: Workspace,
    t_from: float | None = None,
    t_to: float | None = None,
    *,
    send: bool = True,
    log: Callable[[str], None] = print,
) -> MonitorRun:
    """Score the forecasts issued in ``[t_from, t_to)`` (default: the last 90 days) against
    the actuals known now (engine.forecast.monitor), then the same rules, alert states,
    notifications and retrain requests as the churn monitor, under the app ``forecast``.
    Actuals arrive weeks after a forecast: each run re-scores the whole lookback, so it
    does not move the churn monitor's "last window" mark."""
    from engine.forecast.monitor import APP, monitor_forecast

    t_to = time.time() if t_to is None else t_to
    t_from = t_to - seconds(FORECAST_LOOKBACK) if t_from is None else t_from
    result = monitor_forecast(proj, ws, t_from, t_to)
    return _judge_task(proj, ws, result, t_to, APP, send, log, "history-forecast")


def stage_target_monitor(
    proj: Any,
    ws: Workspace,
    t_from: float | None = None,
    t_to: float | None = None,
    *,
    send: bool = True,
    log: Callable[[str], None] = print,
) -> MonitorRun:
    """The served targeting policy's live lift per effect segment (engine.targeting.live),
    judged by the project's rules (``target.lift``, ``target.lift_change``) with the same
    alert states, grouping, inhibition, silences and sinks as the other monitors, under the
    app ``decide``. Outcomes arrive after decisions: each run re-reads the whole window."""
    from engine.targeting.live import APP, monitor_target

    t_to = time.time() if t_to is None else t_to
    result = monitor_target(proj, ws, 0.0 if t_from is None else t_from, t_to)
    return _judge_task(proj, ws, result, t_to, APP, send, log, "history-target-rules")


def _judge_task(
    proj: Any,
    ws: Workspace,
    result: Any,
    t_to: float,
    app: str,
    send: bool,
    log: Callable[[str], None],
    history: str,
) -> MonitorRun:
    """A task monitor's result judged by the project's rules, like the churn monitor's, but
    without moving its last-window mark (the task re-reads its whole lookback each run)."""
    state = AlertState.load(state_path(ws))
    return judge_and_record(
        proj.monitor,
        proj.name,
        ws,
        result,
        state,
        t_to,
        app,
        send,
        log,
        advance=False,
        history=history,
    )
