"""``insight forecast``: demand forecasting. ``insight forecast train`` backtests, chooses
per series, calibrates and registers; ``insight forecast -o OUT`` writes every series'
forecast with its intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import ProfileOpt, ProjectOpt, WorkspaceOpt
from engine.console import console

forecast_app = typer.Typer(
    help="Demand forecasting: train (backtest, choose, register) and forecast.",
    invoke_without_command=True,
)


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


def init_forecast(
    source: Path, target: str, time: str, series: str, out: Path | None, force: bool
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
