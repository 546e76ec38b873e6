"""The global model: one LightGBM regressor over every series, trained on the Spark
feature snapshot (engine.forecast.features), forecasting recursively through mlforecast
(its own lag bookkeeping, not re-written), searched by Ray Tune.

Backtest: window ``k`` trains on the snapshot's rows before the window's first period (the
panel's series all end at its last period, so a window is a span of dates) and forecasts
the window's ``h`` periods from each series' history before it, with the known columns'
values at those periods. Rows whose target was not recorded are never training targets.

Search: ``trials`` LightGBM settings drawn from a small space with the configured seed;
each is scored by MASE on the calibration windows (before the held-out ones), one Tune
trial each (or in turn, without Ray); the best is refitted per window for the backtest
table, and on the whole snapshot for production.
"""

from __future__ import annotations

import io
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.config.forecast import ForecastConfig
from engine.forecast.features import FeatureSpec
from engine.forecast.models import GLOBAL

SPACE: dict[str, list[Any]] = {
    "num_leaves": [15, 31, 63],
    "learning_rate": [0.03, 0.05, 0.1],
    "n_estimators": [100, 200, 400],
    "min_child_samples": [5, 20, 50],
}
DEFAULT = {"num_leaves": 31, "learning_rate": 0.05, "n_estimators": 200, "min_child_samples": 20}


def draw(trials: int, seed: int) -> list[dict[str, Any]]:
    """The settings tried: LightGBM's usual start first, then draws without repeats."""
    rng = np.random.default_rng(seed)
    out = [dict(DEFAULT)]
    seen = {tuple(sorted(DEFAULT.items()))}
    for _ in range(200):
        if len(out) >= trials:
            break
        c = {k: v[int(rng.integers(len(v)))] for k, v in SPACE.items()}
        key = tuple(sorted(c.items()))
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out[:trials]


def make_mlf(spec: FeatureSpec, params: dict[str, Any], freq: str, seed: int) -> Any:
    from lightgbm import LGBMRegressor
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean, RollingStd

    model = LGBMRegressor(**params, random_state=seed, n_jobs=1, verbosity=-1)
    tfm: dict[int, list[Any]] = {}
    for w in spec.windows:
        tfm.setdefault(1, []).extend([RollingMean(window_size=w), RollingStd(window_size=w)])
    return MLForecast(
        models={GLOBAL: model},
        freq=freq,
        lags=spec.lags,
        lag_transforms=tfm or None,
        date_features=spec.calendar,
    )


