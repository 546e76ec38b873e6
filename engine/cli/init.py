"""``insight init --from TABLE``: a commented project file inferred from the user's own
table, for each task: churn (--label), demand forecasting (--target, --time, --series) or
targeting from a randomised campaign (--treatment, --control, --outcome)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.console import console


def init_project(
    source_text: Annotated[
        str,
        typer.Option(
            "--from",
            help="Your table: a CSV or Parquet file, or a PostgreSQL table "
            "(postgresql://HOST:PORT/DB?table=NAME; credentials from PGUSER / PGPASSWORD).",
        ),
    ],
    label: Annotated[
        str | None, typer.Option(help="Churn: the column to predict (two values).")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Forecasting: the quantity to forecast (with --series).")
    ] = None,
    series: Annotated[
        str | None, typer.Option(help="Forecasting: the key columns of a series, comma-separated.")
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="Unique id column (default: inferred, else a row hash).")
    ] = None,
    time: Annotated[
        str | None, typer.Option(help="When each label was observed (default: none).")
    ] = None,
    positive: Annotated[
        str | None, typer.Option(help="The label's positive value (default: yes/true/1...).")
    ] = None,
    treatment: Annotated[
        str | None,
        typer.Option(help="Targeting: the column saying which arm each customer was assigned."),
    ] = None,
    control: Annotated[
        str | None, typer.Option(help="Targeting: the treatment column's control value.")
    ] = None,
    outcome: Annotated[
        str | None, typer.Option(help="Targeting: what customers did (binary or an amount).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where to write (default: insight.yaml beside the table).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Write a commented project file for your own table, inferred from its data: churn
    (--label), demand forecasting (--target, --time, --series) or targeting from a
    randomised campaign (--treatment, --control, --outcome)."""
    from engine.data.init import DbTable, parse_from, plan
    from engine.data.project_file import write
    from engine.errors import ConfigError

    source = parse_from(source_text)

    if treatment is not None or control is not None or outcome is not None:
        if treatment is None or control is None or outcome is None:
            raise ConfigError(
                "targeting needs --treatment, --control and --outcome together (e.g. "
                "--treatment segment --control 'No E-Mail' --outcome visit)."
            )
        from engine.cli.target import init_campaign

        return init_campaign(source, treatment, control, outcome, key, positive, out, force)
    if target is not None or series is not None:
        if target is None or series is None or time is None:
            raise ConfigError(
                "forecasting needs --target, --time and --series together (e.g. --target "
                "units --time week --series store,sku)."
            )
        from engine.cli.forecast import init_forecast

        return init_forecast(source, target, time, series, out, force)
    if label is None:
        raise ConfigError(
            "init needs --label COLUMN (churn), --target/--time/--series (forecasting) or "
            "--treatment/--control/--outcome (targeting)."
        )

    p = plan(source.resolve(), label, key, time, positive)
    default_out = (
        Path.cwd() if isinstance(source, DbTable) else source.resolve().parent
    ) / "insight.yaml"
    path = write(p, (out or default_out).resolve(), force)
    kinds = {c.name: c.kind for c in p.columns}
    feats = [f for f in p.features if kinds.get(f) != "timestamp"] + list(p.derived)
    cats = [f for f in feats if kinds.get(f) == "string"]
    console.print(f"wrote {path}")
    console.print(
        f"  {p.rows:,} rows; key: {p.key}{' (generated: ' + p.key_note + ')' if p.row_id else ''}"
    )
    console.print(
        f"  label: {p.label} (positive {p.positive!r}); "
        + (
            f"time: {p.time}" + (f" ({p.time_note})" if p.time_note else "")
            if p.time
            else "no time: a snapshot, split at random"
        )
    )
    console.print(f"  {len(feats)} features ({len(cats)} categorical): {', '.join(feats)}")
    for col, why in p.left_out.items():
        console.print(f"  left out: {col}: {why}")
    for c in p.columns:
        if c.time_format:
            ambiguous = f" ({c.note})" if "also reads" in c.note else ""
            console.print(f"  times: {c.name} read as {c.time_format}{ambiguous}")
    if p.sensitive:
        console.print(
            f"  sensitive candidates (not marked; see the file): {', '.join(p.sensitive)}"
        )
    console.print(
        f"next: insight validate -p {path}; insight features build -p {path}; "
        f"insight train -p {path}"
    )
