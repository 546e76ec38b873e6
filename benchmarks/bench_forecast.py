"""Forecasting: the engine's rolling-origin backtest fanned out over Ray tasks (batches of
series, each batch's rows put once) vs statsforecast's own ``cross_validation`` with
``n_jobs`` = the CPUs, on the same series, the same models (seasonal naive, AutoETS,
Theta), the same windows. Both refit every window; the forecasts must agree.

Full: 2,000 weekly series x 150 weeks, 3 windows of 8 weeks. Smoke: 24 series x 80 weeks,
one timed run each (the suite checks that it runs and that the answers agree).
Reports series per second per core and the panel's bytes per series.

Third case: ``POST /forecast`` through Ray Serve over HTTP, one daily series, 28 steps,
sequential requests (p50 and p99), against the same forecast computed in process by the
registered forecaster (what the replica runs): the serving overhead, and equal answers.

Second case: the global model (one LightGBM over every series) trained through the engine
(on the feature snapshot's rows, then mlforecast's recursive forecast) vs mlforecast's own
``fit`` + ``predict`` on the same series, the same features and settings: rows trained per
second, and the forecasts must be the same.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._harness import Timing, case, measure, parser, write
from engine.config.forecast import ForecastConfig


def _panel(n: int, t: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    level = rng.uniform(10, 300, n)
    k = np.arange(t)
    y = level[:, None] * (1 + 0.25 * np.sin(2 * np.pi * k / 52))[None, :] + rng.normal(
        0, 1, (n, t)
    ) * (0.15 * level[:, None])
    ds = pd.date_range("2022-01-03", periods=t, freq="W-MON")
    return pd.DataFrame(
        {
            "unique_id": np.repeat([f"s{i}" for i in range(n)], t),
            "ds": np.tile(ds, n),
            "y": np.maximum(y, 0).ravel(),
            "observed": True,
        }
    )


def _statsforecast(df: pd.DataFrame, fc: ForecastConfig, cpus: int) -> pd.DataFrame:
    from statsforecast import StatsForecast

    from engine.forecast.models import statsforecast_models

    sf = StatsForecast(
        models=statsforecast_models(fc.families, fc.season_length), freq=fc.freq, n_jobs=cpus
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sf.cross_validation(
            df=df[["unique_id", "ds", "y"]],
            h=fc.horizon,
            n_windows=fc.backtest.windows,
            step_size=fc.step,
        )


def _engine(df: pd.DataFrame, fc: ForecastConfig) -> pd.DataFrame:
    from engine.forecast.backtest import run_backtest

    ids = list(dict.fromkeys(df["unique_id"]))
    return run_backtest(df, fc, ids, log=lambda m: None).table


def _agree(ours: pd.DataFrame, ref: pd.DataFrame, fams: list[str]) -> bool:
    m = ours.merge(ref, on=["unique_id", "ds"], suffixes=("", "_ref"))
    if len(m) != len(ours):
        return False
    for f in fams:
        col = {"seasonal_naive": "seasonal_naive", "auto_ets": "auto_ets", "theta": "theta"}[f]
        a, b = m[f].to_numpy(), np.maximum(m[col + "_ref"].to_numpy(), 0)
        if not np.allclose(a, b, rtol=1e-6, atol=1e-6):
            return False
    return True


def _global_inputs(df: pd.DataFrame, fc: ForecastConfig) -> tuple[Any, Any, Any]:
    """The global model's training rows. In the engine they come from the Spark feature
    snapshot, which tests/test_forecast_features.py proves equal to mlforecast's own
    preprocessing; here that preprocessing builds them (untimed), so the benchmark needs
    no Spark and times training only."""
    from engine.forecast.features import FeatureSpec, model_input
    from engine.forecast.global_model import DEFAULT, make_mlf

    spec = FeatureSpec.of(fc, df)
    inp = model_input(df, spec)
    pre = make_mlf(spec, DEFAULT, fc.freq, 0).preprocess(
        inp[["unique_id", "ds", "y"]], static_features=[], dropna=False, validate_data=False
    )
    feats = pre.assign(observed=True)
    return feats, inp, spec


def _global_engine(feats: Any, inp: Any, spec: Any, fc: ForecastConfig) -> pd.DataFrame:
    from engine.forecast import global_model as gm

    mlf = gm.fit(feats, inp, spec, gm.DEFAULT, fc.freq, 0)
    return gm.predict(mlf, inp, None, spec, fc.horizon)


def _global_reference(inp: Any, spec: Any, fc: ForecastConfig) -> pd.DataFrame:
    from engine.forecast.global_model import DEFAULT, GLOBAL, make_mlf

    mlf = make_mlf(spec, DEFAULT, fc.freq, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlf.fit(inp[["unique_id", "ds", "y"]], static_features=[], dropna=False)
        out = mlf.predict(fc.horizon)
    out[GLOBAL] = out[GLOBAL].clip(lower=0.0)
    return out


def _latencies(fn: Any, n: int, warmup: int = 3) -> tuple[Timing, list[float]]:
    for _ in range(warmup):
        fn()
    lat, out = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        lat.append(time.perf_counter() - t0)
    return Timing(min(lat), statistics.median(lat), max(lat), n, warmup, out), lat


def _serve_case(smoke: bool) -> dict[str, Any]:
    """/forecast latency, one series x 28 days, vs the forecaster in process."""
    import httpx
    import yaml
    from ray import serve

    from engine.config.forecast import ForecastProject
    from engine.stages.forecast import load_forecaster, stage_forecast_train
    from engine.workspace import Workspace
    from serve.forecast_app import forecast_up

    tmp = Path(tempfile.mkdtemp(prefix="bench-fcserve-"))
    try:
        rng = np.random.default_rng(0)
        days = pd.date_range("2025-01-01", periods=200, freq="D")
        rows = [
            (f"s{i}", d.date().isoformat(), int(v))
            for i in range(20)
            for d, v in zip(
                days,
                rng.poisson(
                    rng.uniform(5, 80) * (1 + 0.3 * np.sin(np.arange(200) * 2 * np.pi / 7))
                ),
                strict=True,
            )
        ]
        pd.DataFrame(rows, columns=["sku", "day", "units"]).to_csv(tmp / "sales.csv", index=False)
        raw = {
            "name": "bench",
            "sources": {"sales": {"path": "sales.csv", "format": "csv"}},
            "forecast": {
                "source": "sales",
                "series": ["sku"],
                "time": "day",
                "target": "units",
                "freq": "D",
                "horizon": 28,
                "season_length": 7,
                "families": ["naive", "seasonal_naive", "auto_ets"],
                "backtest": {"windows": 3, "holdout": 1},
                "global_model": {"enabled": False},
            },
        }
        (tmp / "insight.yaml").write_text(yaml.safe_dump(raw))
        proj = ForecastProject.load(tmp / "insight.yaml")
        ws = Workspace(tmp / ".insight").ensure()
        stage_forecast_train(proj, ws, use_ray=False, log=lambda m: None)
        url = forecast_up(proj, ws)
        try:
            f, _ = load_forecaster(ws, "demand")
            panel = pd.read_parquet(
                ws.features / "bench" / f.snapshot_id / "data" / "panel.parquet"
            )
            hist = panel[panel["unique_id"] == "s3"]
            hist = hist.assign(y=hist["y"].where(hist["observed"]))
            body = {"series": [{"sku": "s3"}]}
            n = 5 if smoke else 300
            with httpx.Client(timeout=60) as c:
                http, lat_h = _latencies(
                    lambda: c.post(f"{url}/", json=body).raise_for_status().json(), n
                )
            local, lat_l = _latencies(lambda: f.forecast(hist, None, every=True), n)
        finally:
            serve.shutdown()
        got = [p["forecast"] for p in http.result["forecasts"][0]["points"]]
        equal = bool(np.allclose(got, local.result["forecast"].to_numpy(), rtol=1e-9))
        return case(
            "POST /forecast over HTTP (Ray Serve), one daily series x 28 steps, sequential",
            http,
            "the registered forecaster called in process (what the replica computes)",
            local,
            equal,
            p50_ms=1000 * float(np.percentile(lat_h, 50)),
            p99_ms=1000 * float(np.percentile(lat_h, 99)),
            in_process_p50_ms=1000 * float(np.percentile(lat_l, 50)),
            in_process_p99_ms=1000 * float(np.percentile(lat_l, 99)),
            model=str(http.result["forecasts"][0]["model"]),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    import ray

    n, t = (24, 80) if args.smoke else (2000, 150)
    cpus = os.cpu_count() or 1
    df = _panel(n, t)
    fc = ForecastConfig.model_validate(
        dict(
            source="x",
            series=["unique_id"],
            time="ds",
            target="y",
            freq="W-MON",
            horizon=8,
            season_length=52,
            families=["seasonal_naive", "auto_ets", "theta"],
            ensemble=False,
            backtest={"windows": 3},
            batch_series=max(10, n // (4 * cpus)),
        )
    )
    # Ray's session folder of its own (short: socket paths stay under 107 bytes), removed
    # at the end; the default /tmp/ray is shared with any other Ray user of the machine
    ray_tmp = tempfile.mkdtemp(prefix="insray-b-")
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, _temp_dir=ray_tmp)
    try:
        repeat = 1 if args.smoke else 2  # smoke: the suite checks it runs and agrees
        ours = measure(partial(_engine, df, fc), repeat)
        ref = measure(partial(_statsforecast, df, fc, cpus), repeat)
        # the smoke size skips the served case: tests/test_forecast_serve.py deploys the
        # same app (a second Serve start cost the suite about 30 s)
        served = None if args.smoke else _serve_case(args.smoke)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    feats, inp, spec = _global_inputs(df, fc)
    g_ours = measure(partial(_global_engine, feats, inp, spec, fc), repeat)
    g_ref = measure(partial(_global_reference, inp, spec, fc), repeat)
    g_equal = bool(
        np.allclose(
            g_ours.result["global"].to_numpy(), g_ref.result["global"].to_numpy(), rtol=1e-9
        )
    )
    bytes_per_series = int(df.memory_usage(deep=True).sum() / n)
    extra: dict[str, Any] = {
        "series": n,
        "weeks": t,
        "cpus": cpus,
        "engine_series_per_s_per_core": n / ours.median / cpus,
        "reference_series_per_s_per_core": n / ref.median / cpus,
        "panel_bytes_per_series": bytes_per_series,
        "within_1_2x": ours.median <= 1.2 * ref.median,
    }
    cases = [
        case(
            f"backtest {n:,} series x {t} weeks, 3 windows, 3 families (Ray tasks)",
            ours,
            f"statsforecast cross_validation n_jobs={cpus}",
            ref,
            _agree(ours.result, ref.result, fc.families),
            **extra,
        ),
        case(
            f"global LightGBM model: train on {len(feats):,} rows and forecast {fc.horizon} "
            "weeks (snapshot rows, mlforecast's recursion)",
            g_ours,
            "mlforecast fit + predict called directly",
            g_ref,
            g_equal,
            rows=len(feats),
            engine_rows_per_s=len(feats) / g_ours.median,
            reference_rows_per_s=len(feats) / g_ref.median,
        ),
    ]
    if served is not None:
        cases.append(served)
    write("forecast", args.smoke, cases, args.out)


if __name__ == "__main__":
    main()
