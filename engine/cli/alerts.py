"""``insight alerts ...``: the alerts now (states, groups, what is muted and why), and
silences as Alertmanager has them (create, list, expire; each audited)."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from engine.cli.common import ProfileOpt, ProjectOpt, WorkspaceOpt
from engine.cli.common import load as _load
from engine.console import console
from engine.governance.roles import cli_actor

alerts_app = typer.Typer(help="Alerts: states, groups and silences.", no_args_is_help=True)


@alerts_app.command("list")
def list_alerts(
    project: ProjectOpt = None, workspace: WorkspaceOpt = None, profile: ProfileOpt = None
) -> None:
    """Every alert the monitor remembers, firing first, and the open notification groups."""
    from engine.monitor.alerting import AlertState, AlertStatus
    from engine.monitor.store import state_path

    _, ws = _load(project, workspace, profile)
    st = AlertState.load(state_path(ws))
    order = {AlertStatus.FIRING: 0, AlertStatus.PENDING: 1, AlertStatus.INACTIVE: 2}
    t = Table("alert", "state", "value", "incidents")
    for k, a in sorted(st.alerts.items(), key=lambda kv: (order[kv[1].state], kv[0])):
        t.add_row(k, str(a.state), "-" if a.value is None else f"{a.value:.4g}", str(a.incidents))
    console.print(t)
    groups = [g for g in st.groups.values() if g.open]
    console.print(
        f"open groups: {', '.join(g.key for g in groups) or 'none'}; notifications queued: "
        f"{len(st.outbox)}"
    )


@alerts_app.command("silence")
def silence(
    match: Annotated[
        list[str],
        typer.Option(
            "--match",
            "-m",
            help="label=value or label=~regex (labels: app, rule, version, role, slice, "
            "statistic, severity, scope); every matcher must hold. Repeatable.",
        ),
    ],
    for_: Annotated[str, typer.Option("--for", help="How long: 30m, 2h, 1d.")] = "2h",
    comment: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Mute matching alerts' notifications for a while (their states still move)."""
    from engine.monitor.alerting import silences

    _, ws = _load(project, workspace, profile)
    s = silences.create(ws, match, for_, comment, cli_actor(ws.root, "operator", by))
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(s.ends_at))
    console.print(
        f"silence {s.id}: {' '.join(str(m) for m in s.matchers)} until {until} ({comment})"
    )


@alerts_app.command("silences")
def list_silences(
    all_: Annotated[bool, typer.Option("--all", help="Expired ones too.")] = False,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """The silences: id, matchers, state (active, pending, expired), until when, why, who."""
    from engine.monitor.alerting import silences

    _, ws = _load(project, workspace, profile)
    now = time.time()
    t = Table("id", "matchers", "state", "ends", "comment", "by")
    for s in silences.load(ws):
        state = silences.status(s, now)
        if state == "expired" and not all_:
            continue
        t.add_row(
            s.id,
            " ".join(str(m) for m in s.matchers),
            state,
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(s.ends_at)),
            s.comment,
            s.created_by + (f" (expired by {s.expired_by})" if s.expired_by else ""),
        )
    console.print(t)


@alerts_app.command("expire")
def expire(
    silence_id: Annotated[str, typer.Argument(help="A silence id (a unique prefix works).")],
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """End a silence now; alerts it muted are notified at the next monitor run."""
    from engine.monitor.alerting import silences

    _, ws = _load(project, workspace, profile)
    s = silences.expire(ws, silence_id, cli_actor(ws.root, "operator", by))
    console.print(f"silence {s.id} expired")
