"""``insight ingest``, ``insight ledger`` and ``insight schedule``: database sources pulled
incrementally into the raw store, the run ledger, and jobs on a cadence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from engine.cli.common import ProfileOpt, ProjectOpt, WorkspaceOpt, project_path
from engine.console import console, stage
from engine.errors import ConfigError

schedule_app = typer.Typer(
    help="Ingest, features and train on a cadence, or exported to Airflow/cron."
)


def ingest(
    sources: Annotated[
        list[str] | None, typer.Argument(help="Sources to pull (default: every database source).")
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(
            help="Keep pulling every period (e.g. 1h) until Ctrl-C, running the jobs the "
            "project's schedule: puts after ingest when rows landed."
        ),
    ] = None,
    reader: Annotated[
        str | None, typer.Option(help="spark (JDBC, partitioned) or adbc (default: the source's).")
    ] = None,
    unchanged_exit: Annotated[
        int | None,
        typer.Option(
            help="Exit with this code when no rows landed (an orchestrator skips what follows)."
        ),
    ] = None,
    max_runs: Annotated[
        int | None, typer.Option(help="With --every: stop after this many runs.")
    ] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Pull the rows changed since the last run from database sources, check them, land the
    good ones in the raw store, quarantine the bad, and record the run in the ledger."""
    from engine.project import open_any_project

    p = open_any_project(project_path(project), workspace, profile)
    if reader not in (None, "spark", "adbc"):
        raise ConfigError(f"--reader {reader!r}: use spark or adbc.")
    if every is not None:
        _ingest_every(p, every, reader, max_runs)
        return
    runs = ingest_once(p, sources, reader)
    landed = sum(r.rows_landed for r in runs)
    console.print(
        f"raw store: {p.ws.root / 'raw'}  quarantine: {p.ws.root / 'quarantine'}  ledger: "
        f"`insight ledger` ({p.ws.audit / 'ingest'}). Next: `insight features build` (or "
        "train) reads the new rows."
    )
    if unchanged_exit is not None and landed == 0:
        raise typer.Exit(unchanged_exit)


def ingest_once(p, sources: list[str] | None, reader: str | None):  # type: ignore[no-untyped-def]
    from engine.features.spark import master_session
    from engine.ingest.run import database_sources, ingest_source

    names = sources or database_sources(p.cfg)
    if not names:
        raise ConfigError(
            f"{p.path.name} has no database source (kind: postgres or jdbc) to ingest. Fix: "
            "declare one (insight init --from postgresql://HOST:PORT/DB?table=NAME writes it)."
        )
    unknown = [n for n in names if n not in p.cfg.sources]
    if unknown:
        raise ConfigError(f"unknown source(s) {unknown}; sources: {', '.join(p.cfg.sources)}.")
    from engine.ingest.run import choose_reader, reach

    for n in names:  # a database that cannot be reached fails here, before Spark starts
        if (reader or choose_reader(p.cfg.sources[n], p.spark_master)) == "adbc":
            reach(p.cfg, n, p.ws)
    jars = [s.database.jar for s in p.cfg.sources.values() if s.database and s.database.jar]
    out = []
    with master_session(p.spark_master, p.ws, jars=jars) as spark:
        for n in names:
            with stage(f"ingest {n}"):
                r = ingest_source(
                    p.cfg,
                    n,
                    p.ws,
                    spark,
                    spark_master=p.spark_master,
                    reader=reader,
                    base_dir=p.base_dir,
                )
            console.print(r.summary())
            for c in r.checks:
                if not c.ok:
                    console.print(f"  check {c.name}: {c.failed:,} failed {c.detail}".rstrip())
            out.append(r)
    return out


def _ingest_every(p, every: str, reader: str | None, max_runs: int | None) -> None:  # type: ignore[no-untyped-def]
    from engine.config.ingest import JobSchedule, ScheduleConfig

    base = getattr(p.cfg, "schedule", None) or ScheduleConfig()
    sched = base.model_copy(update={"ingest": JobSchedule(every=every)})
    _loop(
        p,
        sched,
        max_runs,
        once=False,
        only=None,
        ingest_args=["--reader", reader] if reader else [],
    )


def _loop(  # type: ignore[no-untyped-def]
    p,
    sched,
    max_ticks: int | None,
    *,
    once: bool,
    only: str | None,
    ingest_args: list[str] | None = None,
) -> None:
    from engine.config.ingest import JobSchedule
    from engine.ingest.schedule import JOBS, Scheduler, chain, command_runner, install_signals

    if only is not None:
        if getattr(sched, only, None) is None:
            raise ConfigError(
                f"--job {only}: not in the project's schedule (jobs there: "
                f"{', '.join(j for j in JOBS if getattr(sched, j) is not None)})."
            )
        keep = {only, *chain(sched, only)}
        update: dict[str, JobSchedule | None] = {}
        for j in JOBS:
            spec = getattr(sched, j)
            if spec is None or j not in keep:
                update[j] = None
            elif j == only:  # runs on its own now; those after it follow as declared
                update[j] = JobSchedule(every=spec.every or "1d")
        sched = sched.model_copy(update=update)
    runner = command_runner(p.path, p.ws, p.task, ingest_args or [])
    from rich.markup import escape

    s = Scheduler(sched, runner, log=lambda m: console.print(escape(f"[schedule] {m}")))
    install_signals(s)
    states = s.loop(max_ticks=max_ticks, once=once)
    console.print("schedule stopped. Last runs:")
    for st in states.values():
        console.print(escape(f"  {st.name}: {st.runs} run(s), last {st.last or 'never'}"))


