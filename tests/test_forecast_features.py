"""Point-in-time features of the global model: Spark's snapshot against an independent
pandas computation and against mlforecast's own preprocessing, on random panels; no value
at or after a cutoff reaches a row before it; the global model's SHAP values add up and
agree with the shap package."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.config.forecast import ForecastConfig
from engine.forecast.features import FeatureSpec, model_input

SEEDS = range(6)


def _panel(seed: int, weekly: bool = True) -> tuple[pd.DataFrame, ForecastConfig]:
    """Random panel: ragged starts (new products), a missing stretch, known price and
    promotion, a categorical and a numeric static column."""
    rng = np.random.default_rng(seed)
    n_series = int(rng.integers(3, 9))
    freq = "W-MON" if weekly else "D"
    end = pd.Timestamp("2024-12-30") if weekly else pd.Timestamp("2024-12-31")
    rows = []
    for i in range(n_series):
        n = int(rng.integers(6, 40))
        ds = pd.date_range(end=end, periods=n, freq=freq)
        y = rng.poisson(rng.uniform(1, 30), n).astype(float)
        observed = rng.random(n) > 0.1
        rows.append(
            pd.DataFrame(
                {
                    "unique_id": f"s{i:02d}",
                    "ds": ds,
                    "y": np.where(observed, y, np.nan),
                    "observed": observed,
                    "price": rng.uniform(1, 5, n).round(2),
                    "promo": rng.integers(0, 2, n),
                    "region": rng.choice(["north", "south", "west"]),
                    "size": float(rng.integers(1, 4)),
                }
            )
        )
    frame = pd.concat(rows, ignore_index=True)
    fc = ForecastConfig(
        source="s",
        series=["sku"],
        time="week",
        target="units",
        freq=freq,
        horizon=4,
        season_length=int(rng.choice([1, 7, 13])),
        known=["price", "promo"],
        static=["region", "size"],
        global_model={"windows": [3, int(rng.integers(2, 6))]},
    )
    return frame, fc


def _reference(inp: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The features by plain pandas: shift and rolling per series, pandas' calendar."""
    out = inp.sort_values(["unique_id", "ds"]).reset_index(drop=True).copy()
    g = out.groupby("unique_id", sort=False)["y"]
    for k in spec.lags:
        out[f"lag{k}"] = g.shift(k)
    prev = g.shift(1)
    for w in spec.windows:
        r = prev.groupby(out["unique_id"], sort=False).rolling(w, min_periods=w)
        out[f"rolling_mean_lag1_window_size{w}"] = r.mean().reset_index(level=0, drop=True)
        out[f"rolling_std_lag1_window_size{w}"] = r.std(ddof=1).reset_index(level=0, drop=True)
    iso = out["ds"].dt.isocalendar()
    cal = {"month": out["ds"].dt.month, "week": iso.week, "dayofweek": out["ds"].dt.dayofweek}
    for c in spec.calendar:
        out[c] = cal[c].astype("int64")
    return out[["unique_id", "ds", "y", "observed", *spec.columns]]


def _same(a: pd.DataFrame, b: pd.DataFrame, cols: list[str], tol: float = 1e-9) -> None:
    for c in cols:
        x, y = a[c].to_numpy(dtype=float), b[c].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(x), np.isnan(y)), c
        np.testing.assert_allclose(x[~np.isnan(x)], y[~np.isnan(y)], rtol=tol, atol=tol, err_msg=c)


def test_model_input_fills_unrecorded_targets_and_encodes_static() -> None:
    frame, fc = _panel(0)
    spec = FeatureSpec.of(fc, frame)
    inp = model_input(frame, spec)
    assert not inp["y"].isna().any()
    assert set(inp["region"].unique()) <= {0, 1, 2}
    # a recorded value is kept as it is
    m = frame.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    obs = m["observed"].to_numpy()
    np.testing.assert_array_equal(inp["y"].to_numpy()[obs], m["y"].to_numpy()[obs])


def test_default_lags_follow_the_season() -> None:
    frame, fc = _panel(1)
    fc = fc.model_copy(
        update={
            "season_length": 52,
            "global_model": fc.global_model.model_copy(update={"lags": []}),
        }
    )
    assert FeatureSpec.of(fc, frame).lags == [1, 2, 3, 4, 52]
    fc = fc.model_copy(update={"season_length": 1})
    assert FeatureSpec.of(fc, frame).lags == [1, 2, 3, 4]


@pytest.mark.spark
@pytest.mark.parametrize("seed", SEEDS)
def test_spark_features_equal_an_independent_pandas_computation(spark: object, seed: int) -> None:
    from engine.forecast.features import spark_features

    frame, fc = _panel(seed, weekly=seed % 2 == 0)
    spec = FeatureSpec.of(fc, frame)
    inp = model_input(frame, spec)
    got = spark_features(spark, inp, spec)
    ref = _reference(inp, spec)
    assert list(got.columns) == list(ref.columns)
    assert (got["unique_id"].to_numpy() == ref["unique_id"].to_numpy()).all()
    assert (got["ds"].to_numpy() == ref["ds"].to_numpy()).all()
    _same(got, ref, ["y", *spec.columns])


