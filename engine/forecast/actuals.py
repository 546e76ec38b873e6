"""Actuals for forecast monitoring: the quantities that were sold after the forecasts.

They are the series table as it is now (the ERP's weekly extract grows), plus any file
stored with ``insight labels ingest`` (or ``insight forecast actuals``) on the forecasting
project (``<workspace>/actuals``, content-addressed); a stored actual wins over the table's
for the same series and period. A file is checked whole before anything is written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from engine.config.forecast import ForecastConfig, ForecastProject
from engine.errors import DataError
from engine.workspace import Workspace, atomic_write_bytes


def actuals_dir(ws: Workspace) -> Path:
    return ws.root / "actuals"


def actuals(proj: ForecastProject, ws: Workspace) -> pd.DataFrame:
    """(unique_id, ds, y): the series table as it is now, overridden by stored actuals."""
    from engine.forecast.panel import load_panel

    p = load_panel(proj, ws.root).frame
    a = p.loc[p["observed"].to_numpy(dtype=bool), ["unique_id", "ds", "y"]]
    stored = sorted(actuals_dir(ws).glob("*.parquet")) if actuals_dir(ws).is_dir() else []
    if stored:
        extra = pd.concat([pd.read_parquet(s) for s in stored], ignore_index=True)
        a = pd.concat([a, extra], ignore_index=True).drop_duplicates(
            ["unique_id", "ds"], keep="last"
        )
    return a.reset_index(drop=True)


@dataclass
class IngestedActuals:
    path: Path
    rows: int
    series: int
    duplicate: bool


def ingest_actuals(proj: ForecastProject, ws: Workspace, path: Path) -> IngestedActuals:
    """Check a file of actuals (series keys, time, target) whole, then store it
    content-addressed; a problem writes nothing."""
    from engine.forecast.panel import series_id

    fc = proj.forecast
    if not path.is_file():
        raise DataError(f"actuals file '{path}' does not exist. Fix: a CSV or Parquet path.")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            from engine.data.csvfile import sniff

            d = sniff(path)
            df = pd.read_csv(path, sep=d.delimiter, encoding=d.encoding, dtype=str)
    except Exception as exc:  # a malformed file: say which and why, write nothing
        raise DataError(f"actuals file '{path}' could not be read: {exc}") from None
    rename = proj.sources[fc.source].rename
    df = df.rename(columns={k: v for k, v in rename.items() if k in df.columns})
    need = [*fc.series, fc.time, fc.target]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DataError(
            f"actuals file '{path.name}' lacks column(s) {missing} (columns: "
            f"{', '.join(map(str, df.columns[:20]))}). Fix: the series keys, '{fc.time}' and "
            f"'{fc.target}', named as in the series table."
        )
    out = pd.DataFrame({"unique_id": series_id(df, fc.series)})
    out["ds"] = pd.to_datetime(df[fc.time], errors="coerce")
    out["y"] = pd.to_numeric(df[fc.target], errors="coerce").astype(float)
    _check_actuals(out, df, fc, path.name)
    data = out.to_parquet(index=False)
    sha = hashlib.sha256(data).hexdigest()
    dest = actuals_dir(ws) / f"{sha[:24]}.parquet"
    dup = dest.exists()
    if not dup:
        atomic_write_bytes(dest, data)
    return IngestedActuals(dest, len(out), int(out["unique_id"].nunique()), dup)


def _check_actuals(out: pd.DataFrame, raw: pd.DataFrame, fc: ForecastConfig, name: str) -> None:
    def first(mask: pd.Series) -> int:
        return int(np.flatnonzero(mask.to_numpy())[0])

    if out.empty:
        raise DataError(f"actuals file '{name}' has no rows. Fix: at least one actual.")
    bad = out["ds"].isna()
    if bad.any():
        i = first(bad)
        raise DataError(
            f"actuals file '{name}': {int(bad.sum())} row(s) without a readable '{fc.time}' "
            f"(first: series {out['unique_id'].iloc[i]}, value {raw[fc.time].iloc[i]!r}). "
            "Fix: ISO dates (2026-06-01)."
        )
    off = pd.tseries.frequencies.to_offset(fc.freq)
    bad = ~out["ds"].map(off.is_on_offset)
    if bad.any():
        i = first(bad)
        raise DataError(
            f"actuals file '{name}': {int(bad.sum())} time(s) not on the {fc.freq} grid "
            f"(first: series {out['unique_id'].iloc[i]} at {out['ds'].iloc[i].date()}). "
            f"Fix: the period's date as the series table has it."
        )
    bad = out["y"].isna() | (out["y"] < 0)
    if bad.any():
        i = first(bad)
        raise DataError(
            f"actuals file '{name}': {int(bad.sum())} value(s) of '{fc.target}' missing, "
            f"not a number or negative (first: series {out['unique_id'].iloc[i]} at "
            f"{out['ds'].iloc[i].date()}: {raw[fc.target].iloc[i]!r}). Fix: the quantity "
            "sold, 0 or more; leave out periods not yet known."
        )
    bad = out.duplicated(["unique_id", "ds"], keep=False)
    if bad.any():
        i = first(bad)
        raise DataError(
            f"actuals file '{name}': {int(bad.sum())} rows repeat a series and period "
            f"(first: {out['unique_id'].iloc[i]} at {out['ds'].iloc[i].date()}). Fix: one "
            "row per series and period."
        )
