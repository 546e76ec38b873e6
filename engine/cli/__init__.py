"""The ``insight`` command: a thin typer app over the library.

It parses, calls the library, prints, and exits non-zero on failure. A problem the user
can fix (bad project file, missing data, missing model) prints one clear message, never a
traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.table import Table

from engine.cli.alerts import alerts_app
from engine.cli.cluster import jobs_app
from engine.cli.cluster import submit as submit_cmd
from engine.cli.common import (
    DEFAULT_PROJECT,
    AddressOpt,
    ProfileOpt,
    ProjectOpt,
    WorkspaceOpt,
)
from engine.cli.common import load as _load
from engine.cli.forecast import forecast_app
from engine.cli.governance import (
    consent_app,
    erase,
    governance_app,
    retention_app,
    review_app,
    subject_app,
    tokens_app,
)
from engine.cli.ingest import ingest as ingest_cmd
from engine.cli.ingest import ledger as ledger_cmd
from engine.cli.ingest import lineage as lineage_cmd
from engine.cli.ingest import schedule_app
from engine.cli.init import init_project
from engine.cli.models import models_app
from engine.cli.monitor import labels_app
from engine.cli.monitor import monitor as monitor_cmd
from engine.cli.report import dashboard as dashboard_cmd
from engine.cli.report import report as report_cmd
from engine.cli.serve import audit_app, serve_app
from engine.cli.target import target_app
from engine.config.project import ProjectConfig
from engine.console import console, stage
from engine.errors import InsightError
from engine.workspace import Workspace

app = typer.Typer(
    help="Insight Engine: Spark features -> Ray Tune training -> MLflow registry -> Ray Serve "
    "-> drift monitoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Sample data.", no_args_is_help=True)
features_app = typer.Typer(help="Feature snapshots (Spark).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
app.add_typer(serve_app, name="serve")
app.add_typer(audit_app, name="audit")
app.add_typer(labels_app, name="labels")
app.command("monitor")(monitor_cmd)
app.command("init")(init_project)
app.command("submit")(submit_cmd)
app.command("report")(report_cmd)
app.command("dashboard")(dashboard_cmd)
app.add_typer(jobs_app, name="jobs")
app.add_typer(alerts_app, name="alerts")
app.add_typer(consent_app, name="consent")
app.add_typer(subject_app, name="subject")
app.add_typer(tokens_app, name="tokens")
app.add_typer(governance_app, name="governance")
app.add_typer(retention_app, name="retention")
app.add_typer(review_app, name="review")
app.command("erase")(erase)
app.add_typer(forecast_app, name="forecast")
app.add_typer(target_app, name="target")
app.command("ingest")(ingest_cmd)
app.command("ledger")(ledger_cmd)
app.command("lineage")(lineage_cmd)
app.add_typer(schedule_app, name="schedule")


@app.command()
def demo(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    size: Annotated[
        str | None, typer.Option(help="Sample size: tiny, small, medium, large, xlarge.")
    ] = None,
    address: AddressOpt = None,
) -> None:
    """Run the whole loop once: data, features, training, serving over HTTP, drift."""
    from engine.demo.run import run_demo

    cfg, ws = _load(project, workspace, profile)
    run_demo(cfg, ws, size=size, address=address)


@app.command()
def validate(
    project: ProjectOpt = None, workspace: WorkspaceOpt = None, profile: ProfileOpt = None
) -> None:
    """Check the project file and the declared sources (no Spark, no Ray)."""
    from engine.data.sources import check_sources

    cfg, ws = _load(project, workspace, profile)
    check_sources(cfg, ws.root)
    console.print(
        f"[green]ok[/]: project '{cfg.name}', {len(cfg.sources)} sources, "
        f"{len(cfg.feature_names())} features"
    )


@data_app.command("generate")
def data_generate(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    size: Annotated[str | None, typer.Option(help="tiny, small, medium, large, xlarge.")] = None,
) -> None:
    """Generate the project's sample data (deterministic, with ground truth)."""
    from engine.stages.data import stage_data

    cfg, ws = _load(project, workspace, profile)
    with stage("sample data"):
        out = stage_data(cfg, ws, size)
    console.print(json.dumps({k: out[k] for k in ("path", "rows", "campaign", "drift")}, indent=2))