@pytest.mark.spark
@pytest.mark.parametrize("seed", SEEDS)
def test_no_value_at_or_after_a_cutoff_reaches_a_row_before_it(spark: object, seed: int) -> None:
    """Scramble every target and known value from a random cutoff on: the features of the
    rows before the cutoff do not move; those of the cutoff's own row move only in its
    known-in-advance columns (allowed: planned values of that period)."""
    from engine.forecast.features import spark_features

    frame, fc = _panel(seed)
    spec = FeatureSpec.of(fc, frame)
    inp = model_input(frame, spec)
    rng = np.random.default_rng(100 + seed)
    cut = rng.choice(np.sort(inp["ds"].unique())[2:])
    scrambled = inp.copy()
    after = scrambled["ds"] >= cut
    scrambled.loc[after, "y"] = rng.uniform(1000, 2000, int(after.sum()))
    scrambled.loc[after, "price"] = rng.uniform(50, 60, int(after.sum()))
    a = spark_features(spark, inp, spec)
    b = spark_features(spark, scrambled, spec)
    before = (a["ds"] < cut).to_numpy()
    _same(a[before], b[before], spec.columns)
    at = (a["ds"] == cut).to_numpy()
    past_only = [c for c in spec.columns if c not in spec.known]
    _same(a[at], b[at], past_only)
    # and the scramble did change something at or after the cutoff (the test can fail)
    assert not np.allclose(a.loc[~before, "y"].to_numpy(), b.loc[~before, "y"].to_numpy())


@pytest.mark.spark
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_snapshot_features_are_mlforecasts_own(spark: object, seed: int) -> None:
    """mlforecast's preprocessing of the same history gives the same features, in the
    order its recursive forecasts feed the model."""
    from engine.forecast.features import spark_features
    from engine.forecast.global_model import DEFAULT, make_mlf

    frame, fc = _panel(seed)
    spec = FeatureSpec.of(fc, frame)
    inp = model_input(frame, spec)
    got = spark_features(spark, inp, spec)
    mlf = make_mlf(spec, DEFAULT, fc.freq, 0)
    pre = mlf.preprocess(
        inp[["unique_id", "ds", "y", *spec.static, *spec.known]],
        static_features=spec.static,
        dropna=False,
        validate_data=False,
    )
    pre = pre.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    assert sorted(mlf.ts.features_order_) == sorted(spec.columns)
    # coreforecast's rolling statistics run a streaming update in single precision (a
    # constant window's std comes out 2e-7, not 0): equal to float32's resolution
    _same(got, pre, spec.columns, tol=1e-5)


def test_global_model_forecasts_and_its_shap_values_add_up() -> None:
    """Trained on the pandas reference's rows (the Spark path is tested above): forecasts
    for every series and step, non-negative; TreeSHAP values per step sum to the raw
    forecast and equal the shap package's."""
    import shap

    from engine.forecast import global_model as gm

    frame, fc = _panel(3)
    spec = FeatureSpec.of(fc, frame)
    inp = model_input(frame, spec)
    feats = _reference(inp, spec)
    cut = inp["ds"].max() - pd.Timedelta(weeks=3)
    mlf = gm.fit(feats[feats["ds"] < cut], inp[inp["ds"] < cut], spec, gm.DEFAULT, fc.freq, 0)
    hist = inp[inp["ds"] < cut]
    fut = inp[inp["ds"] >= cut][["unique_id", "ds", *spec.known]]
    ids = hist["unique_id"].unique()
    fut = fut[fut["unique_id"].isin(ids)]
    got = gm.predict(mlf, hist, fut, spec, 4)
    assert len(got) == 4 * len(ids) and (got[gm.GLOBAL] >= 0).all()
    ex = gm.explain(mlf, hist, fut, spec, 4)
    raw = mlf.predict(4, new_df=hist[["unique_id", "ds", "y", *spec.static, *spec.known]], X_df=fut)
    total = ex["base"] + ex[spec.columns].sum(axis=1)
    np.testing.assert_allclose(total.to_numpy(), raw[gm.GLOBAL].to_numpy(), rtol=1e-6, atol=1e-6)
    x1 = feats[feats["ds"] < cut][list(mlf.ts.features_order_)].dropna().head(20)
    ours = mlf.models_[gm.GLOBAL].predict(x1, pred_contrib=True)[:, :-1]
    theirs = shap.TreeExplainer(mlf.models_[gm.GLOBAL]).shap_values(x1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_the_search_draws_distinct_settings_from_the_default() -> None:
    from engine.forecast.global_model import DEFAULT, draw

    d = draw(6, 0)
    assert d[0] == DEFAULT and len(d) == 6
    assert len({tuple(sorted(c.items())) for c in d}) == 6
    assert draw(6, 0) == d and draw(6, 1) != d


@pytest.mark.spark
def test_a_session_the_caller_has_is_used_and_left_running(spark: Any, tmp_path: Any) -> None:
    """The forecast stage opens Spark with master_session; in a process that already has a
    session (a notebook, this suite's fixture) it must use that one and not stop it."""
    from engine.features.spark import master_session
    from engine.workspace import Workspace

    ws = Workspace(tmp_path / ".insight").ensure()
    with master_session("local[1]", ws) as s:
        assert s.sparkContext.applicationId == spark.sparkContext.applicationId  # type: ignore[attr-defined]
    assert spark.range(3).count() == 3  # type: ignore[attr-defined]
