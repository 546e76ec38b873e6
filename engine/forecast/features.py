"""Point-in-time features of a series panel for the global model, computed on Spark into
a content-addressed snapshot.

A row (series, period t) carries only what was known before t, plus what is known about t
in advance:

- ``lag<k>``: the target k periods before t (k >= 1);
- ``rolling_mean_lag1_window_size<w>`` / ``rolling_std_lag1_window_size<w>``: the mean
  and sample standard deviation of the ``w`` targets before t (missing until ``w`` exist);
- calendar features of t (``month``, ``week`` (ISO), ``dayofweek`` for daily data);
- the known-in-advance columns at t (price, promotion: planned, so allowed) and the static
  columns (categories as integer codes, the same codes at training and forecast time).

The target is filled as the local families see it (a value not recorded is interpolated
for the features; its row is not a training target). The names and meaning are
mlforecast's (``lags``, ``RollingMean``/``RollingStd`` on lag 1, ``date_features``), so the
same definition drives mlforecast's recursive forecasts: the snapshot is exactly what the
global model is trained on (tests/test_forecast_features.py checks it against pandas and
against mlforecast's own preprocessing on random panels, and that no value from t or later
reaches row t).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from engine.config.forecast import ForecastConfig

FEATURES_FORMAT = 1


@dataclass(frozen=True)
class FeatureSpec:
    lags: list[int]
    windows: list[int]
    calendar: list[str]
    known: list[str]
    static: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)  # static -> codes' order

    @classmethod
    def of(cls, fc: ForecastConfig, static_values: pd.DataFrame | None = None) -> FeatureSpec:
        g = fc.global_model
        lags = sorted(set(g.lags or _default_lags(fc.season_length)))
        cal = ["month", "week"]
        off = pd.tseries.frequencies.to_offset(fc.freq)
        if off is not None and off.name in ("D", "B"):
            cal.append("dayofweek")
        if off is not None and off.name.startswith(("M", "Q", "Y", "A")):
            cal = ["month"]
        cats: dict[str, list[str]] = {}
        if static_values is not None:
            for c in fc.static:
                col = static_values[c]
                if not pd.api.types.is_numeric_dtype(col):
                    cats[c] = sorted(col.dropna().astype(str).unique().tolist())
        return cls(lags, list(g.windows), cal, list(fc.known), list(fc.static), cats)

    @property
    def rolling(self) -> list[str]:
        return [f"rolling_{s}_lag1_window_size{w}" for w in self.windows for s in ("mean", "std")]

    @property
    def columns(self) -> list[str]:
        """Feature columns in mlforecast's order: static, known, lags, transforms, dates."""
        return [
            *self.static,
            *self.known,
            *[f"lag{k}" for k in self.lags],
            *self.rolling,
            *self.calendar,
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "lags": self.lags,
            "windows": self.windows,
            "calendar": self.calendar,
            "known": self.known,
            "static": self.static,
            "categories": self.categories,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(d["lags"], d["windows"], d["calendar"], d["known"], d["static"], d["categories"])

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def _default_lags(season_length: int) -> list[int]:
    lags = [1, 2, 3, 4]
    if 4 < season_length <= 104:
        lags.append(season_length)
    return lags


def encode_static(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Static categories as integer codes in the spec's order (unseen: -1)."""
    out = frame.copy()
    for c, cats in spec.categories.items():
        lookup = {v: i for i, v in enumerate(cats)}
        out[c] = out[c].astype(str).map(lookup).fillna(-1).astype("int64")
    return out


def model_input(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The panel as the global model reads it: unique_id, ds, y (filled as the local
    families fill it), observed, known, static (encoded)."""
    from engine.forecast.models import _fill_missing

    df = frame[["unique_id", "ds", "y", "observed", *spec.known, *spec.static]].copy()
    df = df.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    y = df["y"].where(df["observed"].astype(bool))
    df["y"] = y.groupby(df["unique_id"], sort=False).transform(
        lambda s: pd.Series(_fill_missing(s.to_numpy(dtype=float)), index=s.index)
    )
    for c in spec.known:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return encode_static(df, spec)


def spark_features(spark: Any, inp: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Every row's point-in-time features, computed by Spark window functions over
    (unique_id ordered by ds): unique_id, ds, y, observed, <spec.columns>."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    sdf = spark.createDataFrame(inp)
    w = Window.partitionBy("unique_id").orderBy("ds")
    cols = [F.col(c) for c in ("unique_id", "ds", "y", "observed", *spec.static, *spec.known)]
    for k in spec.lags:
        cols.append(F.lag("y", k).over(w).alias(f"lag{k}"))
    for win in spec.windows:
        frame = w.rowsBetween(-win, -1)
        n = F.count("y").over(frame)
        cols.append(
            F.when(n >= win, F.avg("y").over(frame)).alias(f"rolling_mean_lag1_window_size{win}")
        )
        cols.append(
            F.when(n >= win, F.stddev_samp("y").over(frame)).alias(
                f"rolling_std_lag1_window_size{win}"
            )
        )
    cal = {
        "month": F.month("ds"),
        "week": F.weekofyear("ds"),  # ISO 8601 week, as pandas' isocalendar()
        "dayofweek": (F.weekday("ds")),  # Monday 0, as pandas
    }
    cols += [cal[c].alias(c) for c in spec.calendar]
    out = sdf.select(*cols).toPandas()
    out = out.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    for c in spec.calendar:
        out[c] = out[c].astype("int64")
    return out[["unique_id", "ds", "y", "observed", *spec.columns]]


def features_snapshot(
    open_spark: Callable[[], AbstractContextManager[Any]],
    ws: Any,
    project: str,
    panel_snap: Any,
    spec: FeatureSpec,
) -> Any:
    """The features of a panel snapshot as their own immutable snapshot (``ff-<hash>`` of
    the panel snapshot's id, the spec and this format): same inputs, same folder, and no
    Spark started for them."""
    from engine.features.snapshot import Snapshot, commit, snapshot_root, temp_dir

    key = {"format": FEATURES_FORMAT, "panel": panel_snap.id, "spec": spec.to_dict()}
    sid = "ff-" + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    final = snapshot_root(ws, project) / sid
    if (final / "manifest.json").is_file():
        return Snapshot(final, json.loads((final / "manifest.json").read_text()))
    frame = pd.read_parquet(panel_snap.data / "panel.parquet")
    with open_spark() as spark:
        feats = spark_features(spark, model_input(frame, spec), spec)
    tmp = temp_dir(ws, project, sid)
    (tmp / "data").mkdir(parents=True)
    feats.to_parquet(tmp / "data" / "features.parquet", index=False)
    manifest = {
        "snapshot_id": sid,
        "kind": "forecast-features",
        "format": FEATURES_FORMAT,
        "panel_snapshot": panel_snap.id,
        "rows": len(feats),
        "columns": spec.columns,
        "spec": spec.to_dict(),
        "point_in_time": "row t: target values before t; known-in-advance values at t; "
        "static; calendar of t",
        "built_with": "spark",
    }
    return commit(tmp, manifest)


def read_features(snap: Any) -> pd.DataFrame:
    return pd.read_parquet(snap.data / "features.parquet")