@features_app.command("build")
def features_build(
    project: ProjectOpt = None, workspace: WorkspaceOpt = None, profile: ProfileOpt = None
) -> None:
    """Build the training table on Spark and commit an immutable snapshot."""
    from engine.stages.features import stage_features

    cfg, ws = _load(project, workspace, profile)
    with stage("features on Spark"):
        s, reused = stage_features(cfg, ws)
    m = s.manifest
    console.print(f"snapshot {s.id} ({'reused' if reused else 'built'}): {s.path}")
    lab = m.get("labels") or {}
    times = " .. ".join(m["event_time_range"]) if m.get("event_time_range") else "no label time"
    console.print(
        f"{m['rows']:,} rows x {len(m['features'])} features ({times}); label "
        f"'{m['label']}' positive {lab.get('positive')!r} "
        f"(rate {lab.get('positive_rate', float('nan')):.3f}); "
        f"{lab.get('rows_without_label_dropped', 0):,} row(s) without a label dropped"
        + (
            f", {untimed:,} without a readable label time dropped"
            if (untimed := lab.get("rows_without_time_dropped"))
            else ""
        )
    )
    for src, cols in (m.get("unparsed_cells") or {}).items():
        for col, n in cols.items():
            parts = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in n.items() if v)
            console.print(f"source '{src}': {col}: {parts} cell(s), read as null")


@features_app.command("materialize")
def features_materialize(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    snapshot: Annotated[str | None, typer.Option(help="Snapshot id (default: newest).")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="ISO time (default: now, UTC).")
    ] = None,
) -> None:
    """Write the online table: latest feature values per entity, as of one time."""
    import datetime as dt

    from engine.errors import ConfigError
    from engine.features.online import OnlineTable, materialize
    from engine.features.snapshot import find
    from engine.features.spark import spark_session

    cfg, ws = _load(project, workspace, profile)
    when = None
    if as_of is not None:
        try:
            when = dt.datetime.fromisoformat(as_of)
        except ValueError:
            raise ConfigError(
                f"--as-of '{as_of}' is not an ISO date/time. Fix: e.g. --as-of 2026-01-01T00:00"
            ) from None
    s = find(ws, cfg.name, snapshot)
    with stage("online table on Spark"), spark_session(cfg, ws) as spark:
        path = materialize(cfg, ws, spark, s.id, when)
    t = OnlineTable.load(path)
    console.print(f"online table: {len(t.frame):,} entities as of {t.as_of} -> {path}")


@app.command("score")
def score(
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet folder to write.")],
    model: Annotated[
        str | None,
        typer.Option(help="NAME[@alias] or NAME/VERSION (default: the project's @champion)."),
    ] = None,
    snapshot: Annotated[
        str | None, typer.Option(help="Score a feature snapshot (an id, or 'latest').")
    ] = None,
    input_path: Annotated[
        Path | None, typer.Option("--input", help="Score a Parquet/CSV table.")
    ] = None,
    shap: Annotated[bool, typer.Option("--shap", help="Add SHAP values per feature.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the output.")] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="ray (Ray Data over the cluster's CPUs), local (this process, batch by "
            "batch) or auto: Ray when a cluster is named (--address, profile, RAY_ADDRESS), "
            "else local."
        ),
    ] = "auto",
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    address: AddressOpt = None,
) -> None:
    """Batch scoring: scores, decisions, model version (and SHAP) to Parquet, on Ray Data or
    in this process (--engine)."""
    from engine.cli.target import is_targeting
    from engine.raycluster import stop_ray
    from engine.stages.score import stage_score

    if is_targeting(project):  # a targeting project: its decisions, in batch
        from engine.cli.target import score_decisions

        return score_decisions(input_path, output, model, project, workspace, profile)
    cfg, ws = _load(project, workspace, profile)
    if address:
        from engine.raycluster import start_ray

        start_ray(ws, address=address)
    try:
        with stage("batch scoring"):
            r = stage_score(
                cfg,
                ws,
                model,
                snapshot=snapshot,
                input_path=input_path,
                output=output,
                shap=shap,
                overwrite=overwrite,
                engine=engine,
                log=console.print,
            )
    finally:
        stop_ray()
    console.print(
        f"output: {r.output}  (input {r.input_fingerprint[:12]}, output "
        f"{r.output_fingerprint[:12]}; one batch record in {ws.audit / 'batch'})"
    )


@features_app.command("list")
def features_list(
    project: ProjectOpt = None, workspace: WorkspaceOpt = None, profile: ProfileOpt = None
) -> None:
    """List the project's snapshots, oldest first."""
    from engine.features.snapshot import list_snapshots

    cfg, ws = _load(project, workspace, profile)
    t = Table("id", "created", "rows", "label times")
    for s in list_snapshots(ws, cfg.name):
        m = s.manifest
        t.add_row(s.id, m["created_at"][:19], f"{m['rows']:,}", " .. ".join(m["event_time_range"]))
    console.print(t)


