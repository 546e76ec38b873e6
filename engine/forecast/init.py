"""``insight init --from sales.csv --target units --time week --series store,sku``: a
commented forecasting project file inferred from the table (no file is written before
every check passed).

What it infers: the frequency (the commonest step between periods, weeks by weekday), the
season (52 weeks, 7 days, 12 months, 4 quarters), a horizon, the backtest that the series'
lengths allow, the columns known in advance (numeric columns that change within a series
and are named like something a retailer sets: price, promo, deal, feature, discount,
display, holiday; other changing numeric columns are listed, commented out: known in
advance is a claim only the user can make) and the static ones (constant within every
series). It reports the gaps and their count, the intermittent series and the series too
short to backtest, and checks the table as ``insight forecast train`` will.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from engine.config.base import IDENT
from engine.config.forecast import ForecastConfig
from engine.errors import ConfigError
from engine.forecast.panel import check_and_fill, infer_freq, min_points

if TYPE_CHECKING:
    from engine.data.init import DbTable

SET_IN_ADVANCE = re.compile(
    r"price|promo|deal|feat|discount|display|holiday|advert|\bad\b|campaign", re.I
)
SEASONS = {"W": 52, "D": 7, "M": 12, "Q": 4, "H": 24}
HORIZONS = {"W": 8, "D": 28, "M": 6, "Q": 4, "H": 48}


@dataclass
class ForecastPlan:
    name: str
    path: Path | DbTable
    fmt: str
    dialect: Any
    config: ForecastConfig
    rows: int
    series: int
    gaps: int
    kinds: dict[str, int]
    short: int
    need: int
    maybe_known: list[str] = field(default_factory=list)
    rename: dict[str, str] = field(default_factory=dict)  # the table's name -> identifier
    zero_gaps_note: str = ""


def _unit(freq: str) -> str:
    return "M" if freq.startswith("M") else freq[0]


def plan_forecast(path: Path | DbTable, target: str, time: str, series: list[str]) -> ForecastPlan:
    from engine.data.init import read_table, snake

    df, fmt, dialect = read_table(path)
    rename = {str(c): snake(str(c)) for c in df.columns if not re.match(IDENT, str(c))}
    df = df.rename(columns=rename)
    target, time = rename.get(target, target), rename.get(time, time)
    series = [rename.get(k, k) for k in series]
    missing = [c for c in [target, time, *series] if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{missing} not column(s) of '{path.name}' (columns: {', '.join(map(str, df.columns))})."
            " Fix: pass --target, --time and --series as the table names them."
        )
    ds = pd.to_datetime(df[time], errors="coerce")
    if ds.isna().all():
        raise ConfigError(
            f"--time '{time}' holds no readable dates (e.g. {df[time].head(3).tolist()}). "
            "Fix: the column with each period's date (ISO: 2026-06-01)."
        )
    freq = infer_freq(ds)
    unit = _unit(freq)
    season = SEASONS.get(unit, 1)
    horizon = HORIZONS.get(unit, 8)
    others = [c for c in df.columns if c not in (target, time, *series)]
    num = {c: pd.to_numeric(df[c], errors="coerce") for c in others}
    numeric = [c for c in others if num[c].notna().mean() > 0.95]
    sid = df[series].astype(str).agg("/".join, axis=1)
    changes = {c: bool((num[c].groupby(sid).nunique() > 1).any()) for c in numeric}
    known = [c for c in numeric if changes[c] and SET_IN_ADVANCE.search(c)]
    maybe = [c for c in numeric if changes[c] and c not in known]
    static = [c for c in others if not df[c].astype(str).groupby(sid).nunique().gt(1).any()]
    lens = pd.Series(ds).groupby(sid).nunique()
    # a season longer than the typical series cannot be learnt: drop it to 1
    if season > 1 and lens.median() < 2 * season + horizon:
        season = season if lens.median() >= season + 3 * horizon else 1
    yv = pd.to_numeric(df[target], errors="coerce")
    zero_share = float((yv == 0).mean()) if yv.notna().any() else 0.0
    span = ds.groupby(sid).agg(["min", "max"])
    off = pd.tseries.frequencies.to_offset(freq)
    periods = sum(len(pd.date_range(a, b, freq=off)) for a, b in span.to_numpy())
    absent = periods - int(ds.groupby(sid).nunique().sum())
    # Absent periods in a table that records no zeros were not recorded, not zero demand.
    gaps: Literal["zero", "missing"] = "missing" if absent and zero_share < 0.01 else "zero"
    fc = ForecastConfig(
        source="sales",
        gaps=gaps,
        series=series,
        time=time,
        target=target,
        freq=freq,
        horizon=horizon,
        season_length=season,
        known=known,
        static=[c for c in static if c not in known],
    )
    table = df[[*series, time, target, *known, *fc.static]].copy()
    for c in known:
        table[c] = num[c]
    panel = check_and_fill(table, fc)  # the checks the training will make, now
    prof = panel.profile
    kinds = prof["kind"].value_counts().to_dict()
    return ForecastPlan(
        name=re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem)[:60] or "forecast",
        path=path,
        fmt=fmt,
        dialect=dialect,
        config=fc,
        rows=len(df),
        series=panel.series,
        gaps=int(prof["absent"].sum()),
        kinds={str(k): int(v) for k, v in kinds.items()},
        short=int((~prof["backtestable"]).sum()),
        need=min_points(fc),
        maybe_known=maybe,
        rename={
            k: v for k, v in rename.items() if v in {*series, time, target, *known, *fc.static}
        },
    )


def render(p: ForecastPlan, out: Path) -> str:

    fc = p.config
    from engine.data.init import location_lines

    src = location_lines(p.path, p.fmt, out.parent)
    if p.fmt == "csv":
        if getattr(p.dialect, "delimiter", ",") != ",":
            src.append(f"    delimiter: {p.dialect.delimiter!r}")
        if getattr(p.dialect, "decimal", ".") != ".":
            src.append(f"    decimal: {p.dialect.decimal!r}")
    if p.rename:
        src.append("    rename:   # the table's names -> names usable in the file")
        src += [f"      {json.dumps(k)}: {v}" for k, v in p.rename.items()]
    kinds = ", ".join(f"{v} {k}" for k, v in sorted(p.kinds.items()))
    lines = [
        f"# Forecasting project for {p.path.name}, written by `insight init`.",
        f"# {p.rows:,} rows, {p.series:,} series ({kinds}); periods absent from the table:",
        f"# {p.gaps:,}. A series needs {p.need} periods to be backtested; {p.short} have fewer",
        "# and are forecast by seasonal naive / naive (counted in the card).",
        f"name: {p.name}",
        "",
        "sources:",
        "  sales:",
        *src,
        "",
        "forecast:",
        "  source: sales",
        f"  series: [{', '.join(fc.series)}]   # the keys naming one series",
        f"  time: {fc.time}",
        f"  target: {fc.target}",
        f"  freq: {fc.freq}          # inferred: the commonest step between periods",
        f"  horizon: {fc.horizon}            # periods ahead",
        f"  season_length: {fc.season_length}     # periods in a season (1: none)",
        (
            "  gaps: missing       # absent periods were not recorded: the table holds no "
            "zeros at all"
            if fc.gaps == "missing"
            else "  gaps: zero          # an absent period is zero demand ('missing': not recorded)"
        ),
        "  # Columns whose future values you set in advance (prices, promotions): every",
        "  # model family can use them ('+x': a regression on them, then the family on the",
        "  # residuals), and /forecast will ask for their planned values.",
        f"  known: [{', '.join(fc.known)}]",
    ]
    if p.maybe_known:
        lines.append(
            f"  # also changing over time, known in advance only if you set them: "
            f"{', '.join(p.maybe_known)}"
        )
    lines += [
        f"  static: [{', '.join(fc.static)}]   # constant within each series",
        f"  families: [{', '.join(fc.families)}]",
        "  backtest:",
        f"    windows: {fc.backtest.windows}        # rolling origins, {fc.step} periods apart",
        f"    holdout: {fc.backtest.holdout}        # the latest, held out to measure the choice",
        f"  levels: [{', '.join(map(str, fc.levels))}]   # interval levels, %",
        "",
    ]
    return "\n".join(lines)


def write_forecast_project(p: ForecastPlan, out: Path, force: bool) -> Path:
    from engine.config.forecast import ForecastProject
    from engine.workspace import atomic_write_text

    if out.exists() and not force:
        raise ConfigError(f"'{out}' exists. Fix: --out another path, or --force to replace it.")
    text = render(p, out)
    import yaml

    raw = yaml.safe_load(text)
    raw["base_dir"] = str(out.parent)
    ForecastProject.from_dict(raw, out)  # what is written loads
    atomic_write_text(out, text)
    return out