def _series_input(inp: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    return inp[["unique_id", "ds", "y", *spec.static, *spec.known]]


def fit(
    feats: pd.DataFrame,
    inp: pd.DataFrame,
    spec: FeatureSpec,
    params: dict[str, Any],
    freq: str,
    seed: int,
) -> Any:
    """An MLForecast whose model is trained on the snapshot rows ``feats`` whose target
    was recorded (LightGBM takes the missing lags of a series' first rows as missing);
    ``inp`` (the same history) primes mlforecast's lag state for the recursive steps."""
    mlf = make_mlf(spec, params, freq, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlf.preprocess(
            _series_input(inp, spec),
            static_features=spec.static,
            dropna=False,
            validate_data=False,
        )
    order = list(mlf.ts.features_order_)
    if sorted(order) != sorted(spec.columns):  # the snapshot and mlforecast disagree
        raise RuntimeError(f"feature columns differ: snapshot {spec.columns}, mlforecast {order}")
    rows = feats[feats["observed"].astype(bool)]  # a series' first rows: lags missing, kept
    mlf.fit_models(rows[order], rows["y"].to_numpy(dtype=float))
    return mlf


def predict(
    mlf: Any, history: pd.DataFrame, future: pd.DataFrame | None, spec: FeatureSpec, h: int
) -> pd.DataFrame:
    """``h`` recursive steps after each series of ``history`` (model input rows): unique_id,
    ds, global (clipped at zero)."""
    x_df = None
    if spec.known:
        assert future is not None, "the known columns' future values"
        x_df = future[["unique_id", "ds", *spec.known]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = mlf.predict(h, new_df=_series_input(history, spec), X_df=x_df)
    out[GLOBAL] = out[GLOBAL].clip(lower=0.0)
    return out[["unique_id", "ds", GLOBAL]]


def window_cutoffs(inp: pd.DataFrame, fc: ForecastConfig) -> list[pd.Timestamp]:
    """The first period of each backtest window (the panel's series share their end)."""
    off = pd.tseries.frequencies.to_offset(fc.freq)
    last = inp["ds"].max()
    w, h, step = fc.backtest.windows, fc.horizon, fc.step
    return [last - off * (h - 1 + step * (w - 1 - k)) for k in range(w)]


def backtest_windows(
    feats: pd.DataFrame,
    inp: pd.DataFrame,
    spec: FeatureSpec,
    params: dict[str, Any],
    fc: ForecastConfig,
    windows: list[int],
    ids: list[str],
) -> pd.DataFrame:
    """The global model's forecasts of windows ``windows`` for series ``ids``:
    unique_id, window, ds, global."""
    off = pd.tseries.frequencies.to_offset(fc.freq)
    cuts = window_cutoffs(inp, fc)
    parts = []
    for k in windows:
        cut = cuts[k]
        mlf = fit(
            feats[feats["ds"] < cut],
            inp[inp["ds"] < cut],
            spec,
            params,
            fc.freq,
            fc.global_model.seed,
        )
        hist = inp[(inp["ds"] < cut) & inp["unique_id"].isin(ids)]
        dates = pd.date_range(cut, periods=fc.horizon, freq=off)
        fut = inp[inp["ds"].isin(dates) & inp["unique_id"].isin(hist["unique_id"].unique())]
        fut = _complete_future(fut, hist, dates, spec)
        got = predict(mlf, hist, fut, spec, fc.horizon)
        got.insert(1, "window", k)
        parts.append(got)
    return pd.concat(parts, ignore_index=True)


def _complete_future(
    fut: pd.DataFrame, hist: pd.DataFrame, dates: pd.DatetimeIndex, spec: FeatureSpec
) -> pd.DataFrame:
    """Every (series, date) of the window, the known values where the panel has them (a
    series ending inside a window never does: its last known values carry forward)."""
    ids = hist["unique_id"].unique()
    grid = pd.MultiIndex.from_product([list(ids), dates], names=["unique_id", "ds"]).to_frame(
        index=False
    )
    out = grid.merge(fut[["unique_id", "ds", *spec.known]], on=["unique_id", "ds"], how="left")
    if spec.known:
        last = hist.groupby("unique_id", sort=False)[spec.known].last()
        for c in spec.known:
            out[c] = out[c].fillna(out["unique_id"].map(last[c]))
    return out


def mase_of(bt_rows: pd.DataFrame, col: str) -> float:
    obs = bt_rows[bt_rows["observed"].to_numpy(dtype=bool)]
    err = (obs[col] - obs["y"]).abs() / obs["scale"]
    return float(err.groupby(obs["unique_id"], sort=False).mean().mean())


def _trial_score(
    params: dict[str, Any],
    feats: pd.DataFrame,
    inp: pd.DataFrame,
    spec_d: dict[str, Any],
    fc_d: dict[str, Any],
    windows: list[int],
    target: pd.DataFrame,
    ids: list[str],
) -> float:
    fc = ForecastConfig.model_validate(fc_d)
    spec = FeatureSpec.from_dict(spec_d)
    got = backtest_windows(feats, inp, spec, params, fc, windows, ids)
    rows = target.merge(got, on=["unique_id", "window", "ds"], how="inner")
    return mase_of(rows, GLOBAL)


@dataclass
class Search:
    best: dict[str, Any]
    scores: list[tuple[dict[str, Any], float]]
    seconds: float


def search(
    feats: pd.DataFrame,
    inp: pd.DataFrame,
    spec: FeatureSpec,
    fc: ForecastConfig,
    windows: list[int],
    target: pd.DataFrame,
    ids: list[str],
    *,
    use_ray: bool,
    log: Callable[[str], None] = print,
) -> Search:
    """Score each drawn setting on ``windows`` (rows of ``target``: unique_id, window,
    ds, y, observed, scale) and keep the lowest MASE; one Tune trial per setting."""
    t0 = time.perf_counter()
    configs = draw(fc.global_model.trials, fc.global_model.seed)
    args = (spec.to_dict(), fc.model_dump(mode="json"), windows)
    scores: list[tuple[dict[str, Any], float]] = []
    if use_ray and len(configs) > 1:
        import ray
        from ray import tune

        refs = {k: ray.put(v) for k, v in (("f", feats), ("i", inp), ("t", target))}

        def trainable(config: dict[str, Any]) -> dict[str, float]:
            return {
                "mase": _trial_score(
                    config["params"],
                    ray.get(refs["f"]),
                    ray.get(refs["i"]),
                    *args,
                    ray.get(refs["t"]),
                    ids,
                )
            }

        with tempfile.TemporaryDirectory(prefix="insight-tune-") as store:
            tuner = tune.Tuner(
                tune.with_resources(trainable, {"cpu": 1}),
                param_space={"params": tune.grid_search(configs)},
                tune_config=tune.TuneConfig(metric="mase", mode="min"),
                run_config=tune.RunConfig(name="global-model", verbose=0, storage_path=store),
            )
            grid = tuner.fit()
            for r in (grid[i] for i in range(len(grid))):
                mase = (r.metrics or {}).get("mase", np.nan)
                if r.error is None and r.config and np.isfinite(mase):
                    scores.append((r.config["params"], float(mase)))
    else:
        for c in configs:
            scores.append((c, _trial_score(c, feats, inp, *args, target, ids)))
    if not scores:
        raise RuntimeError("every global-model trial failed")
    scores.sort(key=lambda t: t[1])
    log(
        f"global model: {len(scores)} LightGBM setting(s) searched, best MASE "
        f"{scores[0][1]:.3f} on the calibration windows"
    )
    return Search(scores[0][0], scores, time.perf_counter() - t0)


def dumps(mlf: Any) -> bytes:
    import cloudpickle

    buf = io.BytesIO()
    cloudpickle.dump(mlf, buf)
    return buf.getvalue()


def loads(b: bytes) -> Any:
    import cloudpickle

    return cloudpickle.loads(b)


def explain(
    mlf: Any, history: pd.DataFrame, future: pd.DataFrame | None, spec: FeatureSpec, h: int
) -> pd.DataFrame:
    """SHAP values (LightGBM's TreeSHAP) of each recursive step's forecast: one row per
    series and step with ``base`` and one column per feature; base + the contributions
    equals the model's raw (unclipped) forecast of that step."""
    steps: list[pd.DataFrame] = []

    def grab(x: pd.DataFrame) -> pd.DataFrame:
        steps.append(x.copy())
        return x

    x_df = future[["unique_id", "ds", *spec.known]] if spec.known and future is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        preds = mlf.predict(
            h, new_df=_series_input(history, spec), X_df=x_df, before_predict_callback=grab
        )
    model = mlf.models_[GLOBAL]
    out = []
    ids = preds["unique_id"].drop_duplicates().to_numpy()
    for i, x in enumerate(steps):
        contrib = model.predict(x, pred_contrib=True)
        df = pd.DataFrame(contrib[:, :-1], columns=list(x.columns))
        df.insert(0, "base", contrib[:, -1])
        df.insert(0, "step", i + 1)
        df.insert(0, "unique_id", ids)
        out.append(df)
    res = pd.concat(out, ignore_index=True).sort_values(["unique_id", "step"], kind="stable")
    return res.reset_index(drop=True)


__all__ = [
    "GLOBAL",
    "Search",
    "backtest_windows",
    "draw",
    "explain",
    "fit",
    "predict",
    "search",
]
