"""The series table as a checked, regular panel.

Reads the ``forecast.source`` table as its source declares it (engine.data.sources), checks
it (a duplicate period, a negative quantity, a time off the frequency's grid: a
:class:`DataError` naming the series and the value; nothing is written), fills the periods
absent from the table as ``forecast.gaps`` declares (``zero``: demand recorded as absent;
``missing``: not recorded, interpolated for fitting and left out of every accuracy figure),
and profiles each series (length, zero share, ADI and CV² for the intermittent-demand
classes of Syntetos and Boylan, too short to backtest).

The panel is long: ``unique_id`` (the series keys joined by ``/``), ``ds``, ``y`` (float),
``observed`` (False where no value was recorded), ``filled`` (the period was absent from
the table), then the known-in-advance and static columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.config.forecast import ForecastConfig, ForecastProject
from engine.errors import DataError

SEP = "/"
ADI_INTERMITTENT = 1.32  # Syntetos & Boylan (2005): average demand interval cut-off
CV2_LUMPY = 0.49


@dataclass
class Panel:
    frame: pd.DataFrame  # unique_id, ds, y, observed, *known, *static
    freq: str
    keys: list[str]
    known: list[str]
    static: list[str]
    profile: pd.DataFrame  # one row per series (engine.forecast.panel.profile)
    notes: list[str] = field(default_factory=list)

    @property
    def series(self) -> int:
        return int(self.profile.shape[0])


def series_id(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    out = frame[keys[0]].astype(str)
    for k in keys[1:]:
        out = out + SEP + frame[k].astype(str)
    return out


def read_series_table(proj: ForecastProject, workspace: Path) -> pd.DataFrame:
    from engine.data.sources import read_frame, source_path

    fc = proj.forecast
    cols = [*fc.series, fc.time, fc.target, *fc.known, *fc.static]
    src = proj.sources[fc.source]
    path = source_path(proj, fc.source, workspace)
    if not path.exists():
        raise DataError(
            f"forecast source '{fc.source}': '{path}' does not exist. Fix: the path in "
            f"sources.{fc.source}.path, relative to the project file."
        )
    from engine.data.sources import read_schema

    names = [src.rename.get(c, c) for c in read_schema(src, path).names]
    missing = [c for c in cols if c not in names]
    if missing:
        raise DataError(
            f"forecast source '{fc.source}' ({path.name}) lacks column(s) {missing}; its "
            f"columns: {', '.join(names[:30])}. Fix: name them in forecast: (series, time, "
            "target, known, static) as the table has them."
        )
    return read_frame(proj, fc.source, workspace, cols)


def check_and_fill(df: pd.DataFrame, fc: ForecastConfig) -> Panel:
    """Check the table and make the regular panel (see the module's docstring)."""
    keys, t, y = fc.series, fc.time, fc.target
    out = df.copy()
    out["ds"] = pd.to_datetime(out[t], errors="coerce")
    if out["ds"].isna().any():
        i = int(np.flatnonzero(out["ds"].isna().to_numpy())[0])
        raise DataError(
            f"forecast: {out['ds'].isna().sum():,} row(s) have no readable time in '{t}' "
            f"(first: series {_sid(out, keys, i)}, value {df[t].iloc[i]!r}). Fix: ISO dates "
            "(2026-06-01), or declare the column's time format in the source."
        )
    out["y"] = pd.to_numeric(out[y], errors="coerce").astype(float)
    neg = out["y"] < 0
    if neg.any():
        i = int(np.flatnonzero(neg.to_numpy())[0])
        raise DataError(
            f"forecast: {int(neg.sum()):,} negative value(s) of '{y}' (first: series "
            f"{_sid(out, keys, i)} at {out['ds'].iloc[i].date()}: {out['y'].iloc[i]:g}). "
            "Fix: demand is a quantity sold: net returns out upstream, or clip them to 0 "
            "in the source."
        )
    out["unique_id"] = series_id(out, keys)
    dup = out.duplicated(["unique_id", "ds"], keep=False)
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(
            f"forecast: {int(dup.sum()):,} row(s) repeat a series and period (first: series "
            f"{out['unique_id'].iloc[i]} at {out['ds'].iloc[i].date()}). Fix: one row per "
            f"series and '{t}': sum the quantities upstream, or add the key that tells "
            "them apart to forecast.series."
        )
    off = pd.tseries.frequencies.to_offset(fc.freq)
    on_grid = out["ds"].map(off.is_on_offset).to_numpy(dtype=bool)
    if not on_grid.all():
        i = int(np.flatnonzero(~on_grid)[0])
        raise DataError(
            f"forecast: {(~on_grid).sum():,} time(s) do not fit the frequency {fc.freq} "
            f"(first: series {out['unique_id'].iloc[i]} at {out['ds'].iloc[i]}). Fix: the "
            f"frequency the data has (insight init infers it: {infer_freq(out['ds'])}), or "
            "align the periods upstream."
        )
    for c in fc.known:
        v = pd.to_numeric(out[c], errors="coerce")
        bad = v.isna() & out[c].notna() & (out[c].astype(str).str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"forecast: known column '{c}' holds {out[c].iloc[i]!r} for series "
                f"{out['unique_id'].iloc[i]} at {out['ds'].iloc[i].date()}: not a number. "
                "Fix: numbers only (a flag as 0/1), or declare the column's decimal mark."
            )
        out[c] = v
    blank = int(out["y"].isna().sum())
    panel = _fill(out, fc, off)
    prof = profile(panel, fc)
    notes = []
    if blank:
        notes.append(f"{blank:,} blank value(s) of '{y}': not recorded (left out of accuracy)")
    return Panel(panel, fc.freq, keys, list(fc.known), list(fc.static), prof, notes)


def _sid(df: pd.DataFrame, keys: list[str], i: int) -> str:
    return SEP.join(str(df[k].iloc[i]) for k in keys)


def _fill(df: pd.DataFrame, fc: ForecastConfig, off: Any) -> pd.DataFrame:
    """Every period from each series' first to the table's last; absent ones filled as
    declared."""
    cols = ["unique_id", "ds", "y", *fc.series, *fc.known, *fc.static]
    df = df[cols].sort_values(["unique_id", "ds"], kind="stable")
    # Every series runs to the table's last period: a forecast origin is one date for the
    # whole table, and a series' trailing absent periods are gaps like any other.
    first = df.groupby("unique_id", sort=False)["ds"].min()
    end = df["ds"].max()
    parts = []
    for uid, lo in first.items():
        parts.append(pd.DataFrame({"unique_id": uid, "ds": pd.date_range(lo, end, freq=off)}))
    grid = pd.concat(parts, ignore_index=True)
    full = grid.merge(
        df.assign(_present=True), on=["unique_id", "ds"], how="left", validate="one_to_one"
    )
    absent = full["_present"].isna().to_numpy()
    full["observed"] = full["y"].notna()
    full["filled"] = absent
    if fc.gaps == "zero":
        full.loc[absent, "y"] = 0.0
        full.loc[absent, "observed"] = True  # recorded as absent: a real zero
    g = full.groupby("unique_id", sort=False)
    for c in [*fc.series, *fc.static]:
        full[c] = g[c].transform("first")
    for c in fc.known:  # an absent period's price: the last one set (then the next)
        full[c] = g[c].transform(lambda s: s.ffill().bfill())
    return full[["unique_id", "ds", "y", "observed", "filled", *fc.series, *fc.known, *fc.static]]


def profile(panel: pd.DataFrame, fc: ForecastConfig) -> pd.DataFrame:
    """One row per series: points, observed points, zero share, ADI, CV² of the non-zero
    sizes, demand class, and whether the backtest can run on it."""
    need = min_points(fc)
    rows = []
    for uid, s in panel.groupby("unique_id", sort=False):
        y = s["y"].to_numpy(dtype=float)
        obs = s["observed"].to_numpy(dtype=bool)
        yo = y[obs]
        nz = yo[yo > 0]
        adi = float(len(yo) / len(nz)) if len(nz) else float("inf")
        cv2 = float((nz.std() / nz.mean()) ** 2) if len(nz) > 1 and nz.mean() > 0 else 0.0
        if adi >= ADI_INTERMITTENT:
            kind = "lumpy" if cv2 >= CV2_LUMPY else "intermittent"
        else:
            kind = "erratic" if cv2 >= CV2_LUMPY else "smooth"
        rows.append(
            {
                "unique_id": uid,
                "points": len(y),
                "observed": int(obs.sum()),
                "gaps": int((~obs).sum()),
                "absent": int(s["filled"].sum()),
                "zero_share": float((yo == 0).mean()) if len(yo) else 1.0,
                "adi": adi,
                "cv2": cv2,
                "kind": kind,
                "constant": bool(len(yo) and np.all(yo == yo[0])),
                "backtestable": len(y) >= need,
            }
        )
    return pd.DataFrame(rows)


def min_fit(season_length: int) -> int:
    """Points a local model is fitted on at least (one season and one point, or 8)."""
    return max(season_length + 1, 8)


def min_points(fc: ForecastConfig) -> int:
    """Points a series needs for every backtest window to have a fit of its own."""
    return fc.horizon + fc.step * (fc.backtest.windows - 1) + min_fit(fc.season_length)


def infer_freq(ds: pd.Series) -> str:
    """The frequency of periods: the most common step between consecutive distinct times,
    named as pandas names it (weeks by their weekday: W-MON...)."""
    t = pd.Series(pd.to_datetime(ds).dropna().unique()).sort_values()
    d = t.diff().dropna()
    if d.empty:
        raise DataError("forecast: one period only: the frequency cannot be inferred.")
    step = pd.Timedelta(d.mode().iloc[0])
    days = float(step / pd.Timedelta(days=1))
    if days == 7:
        return "W-" + t.iloc[0].day_name()[:3].upper()
    if days == 1:
        return "D"
    if 28 <= days <= 31:
        if (t.dt.day == 1).all():
            return "MS"
        if t.dt.is_month_end.all():
            return "ME"
    if 89 <= days <= 92 and (t.dt.day == 1).all():
        return "QS"
    return str(pd.tseries.frequencies.to_offset(pd.Timedelta(step)).freqstr)  # type: ignore[call-overload]


def load_panel(proj: ForecastProject, workspace: Path) -> Panel:
    return check_and_fill(read_series_table(proj, workspace), proj.forecast)
