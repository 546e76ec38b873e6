"""The registered forecaster: the per-series choice, the conformal half-widths and the
scales, with the forecast configuration. Local models are refitted on the history they
are given (statsforecast fits in milliseconds per series), so one registered version
forecasts from any origin: the history up to the origin, plus the known-in-advance
columns' future values.

``Forecaster.forecast(history, future)`` returns one row per series and step:
``unique_id, ds, step, forecast, lo-<level>, hi-<level>, model`` (the candidate used).
A series the backtest never saw (a new product) gets the common choice and the median
scale of the others' (said in the ``note`` column); a ``+x`` choice without future known
values is a :class:`DataError` naming the series and period.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from engine.config.forecast import ForecastConfig
from engine.errors import DataError
from engine.forecast.backtest import apply_intervals
from engine.forecast.models import ENSEMBLE, GLOBAL, add_global_to_ensemble, forecast_batch

GLOBAL_ARTIFACT = "global_model.pkl"


@dataclass
class Forecaster:
    config: ForecastConfig
    chosen: dict[str, str]
    scale: dict[str, float]
    quantiles: dict[int, list[float]]
    snapshot_id: str
    cum_errors: dict[int, list[float]] | None = None  # P -> quantile grid (inventory)
    global_spec: dict[str, Any] | None = None  # FeatureSpec of the global model, if any
    static_values: dict[str, dict[str, Any]] | None = None  # unique_id -> static columns
    hierarchy: dict[str, Any] | None = None  # upper_chosen, weights, method (hierarchy.py)
    global_model: Any = None  # the fitted MLForecast (artifact global_model.pkl)

    @property
    def common(self) -> str:
        """The candidate chosen most often: what an unseen series gets."""
        vals = list(self.chosen.values())
        return max(set(vals), key=vals.count) if vals else self.config.families[0]

    def to_json(self) -> str:
        return json.dumps(
            {
                "config": self.config.model_dump(mode="json"),
                "chosen": self.chosen,
                "scale": self.scale,
                "quantiles": {str(k): v for k, v in self.quantiles.items()},
                "snapshot_id": self.snapshot_id,
                "cum_errors": {str(k): v for k, v in (self.cum_errors or {}).items()},
                "global_spec": self.global_spec,
                "static_values": self.static_values,
                "hierarchy": self.hierarchy,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Forecaster:
        d = json.loads(text)
        return cls(
            ForecastConfig.model_validate(d["config"]),
            d["chosen"],
            {k: float(v) for k, v in d["scale"].items()},
            {int(k): v for k, v in d["quantiles"].items()},
            d["snapshot_id"],
            {int(k): v for k, v in d.get("cum_errors", {}).items()} or None,
            d.get("global_spec"),
            d.get("static_values"),
            d.get("hierarchy"),
        )

    @classmethod
    def load_run(cls, run_id: str) -> Forecaster:
        """The forecaster a training run logged, its global model included."""
        import mlflow

        f = cls.from_json(mlflow.artifacts.load_text(f"runs:/{run_id}/forecaster.json"))
        if f.global_spec is not None:
            from engine.forecast.global_model import loads

            path = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{GLOBAL_ARTIFACT}")
            with open(path, "rb") as fh:
                f.global_model = loads(fh.read())
        return f

    def uses_global(self, ids: list[str]) -> bool:
        return self.global_model is not None and any(
            self.chosen.get(u, self.common) in (GLOBAL, ENSEMBLE) for u in ids
        )

    def future_needed(self, ids: list[str]) -> bool:
        return bool(self.config.known) and any(
            self.chosen.get(u, self.common).endswith("+x")
            or self.chosen.get(u, self.common) in (ENSEMBLE, GLOBAL)
            for u in ids
        )

    def check_future(
        self,
        ids: list[str],
        last: pd.Series,
        future: pd.DataFrame | None,
        *,
        every: bool = False,
    ) -> None:
        """Every series that needs them (``every``: every series, whatever its model) has
        the known columns' values at every forecast period; otherwise a DataError naming
        the first series and period missing."""
        fc = self.config
        if not fc.known or not (every or self.future_needed(ids)):
            return
        off = pd.tseries.frequencies.to_offset(fc.freq)
        want = pd.DataFrame(
            [(u, last[u] + off * (i + 1)) for u in ids for i in range(fc.horizon)],
            columns=["unique_id", "ds"],
        )
        got = (
            future[["unique_id", "ds", *fc.known]]
            if future is not None
            else pd.DataFrame(columns=["unique_id", "ds", *fc.known])
        )
        m = want.merge(got, on=["unique_id", "ds"], how="left")
        miss = m[fc.known].isna().any(axis=1)
        if miss.any():
            i = int(np.flatnonzero(miss.to_numpy())[0])
            cols = [c for c in fc.known if pd.isna(m[c].iloc[i])]
            raise DataError(
                f"forecast: series {m['unique_id'].iloc[i]} has no future value of {cols} "
                f"for the period {m['ds'].iloc[i].date()} ({int(miss.sum())} series-period(s) "
                f"missing in all). Its model ({self.chosen.get(m['unique_id'].iloc[i], self.common)}) "
                f"uses the known-in-advance columns {fc.known}. Fix: give their planned values "
                "for every period of the horizon."
            )

    def forecast(
        self, history: pd.DataFrame, future: pd.DataFrame | None, *, every: bool = False
    ) -> pd.DataFrame:
        fc = self.config
        ids = list(dict.fromkeys(history["unique_id"].tolist()))
        last = history.groupby("unique_id", sort=False)["ds"].max()
        self.check_future(ids, last, future, every=every)
        res, _ = forecast_batch(
            history,
            future,
            fc.horizon,
            fc.families,
            fc.season_length,
            fc.freq,
            fc.known if future is not None else [],
            fc.ensemble,
        )
        if self.uses_global(ids):
            res = res.merge(self._global(history, future), on=["unique_id", "ds"], how="left")
            res[GLOBAL] = res[GLOBAL].fillna(res[fc.families[0]])
            add_global_to_ensemble(res)
        res["step"] = res.groupby("unique_id", sort=False).cumcount() + 1
        used = res["unique_id"].map(lambda u: self.chosen.get(u, self.common))
        cols = [c for c in res.columns if c not in ("unique_id", "ds", "step")]
        used = used.where(used.isin(cols), other=fc.families[0])
        res["model"] = used.to_numpy()
        res["forecast"] = res[cols].to_numpy()[
            np.arange(len(res)), [cols.index(x) for x in res["model"]]
        ]
        med = float(np.median(list(self.scale.values()))) if self.scale else 1.0
        scale = pd.Series({u: self.scale.get(u, med) for u in ids})
        out = apply_intervals(
            res[["unique_id", "ds", "step", "forecast", "model"]], "forecast", scale, self.quantiles
        )
        out["note"] = np.where(
            out["unique_id"].isin(list(self.chosen)), "", "new series: common model, median scale"
        )
        return out

    def _model_input(self, history: pd.DataFrame) -> tuple[pd.DataFrame, Any]:
        """The history as the global model reads it: static columns from the training
        panel where the caller did not send them (a new series: the most common value)."""
        from engine.forecast.features import FeatureSpec, model_input

        assert self.global_spec is not None
        spec = FeatureSpec.from_dict(self.global_spec)
        h = history.copy()
        if "observed" not in h.columns:
            h["observed"] = h["y"].notna()
        sv = pd.DataFrame.from_dict(self.static_values or {}, orient="index")
        for c in spec.static:
            if c not in h.columns:
                common = sv[c].mode().iloc[0] if c in sv.columns and len(sv) else 0
                h[c] = h["unique_id"].map(sv[c] if c in sv.columns else {}).fillna(common)
        return model_input(h, spec), spec

    def _global(self, history: pd.DataFrame, future: pd.DataFrame | None) -> pd.DataFrame:
        from engine.forecast.global_model import predict

        inp, spec = self._model_input(history)
        return predict(self.global_model, inp, future, spec, self.config.horizon)

    def explain(self, history: pd.DataFrame, future: pd.DataFrame | None) -> pd.DataFrame:
        """SHAP values of the global model's forecast for each series and step (base +
        contributions = the model's raw forecast); empty without a global model."""
        from engine.forecast.global_model import explain

        if self.global_model is None:
            return pd.DataFrame()
        inp, spec = self._model_input(history)
        return explain(self.global_model, inp, future, spec, self.config.horizon)