@features_app.command("show")
def features_show(
    snapshot: Annotated[str | None, typer.Argument(help="Snapshot id (default: newest).")] = None,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Print a snapshot's manifest."""
    from engine.features.snapshot import find

    cfg, ws = _load(project, workspace, profile)
    console.print_json(json.dumps(find(ws, cfg.name, snapshot).manifest))


@app.command()
def train(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    snapshot: Annotated[str | None, typer.Option(help="Snapshot id (default: newest).")] = None,
    address: AddressOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Resume the newest interrupted search.")
    ] = False,
) -> None:
    """Ray Tune search on a snapshot; the best model is registered as @challenger with a
    model card. `insight models gate` decides whether it becomes @champion."""
    from engine.raycluster import start_ray, stop_ray
    from engine.stages.train import stage_train

    cfg, ws = _load(project, workspace, profile)
    with stage("Ray Tune search" + (" (resumed)" if resume else "")):
        start_ray(ws, address=address)
        try:
            r = stage_train(cfg, ws, snapshot, resume=resume)
        finally:
            stop_ray()
    a = r.test_auc
    console.print(
        f"split: {r.split}\n"
        f"{r.trials} trials ({r.errored} errored, {r.stopped_early} stopped early); best "
        f"{r.family} valid AUC {r.best_metrics['valid_auc']:.4f}\n"
        f"registered {r.model_name} v{r.version} @{r.alias}: {r.final_fit}; test AUC "
        f"{a['estimate']:.4f} (95% CI {a['low']:.4f}-{a['high']:.4f}, {r.test_rows} rows)"
    )
    for w in r.warnings:
        console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    if r.uplift:
        u = r.uplift
        console.print(
            f"uplift: ATE {u['ate']['estimate']:+.4f} ({u['ate']['low']:+.4f}.."
            f"{u['ate']['high']:+.4f}); best {u['best']} Qini AUC "
            f"{u['best_qini']['estimate']:.4f}"
        )
    console.print(
        f"next: insight models card {r.model_name} --version {r.version}; "
        f"insight models gate   (Tune results: {r.experiment_path})"
    )


@app.command()
def drift(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    snapshot: Annotated[str | None, typer.Option(help="Snapshot id (default: newest).")] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Compare with this older snapshot instead of the training window."),
    ] = None,
) -> None:
    """Drift per feature: KS + PSI (numeric), chi-square + Jensen-Shannon (categorical)."""
    from engine.console import drift_table
    from engine.stages.drift import stage_drift

    cfg, ws = _load(project, workspace, profile)
    r = stage_drift(cfg, ws, snapshot, reference)
    console.print(drift_table(r.columns))
    console.print(
        f"{r.reference_rows:,} reference rows ({r.reference}) vs {r.current_rows:,} current "
        f"rows; drifted: {', '.join(r.drifted) or 'none'}; report: {r.report_path}"
    )


@app.command()
def clean(
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete the workspace (MLflow db, artifacts, snapshots, data, reports): the one the
    profile names, when --profile is given."""
    if profile is not None:
        from engine.project import open_project

        cfg, ws, _ = open_project(
            (
                project
                or (Path("insight.yaml") if Path("insight.yaml").is_file() else DEFAULT_PROJECT)
            ).resolve(),
            workspace,
            profile,
        )
    else:
        if project is None:
            project = Path("insight.yaml") if Path("insight.yaml").is_file() else DEFAULT_PROJECT
        cfg = ProjectConfig.load(project)
        ws = Workspace(cfg.workspace_root(workspace))
    if not ws.root.exists():
        console.print(f"nothing to clean: {ws.root} does not exist")
        return
    if not yes and not typer.confirm(f"delete {ws.root}?"):
        raise typer.Exit(1)
    ws.clean()
    console.print(f"removed {ws.root}")


def main() -> None:
    """Console-script entry point: user errors become one message and a non-zero exit.

    A usage error (unknown command or option, bad value) is the user's: click's usage
    message and exit 2. typer vendors click (``typer._click``), so its exceptions are
    ``typer.TyperException``s, not ``click.ClickException``s: both are caught here.
    """
    try:
        rc = app(standalone_mode=False)
        # Without standalone mode click returns typer.Exit's code instead of exiting.
        if isinstance(rc, int) and rc != 0:
            sys.exit(rc)
    except InsightError as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, click.exceptions.Abort):
        console.print("aborted")
        sys.exit(130)
    except (typer.TyperException, click.ClickException) as exc:
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            print(f"Error: {exc}", file=sys.stderr)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug, not the user's input: one line, traceback to a file
        import tempfile
        import traceback

        if os.environ.get("INSIGHT_DEBUG"):
            raise
        fd, path = tempfile.mkstemp(prefix="insight-error-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            traceback.print_exc(file=f)
        console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
            f"This is a bug in Insight Engine, not in your input. Traceback: {path} "
            "(or rerun with INSIGHT_DEBUG=1).",
            soft_wrap=True,
        )
        sys.exit(1)
