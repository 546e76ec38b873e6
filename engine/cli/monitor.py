"""``insight monitor`` and ``insight labels ...``: the live-traffic monitor, its loop, and
delayed labels."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from engine.cli.common import ProfileOpt, ProjectOpt, WorkspaceOpt
from engine.cli.common import load as _load
from engine.console import console
from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.monitor.result import Stat
    from engine.stages.monitor import MonitorRun

labels_app = typer.Typer(
    help="Delayed labels: outcomes joined to served decisions.", no_args_is_help=True
)


def parse_time(text: str | None, now: float) -> float | None:
    """ISO time (UTC unless it says otherwise), 'now', or relative to now: '-1h', '-30m'."""
    if text is None:
        return None
    t = text.strip()
    if t == "now":
        return now
    if t.startswith("-"):
        from engine.config.monitor import seconds

        try:
            return now - seconds(t[1:])
        except ValueError:
            pass
    try:
        d = dt.datetime.fromisoformat(t)
    except ValueError:
        raise ConfigError(
            f"'{text}' is not a time. Fix: an ISO time (2026-11-23T10:00), 'now', or a "
            "duration back from now ('-1h', '-30m')."
        ) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return d.timestamp()


def _est(d: Stat | None, fmt: str = "{:.3f}") -> str:
    return "-" if d is None or d.estimate is None else fmt.format(d.estimate)


def _print_run(r: MonitorRun) -> None:
    res = r.result
    w, a = res.window, res.audit
    console.print(
        f"window {w.from_iso} .. {w.to_iso}: {res.traffic.requests:,} requests, "
        f"{res.traffic.rows:,} rows; audit: {a.segments_read} segment(s) read"
        + (f" ({a.segments_cached} from the cache of closed segments)" if a.segments_cached else "")
        + (f" on {a.read_by}" if a.read_by else "")
        + ", "
        + (
            "[green]chains intact[/]"
            if a.chain_ok
            else f"[bold red]{len(a.problems)} chain problem(s)[/]"
        )
    )
    for p in a.problems[:5]:
        console.print(f"  [red]{p}[/]")
    if res.no_traffic:
        console.print("no traffic in this window: nothing to measure (not an error)")
    if res.models:
        t = Table(
            "version",
            "role",
            "rows",
            "decision rate",
            "score PSI",
            "drifted",
            "p95 ms",
            "labels",
            "AUC",
        )
        for v, m in res.models.items():
            t.add_row(
                f"v{v}",
                m.role,
                f"{m.rows:,}",
                _est(m.score.decision_rate),
                _est(m.score.psi),
                ", ".join(m.drifted) or "none",
                _est(m.latency.p95_ms, "{:.1f}"),
                _est(m.concept.coverage),
                _est(m.concept.auc),
            )
        console.print(t)
    print_outcome(r)


def print_outcome(r: MonitorRun) -> None:
    """What a monitor run moved (alerts, notifications, retrain requests) and where its
    result is: the same for the churn and the forecast monitors."""
    res = r.result
    if res.rules is not None:
        for ch in res.rules.changes:
            console.print(f"alert {ch['key']}: {ch['from']} -> [bold]{ch['to']}[/]")
        if res.rules.firing:
            console.print(f"firing: {', '.join(res.rules.firing)}")
    if r.delivered:
        console.print(
            f"notifications: {r.delivered.get('sent', 0)} sent, {r.delivered.get('kept', 0)} kept "
            f"for the next run, {r.delivered.get('dropped', 0)} dropped"
        )
    for q in r.retrains:
        console.print(f"retrain requested by {q['rule']} ({q['incident']})")
    console.print(f"result: {r.path}")


def monitor(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--from", help="Window start: ISO time or '-1h' (default: where the last run ended)."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--to", help="Window end: ISO time or 'now' (default).")
    ] = None,
    every_: Annotated[
        str | None, typer.Option("--every", help="Run again every period (e.g. 5m) until Ctrl-C.")
    ] = None,
    app: Annotated[str, typer.Option(help="Serve app whose audit log to read.")] = "insight",
    send: Annotated[
        bool, typer.Option("--send/--no-send", help="Deliver alert notifications.")
    ] = True,
    retrain: Annotated[
        bool, typer.Option("--retrain/--no-retrain", help="Run the retrain a firing rule requests.")
    ] = True,
) -> None:
    """Measure live traffic from the audit log against each model's training profile; judge
    the alert rules; notify; retrain when a rule says so."""
    from engine.config.monitor import seconds
    from engine.stages.monitor import every, stage_monitor

    cfg, ws = _load(project, workspace, profile)
    if every_ is not None:
        period = seconds(every_)
        console.print(f"monitoring every {every_} (Ctrl-C stops cleanly)")
        every(cfg, ws, period, app=app, on_run=_print_run, log=console.print)
        return
    now = time.time()
    r = stage_monitor(
        cfg,
        ws,
        parse_time(since, now),
        parse_time(until, now),
        app=app,
        send=send,
        log=console.print,
    )
    _print_run(r)
    if retrain and r.retrains:
        from engine.stages.retrain import run_requested

        run_requested(cfg, ws, app=app, log=console.print)


@labels_app.command("ingest")
def labels_ingest(
    path: Annotated[
        Path, typer.Argument(help="CSV or Parquet: an id, the outcome, optionally a time.")
    ],
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Store delayed outcomes; the monitor joins them to the decisions they answer. In a
    forecasting project (a forecast: block, no label:), the file holds actuals."""
    from engine.cli.common import project_path
    from engine.config.base import read_yaml
    from engine.monitor.labels import ingest

    raw = read_yaml(project_path(project)) if project_path(project).is_file() else None
    if isinstance(raw, dict) and "forecast" in raw and "label" not in raw:
        from engine.cli.forecast import actuals_cmd

        actuals_cmd(path, project, workspace, profile)
        return
    cfg, ws = _load(project, workspace, profile)
    r = ingest(cfg, ws, path)
    if r.duplicate:
        console.print(f"already ingested: {r.path} ({r.rows:,} labels)")
        return
    by = "request id" if r.joined_by == "request_id" else f"entity ({r.joined_by}) and time"
    console.print(
        f"stored {r.rows:,} labels (joined by {by}; {r.dropped_missing:,} row(s) without an id "
        f"or outcome skipped) -> {r.path}"
    )
