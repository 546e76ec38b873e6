"""``insight report`` and ``insight dashboard``: the page a person opens."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import ProfileOpt, ProjectOpt, WorkspaceOpt
from engine.cli.common import load as _load
from engine.console import console
from engine.errors import ConfigError

ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Registered model (default: train.model_name).")
]


def report(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    model: ModelOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="The HTML file (default: <workspace>/report/report.html)."),
    ] = None,
) -> None:
    """Write one self-contained HTML report (KPIs, drift, uplift, fairness, latency, alerts,
    model timeline) from aggregates only, and a page per model card beside it."""
    from engine.cli.common import project_path
    from engine.config.base import read_yaml
    from engine.report import MAX_BYTES, write_forecast_report, write_report

    if out is not None and out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out {out}: the report is an HTML file. Fix: --out report.html")
    raw = read_yaml(project_path(project)) if project_path(project).is_file() else None
    if isinstance(raw, dict) and "forecast" in raw and "label" not in raw:
        from engine.project import open_forecast_project

        if workspace is not None and not workspace.is_dir():
            raise ConfigError(f"--workspace {workspace}: no such folder (a mistyped path?).")
        proj, fws, _ = open_forecast_project(project_path(project), workspace, profile)
        fr = write_forecast_report(proj, fws, out)
        console.print(
            f"report of {proj.forecast.model_name}: {fr.header['monitor_runs']} forecast "
            f"monitor run(s); {fr.bytes / 1024:.0f} KB -> open {fr.path.as_uri()}"
        )
        return
    cfg, ws = _load(project, workspace, profile, must_exist=True)
    r = write_report(cfg, ws, model, out)
    h = r.header
    console.print(
        f"report: {h['monitor_runs']} monitor run(s), {h['requests']:,} requests, versions "
        f"{', '.join('v' + v for v in h['versions_registered']) or 'none'}; "
        f"{r.bytes / 1024:.0f} KB in {r.seconds:.1f} s"
    )
    if r.bytes > MAX_BYTES:
        console.print(f"[yellow]the page is {r.bytes / 1e6:.1f} MB, above the 2 MB budget[/]")
    console.print(f"open {r.path.as_uri()}  ({len(r.cards)} model card page(s) in cards/)")


def dashboard(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    model: ModelOpt = None,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8050,
    refresh: Annotated[int, typer.Option(help="Seconds between page reloads.", min=2)] = 30,
) -> None:
    """Serve the report live (rebuilt when the monitor history changes), read-only, until
    Ctrl-C. Set INSIGHT_DASHBOARD_TOKEN to require a token."""
    from engine.report.server import dashboard_url, serve_dashboard

    cfg, ws = _load(project, workspace, profile, must_exist=True)
    token = os.environ.get("INSIGHT_DASHBOARD_TOKEN") or None
    try:
        server = serve_dashboard(
            cfg,
            ws,
            model=model,
            host=host,
            port=port,
            refresh_s=refresh,
            token=token,
            log=lambda m: console.print(m),
        )
    except OSError as exc:
        raise ConfigError(
            f"dashboard: cannot listen on {host}:{port}: {exc.strerror or exc}. Fix: another "
            "--port (0 picks a free one)."
        ) from None
    console.print(
        f"dashboard at {dashboard_url(server)}  (read-only; "
        + ("token required" if token else "aggregates only, no token")
        + "; Ctrl-C stops)",
        highlight=False,
    )
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        console.print("dashboard stopped")
    finally:
        server.server_close()