def future_frame(df: pd.DataFrame, fc: ForecastConfig, where: str = "future") -> pd.DataFrame:
    """Planned known values as the forecaster takes them (unique_id, ds, known...): the
    keys and time present, every known value a number (a missing column is all missing,
    which check_future names by series and period); else a DataError naming the value."""
    from engine.forecast.panel import series_id

    need = [*fc.series, fc.time]
    miss = [c for c in need if c not in df.columns]
    if miss:
        raise DataError(
            f"forecast: {where} lacks column(s) {miss}. Fix: one row per series and period "
            f"ahead with {[*need, *fc.known]}."
        )
    out = df.copy()
    out["unique_id"] = series_id(out, fc.series)
    out["ds"] = pd.to_datetime(out[fc.time], errors="coerce")
    for c in fc.known:
        raw = out[c] if c in out.columns else pd.Series(None, index=out.index, dtype=object)
        v = pd.to_numeric(raw, errors="coerce")
        bad = v.isna() & raw.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"forecast: {where} '{c}' of series {out['unique_id'].iloc[i]} at "
                f"{out[fc.time].iloc[i]} is {raw.iloc[i]!r}: not a number. Fix: numbers only."
            )
        out[c] = v
    return out[["unique_id", "ds", *fc.known]]


class ForecastPyfunc(PythonModel):  # type: ignore[misc]
    """MLflow pyfunc wrapper: ``predict`` takes history rows (y set) and future rows (y
    empty, known columns set) in one frame."""

    def __init__(self) -> None:
        self.f: Forecaster | None = None

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["forecaster"], encoding="utf-8") as fh:
            self.f = Forecaster.from_json(fh.read())
        if "global_model" in context.artifacts:
            from engine.forecast.global_model import loads

            with open(context.artifacts["global_model"], "rb") as fh:
                self.f.global_model = loads(fh.read())

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        assert self.f is not None
        df = model_input.copy()
        df["ds"] = pd.to_datetime(df["ds"])
        hist = df[df["y"].notna()]
        fut = df[df["y"].isna()]
        return self.f.forecast(hist, fut if len(fut) else None)
