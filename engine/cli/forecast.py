"""``insight forecast``: demand forecasting. ``insight forecast train`` backtests, chooses
per series, calibrates and registers; ``insight forecast -o OUT`` writes every series'
forecast with its intervals."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.cli.common import ProfileOpt, ProjectOpt, WorkspaceOpt
from engine.console import console

forecast_app = typer.Typer(
    help="Demand forecasting: train (backtest, choose, register) and forecast.",
    invoke_without_command=True,
)

if TYPE_CHECKING:
    from engine.data.init import DbTable


def _open(project: Path | None, workspace: Path | None, profile: str | None):  # type: ignore[no-untyped-def]
    from engine.errors import ConfigError
    from engine.project import open_forecast_project

    if project is None:
        if not Path("insight.yaml").is_file():
            raise ConfigError(
                "forecast: no --project and no ./insight.yaml. Fix: pass --project PATH to a "
                "project file with a 'forecast:' block (insight init --target COLUMN "
                "--time COLUMN --series KEYS writes one)."
            )
        project = Path("insight.yaml")
    proj, ws, _ = open_forecast_project(project.resolve(), workspace, profile)
    return proj, ws


@forecast_app.callback()
def forecast(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Parquet file of every forecast.")
    ] = None,
    future: Annotated[
        Path | None,
        typer.Option(help="Planned values of the known-in-advance columns (CSV or Parquet)."),
    ] = None,
    model: Annotated[str, typer.Option(help="Alias or version of the forecaster.")] = "champion",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    local: Annotated[bool, typer.Option(help="One process, no Ray.")] = False,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Forecast every series from the end of its history (with -o), or run a subcommand."""
    if ctx.invoked_subcommand is not None:
        return
    if output is None:
        console.print(ctx.get_help())
        raise typer.Exit(0)
    from engine.stages.forecast import stage_forecast

    proj, ws = _open(project, workspace, profile)
    r = stage_forecast(
        proj,
        ws,
        output=output,
        future=future,
        model=model,
        overwrite=overwrite,
        use_ray=not local,
        log=console.print,
    )
    console.print(f"open it: pandas.read_parquet('{r['output']}')")