def ledger(
    source: Annotated[str | None, typer.Argument(help="One source (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """The ingestion ledger: every run, its watermarks, rows and checks; and whether the
    ledger's chain and landed files verify."""
    from engine.ingest.ledger import runs, verify_ledger
    from engine.project import open_any_project

    p = open_any_project(project_path(project), workspace, profile)
    recs = runs(p.ws, source)
    if as_json:
        console.print_json(json.dumps({"runs": recs, "problems": verify_ledger(p.ws)}, default=str))
        return
    t = Table(
        "source",
        "run",
        "status",
        "date",
        "watermark before",
        "after",
        "read",
        "landed",
        "quarantined",
    )
    for r in recs:
        t.add_row(
            str(r["source"]),
            str(r["run"]),
            str(r["status"]),
            str(r.get("ingest_date")),
            str((r.get("watermark_before") or {}).get("value", "-")),
            str((r.get("watermark_after") or {}).get("value", "-")),
            f"{r.get('rows_read', 0):,}",
            f"{r.get('rows_landed', 0):,}",
            f"{r.get('rows_quarantined', 0):,}",
        )
    console.print(t)
    problems = verify_ledger(p.ws)
    console.print("ledger verifies" if not problems else "\n".join(problems))
    if problems:
        raise typer.Exit(1)


@schedule_app.command("run")
def schedule_run(
    once: Annotated[
        bool,
        typer.Option("--once", help="One pass: each job with a cadence now, then its followers."),
    ] = False,
    job: Annotated[
        str | None, typer.Option("--job", help="Only this job (and those after it).")
    ] = None,
    max_runs: Annotated[int | None, typer.Option(help="Stop after this many job runs.")] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Keep the project file's schedule: until Ctrl-C (or --once)."""
    from engine.project import open_any_project

    p = open_any_project(project_path(project), workspace, profile)
    sched = getattr(p.cfg, "schedule", None)
    if sched is None:
        raise ConfigError(
            f"{p.path.name} has no schedule: block. Fix: add e.g. schedule: {{ingest: {{every: 1h}}, "
            "features: {after: ingest}, train: {after: features}}."
        )
    _loop(p, sched, max_runs, once=once, only=job)


@schedule_app.command("export")
def schedule_export(
    airflow: Annotated[
        Path | None, typer.Option("--airflow", help="Write an Airflow DAG file here.")
    ] = None,
    cron: Annotated[Path | None, typer.Option("--cron", help="Write a crontab here.")] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Write the project's schedule as an Airflow DAG and/or a cron table calling the same
    insight commands."""
    from engine.ingest.schedule import export_airflow, export_cron
    from engine.project import open_any_project
    from engine.workspace import atomic_write_text

    p = open_any_project(project_path(project), workspace, profile)
    sched = getattr(p.cfg, "schedule", None)
    if sched is None:
        raise ConfigError(f"{p.path.name} has no schedule: block to export.")
    if airflow is None and cron is None:
        raise ConfigError("say what to write: --airflow FILE.py and/or --cron FILE.")
    workdir = p.path.parent
    if airflow is not None:
        atomic_write_text(airflow, export_airflow(sched, p.path, workdir, p.task, p.cfg.name))
        console.print(f"Airflow DAG: {airflow} (copy it into your dags/ folder)")
    if cron is not None:
        atomic_write_text(cron, export_cron(sched, p.path, workdir))
        console.print(f"cron table: {cron} (install with `crontab {cron}`)")


def lineage(
    request: Annotated[
        str | None, typer.Option("--request", help="A served decision's request id.")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="A model version (of the project's model).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name (default: the project's).")] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Trace a decision (or a model version) to the snapshot it was trained on and the
    ingestion runs that brought that snapshot's rows."""
    from engine.ingest.lineage import trace_request, trace_version
    from engine.project import open_any_project

    p = open_any_project(project_path(project), workspace, profile)
    if (request is None) == (version is None):
        raise ConfigError("say what to trace: --request ID or --version N.")
    if request is not None:
        out = trace_request(p.ws, p.cfg.name, request)
    else:
        name = model or getattr(getattr(p.cfg, "train", None), "model_name", None) or p.cfg.name
        out = trace_version(p.ws, p.cfg.name, str(name), str(version))
    console.print_json(json.dumps(out, default=str))
