"""``insight submit`` and ``insight jobs``: the engine's jobs on a Ray cluster."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from engine.cli.common import ProfileOpt, ProjectOpt, project_path
from engine.config.cluster import Resolved
from engine.console import console

jobs_app = typer.Typer(help="Jobs on the profile's Ray cluster.", no_args_is_help=True)


def _profile(project: Path | None, profile: str | None) -> tuple[Path, Resolved]:
    from engine.config.cluster import resolve
    from engine.config.project import ProjectConfig

    path = project_path(project)
    cfg = ProjectConfig.load(path)
    return path, resolve(cfg.cluster, profile)


def submit(
    job: Annotated[str, typer.Argument(help="train, features, monitor, score or bench.")],
    args: Annotated[
        list[str] | None, typer.Argument(help="Arguments for the job, after --.")
    ] = None,
    project: ProjectOpt = None,
    profile: ProfileOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the job until it ends.")
    ] = True,
    job_id: Annotated[
        str | None, typer.Option("--id", help="Submission id (default: generated).")
    ] = None,
) -> None:
    """Submit one of the engine's jobs to the profile's Ray cluster and follow it."""
    from engine.submit import follow
    from engine.submit import submit as do_submit

    path, prof = _profile(project, profile)
    s = do_submit(prof, path, job, list(args or []), submission_id=job_id)
    console.print(f"submitted [bold]{s.job_id}[/] to {s.address}: {s.entrypoint}")
    if not wait:
        console.print(f"follow it: insight jobs logs {s.job_id} --profile {prof.name}")
        return
    with console.status("job PENDING") as st:

        def line(status: str, secs: float) -> None:
            st.update(f"job {s.job_id}: {status} ({secs:.0f} s)")

        try:
            status = follow(
                prof,
                s.job_id,
                out=lambda x: console.print(x, markup=False, highlight=False, soft_wrap=True),
                status_line=line,
            )
        except KeyboardInterrupt:
            console.print(
                f"stopped following; the job keeps running. Stop it: insight jobs stop "
                f"{s.job_id} --profile {prof.name}"
            )
            raise typer.Exit(130) from None
    colour = "green" if status == "SUCCEEDED" else "red"
    console.print(f"job {s.job_id}: [{colour}]{status}[/]")
    console.print(f"logs: insight jobs logs {s.job_id} --profile {prof.name}")
    if status != "SUCCEEDED":
        raise typer.Exit(1)


def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@jobs_app.command("list")
def jobs_list(
    project: ProjectOpt = None,
    profile: ProfileOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every job on the cluster, oldest first."""
    from engine.submit import list_jobs

    _, prof = _profile(project, profile)
    rows = list_jobs(prof)
    if as_json:
        print(json.dumps(rows, default=str))
        return
    t = Table("id", "status", "job", "started (UTC)", "ended (UTC)", "message")
    for r in rows:
        t.add_row(
            r["id"], r["status"], r["job"], _when(r["start"]), _when(r["end"]), r["message"][:60]
        )
    console.print(t)


@jobs_app.command("status")
def jobs_status(
    job_id: str,
    project: ProjectOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """One job's status, entrypoint and message (JSON)."""
    from engine.submit import job_info

    _, prof = _profile(project, profile)
    print(json.dumps(job_info(prof, job_id), default=str, indent=2))


@jobs_app.command("logs")
def jobs_logs(
    job_id: str,
    project: ProjectOpt = None,
    profile: ProfileOpt = None,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Until it ends.")] = False,
) -> None:
    """A job's driver log."""
    from engine.submit import follow, job_logs

    _, prof = _profile(project, profile)
    if follow_:
        status = follow(prof, job_id, out=print)
        console.print(f"job {job_id}: {status}")
        return
    print(job_logs(prof, job_id), end="")


@jobs_app.command("stop")
def jobs_stop(
    job_id: str,
    project: ProjectOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Ask the cluster to stop a job."""
    from engine.submit import stop_job

    _, prof = _profile(project, profile)
    stopped = stop_job(prof, job_id)
    console.print(f"job {job_id}: {'stop requested' if stopped else 'already ended'}")