@forecast_app.command("train")
def train(
    local: Annotated[bool, typer.Option(help="One process, no Ray.")] = False,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Check the series table, backtest every family over rolling origins, choose per
    series, calibrate the intervals, register the forecaster with its card."""
    from engine.forecast.card import card_markdown
    from engine.stages.forecast import stage_forecast_train

    proj, ws = _open(project, workspace, profile)
    r = stage_forecast_train(proj, ws, use_ray=not local, log=console.print)
    console.print(card_markdown(r.card))
    console.print(
        f"model {r.model_name} v{r.version} @{r.alias} (MLflow run {r.run_id}); next: "
        "insight forecast -o forecasts.parquet"
    )


@forecast_app.command("serve")
def serve_cmd(
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one).")
    ] = None,
    model: Annotated[str, typer.Option(help="Alias or version to serve.")] = "champion",
    once: Annotated[
        bool, typer.Option("--once", help="Start, answer one health check, stop.")
    ] = False,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Serve POST /forecast on 127.0.0.1 in this process until Ctrl-C: per series its
    points and intervals, SHAP with explain: true; every answer audited."""
    import time as _time

    from ray import serve

    from engine.raycluster import start_ray, stop_ray
    from serve.forecast_app import forecast_up

    proj, ws = _open(project, workspace, profile)
    start_ray(ws)
    try:
        url = forecast_up(proj, ws, port=port, alias=model)
        console.print(
            f"serving {proj.forecast.model_name}@{model} at [bold]{url}[/] (POST {url}/, "
            f"docs: {url}/docs); audit: {ws.audit / 'forecast'}"
        )
        if not once:
            console.print("Ctrl-C to stop")
            while True:
                _time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        stop_ray()


@forecast_app.command("actuals")
def actuals_cmd(
    path: Annotated[Path, typer.Argument(help="CSV or Parquet: series keys, time, target.")],
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Store actuals that arrived after the forecasts (beside the series table, which the
    monitor also reads as it is now); `insight labels ingest` does the same here."""
    from engine.forecast.actuals import ingest_actuals

    proj, ws = _open(project, workspace, profile)
    r = ingest_actuals(proj, ws, path)
    console.print(
        ("already stored: " if r.duplicate else "stored ")
        + f"{r.rows:,} actuals of {r.series:,} series -> {r.path}\nnext: insight forecast monitor"
    )


@forecast_app.command("monitor")
def monitor_cmd(
    since: Annotated[
        str | None,
        typer.Option("--from", help="Forecasts issued since: ISO time or '-30d' (default -90d)."),
    ] = None,
    until: Annotated[str | None, typer.Option("--to", help="Issued before (default now).")] = None,
    send: Annotated[bool, typer.Option("--send/--no-send", help="Deliver notifications.")] = True,
    retrain: Annotated[
        bool, typer.Option("--retrain/--no-retrain", help="Run the retrain a rule requests.")
    ] = True,
    local: Annotated[bool, typer.Option(help="Retrain in one process, no Ray.")] = False,
    project: ProjectOpt = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Score the issued forecasts against the actuals known now, per group of series
    (realized MASE and its ratio to the backtest, bias, interval coverage, each with an
    interval); judge forecast.* alert rules; notify; retrain when a rule says so."""
    import time as _time

    from engine.cli.monitor import parse_time
    from engine.stages.monitor import stage_forecast_monitor

    proj, ws = _open(project, workspace, profile)
    now = _time.time()
    r = stage_forecast_monitor(
        proj, ws, parse_time(since, now), parse_time(until, now), send=send, log=console.print
    )
    print_forecast_run(r)
    if retrain and r.retrains:
        from engine.stages.retrain import run_forecast_requested

        run_forecast_requested(proj, ws, use_ray=not local, log=console.print)


def print_forecast_run(r: Any) -> None:
    from rich import box
    from rich.table import Table

    res = r.result
    w, a = res.window, res.audit
    console.print(
        f"forecasts issued {w.from_iso} .. {w.to_iso}: {res.traffic.requests:,} answer(s) and "
        f"batch run(s), {res.traffic.rows:,} series-periods; audit: "
        + ("[green]intact[/]" if a.chain_ok else f"[bold red]{len(a.problems)} problem(s)[/]")
    )
    for p in a.problems[:5]:
        console.print(f"  [red]{p}[/]")
    if res.no_traffic:
        console.print("no forecasts issued in this window: nothing to score (not an error)")

    def fmt(s: Any, pct: bool = False) -> str:
        """The estimate, its 95% interval on a second line: columns stay narrow enough for
        an 80-column terminal."""
        if s is None or s.estimate is None:
            return "-"
        if s.low is None or s.high is None:
            ci = ""
        elif pct:
            ci = f"\n{s.low * 100:.0f}..{s.high * 100:.0f}%"
        else:
            ci = f"\n{s.low:.2f}..{s.high:.2f}"
        return (f"{s.estimate:.1%}" if pct else f"{s.estimate:.3f}") + ci

    for v, m in res.models.items():
        if m.note:
            console.print(f"v{v}: {m.note}")
        if not m.forecast:
            continue
        # the project's own interval levels (80 and 95 by default), as the monitor scored them
        levels = sorted({lv for q in m.forecast.values() for lv in q.coverage}, key=float)
        # up to two levels fit beside the accuracy in 80 columns; more get a table of their own
        inline = levels if len(levels) <= 2 else []

        def table(title: str, heads: list[str]) -> Table:
            t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
            t.add_column("group", overflow="fold", min_width=10)  # the one column that wraps
            for head in heads:
                t.add_column(head, no_wrap=True)
            return t

        t = table(
            f"v{v} ({m.role}): 95% intervals under each figure",
            ["series\npoints", "actuals", "MASE", "vs\nbacktest", "bias"]
            + [f"{lv}%\ninside" for lv in inline],
        )
        for g, q in m.forecast.items():
            t.add_row(
                g,
                f"{q.series:,}\n{q.points:,}",
                fmt(q.actuals_share, True),
                fmt(q.mase),
                fmt(q.mase_ratio),
                fmt(q.bias, True),
                *[fmt(q.coverage.get(lv), True) for lv in inline],
            )
        console.print(t)
        if levels and not inline:
            c = table(f"v{v}: actuals inside each interval", [f"{lv}%" for lv in levels])
            for g, q in m.forecast.items():
                c.add_row(g, *[fmt(q.coverage.get(lv), True) for lv in levels])
            console.print(c)
    from engine.cli.monitor import print_outcome

    print_outcome(r)


def init_forecast(
    source: Path | DbTable, target: str, time: str, series: str, out: Path | None, force: bool
) -> None:
    """`insight init --target --time --series`: a commented forecasting project."""
    from engine.forecast.init import plan_forecast, write_forecast_project

    keys = [k.strip() for k in series.split(",") if k.strip()]
    p = plan_forecast(source.resolve(), target, time, keys)
    path = write_forecast_project(
        p, (out or source.resolve().parent / "insight.yaml").resolve(), force
    )
    fc = p.config
    console.print(f"wrote {path}")
    console.print(
        f"  {p.rows:,} rows, {p.series:,} series by {', '.join(fc.series)}; {fc.freq} "
        f"(season {fc.season_length}), horizon {fc.horizon}; {p.gaps:,} absent period(s)"
    )
    console.print("  demand: " + ", ".join(f"{v} {k}" for k, v in sorted(p.kinds.items())))
    console.print(
        f"  known in advance: {', '.join(fc.known) or 'none'}; static: "
        f"{', '.join(fc.static) or 'none'}"
        + (f"; changing, not marked known: {', '.join(p.maybe_known)}" if p.maybe_known else "")
    )
    if p.short:
        console.print(f"  {p.short} series shorter than {p.need} periods: fallback forecasts")
    console.print(
        f"next: insight forecast train -p {path}; insight forecast -p {path} -o out.parquet"
    )
