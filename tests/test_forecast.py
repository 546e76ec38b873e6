"""Forecasting without Ray: the forecast block, the panel's checks and fills against
independent pandas, the backtest's windows against statsforecast called directly on the
same history (no value from at or after an origin), MASE against numpy, the per-series
choice, and the intervals' coverage by simulation of futures the engine never saw."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.config.forecast import ForecastConfig, ForecastProject
from engine.errors import ConfigError, DataError
from engine.forecast.backtest import (
    backtest_batch,
    conformal_quantile,
    run_backtest,
)
from engine.forecast.panel import check_and_fill, infer_freq, profile

SEEDS = [0, 1, 2, 3]


def _fc(**kw: Any) -> ForecastConfig:
    base: dict[str, Any] = {
        "source": "sales",
        "series": ["store", "sku"],
        "time": "week",
        "target": "units",
        "freq": "W-MON",
        "horizon": 4,
        "season_length": 1,
        "families": ["naive"],
        "ensemble": False,
        "backtest": {"windows": 3, "holdout": 1},
    }
    return ForecastConfig.model_validate({**base, **kw})


def _table(rng: np.random.Generator, n_series: int = 6, weeks: int = 30) -> pd.DataFrame:
    """Shaped like a shop's export: text store codes, SKU names with spaces, a price."""
    rows = []
    start = pd.Timestamp("2026-01-05")  # a Monday
    for i in range(n_series):
        level = rng.uniform(5, 50)
        for t in range(weeks):
            rows.append(
                {
                    "store": f"S-{i % 3:02d}",
                    "sku": f"Juice {i} L",
                    "week": (start + pd.Timedelta(weeks=t)).date().isoformat(),
                    "units": float(rng.poisson(level)),
                    "price": round(rng.uniform(1, 3), 2),
                }
            )
    return pd.DataFrame(rows)


# ---- the project file ------------------------------------------------------------------


def test_the_forecast_block_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="unknown model family"):
        _fc(families=["prophet"])
    with pytest.raises(ValueError, match="both series and known"):
        _fc(known=["store"])
    with pytest.raises(ValueError, match="holdout 3 must be below"):
        _fc(backtest={"windows": 3, "holdout": 3})
    with pytest.raises(ValueError, match="not a pandas frequency"):
        _fc(freq="fortnightly")
    raw = {
        "name": "shop",
        "sources": {"sales": {"path": "sales.csv", "format": "csv"}},
        "forecast": {**_fc().model_dump(mode="json"), "source": "salez"},
    }
    with pytest.raises(ConfigError, match=r"forecast\.source 'salez' is not a source"):
        ForecastProject.from_dict(raw)
    raw["forecast"]["source"] = "sales"
    # a file that also holds the churn task: the forecast loader reads its own part
    both = {**raw, "label": {"source": "x", "column": "y"}, "entities": {}}
    assert ForecastProject.from_dict(both).forecast.horizon == 4


def test_a_forecast_only_file_is_a_clear_error_for_the_churn_commands(tmp_path: Any) -> None:
    import yaml

    from engine.config.project import ProjectConfig

    p = tmp_path / "insight.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "name": "shop",
                "sources": {"sales": {"path": "s.csv"}},
                "forecast": _fc().model_dump(mode="json"),
            }
        )
    )
    with pytest.raises(ConfigError, match="is a forecasting project"):
        ProjectConfig.load(p)
    assert ForecastProject.load(p).forecast.target == "units"


# ---- the panel ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.assign(units=d["units"].where(d.index != 7, -3.0)), ["negative", "-3"]),
        (
            lambda d: pd.concat([d, d.iloc[[4]]]),
            ["repeat a series and period", "S-00/Juice 0 L at 2026-02-02"],
        ),
        (
            lambda d: d.assign(week=d["week"].where(d.index != 9, "2026-01-07")),
            ["do not fit the frequency W-MON", "2026-01-07"],
        ),
        (
            lambda d: d.assign(week=d["week"].where(d.index != 3, "soon")),
            ["no readable time", "'soon'"],
        ),
    ],
)
def test_bad_tables_are_clear_errors_naming_the_series_and_value(
    change: Any, words: list[str]
) -> None:
    df = change(_table(np.random.default_rng(0)).reset_index(drop=True))
    with pytest.raises(DataError) as e:
        check_and_fill(df, _fc())
    for w in words:
        assert w in str(e.value), str(e.value)
    assert "Fix:" in str(e.value)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gaps", ["zero", "missing"])
def test_gaps_are_filled_as_declared_like_pandas_reindex(seed: int, gaps: str) -> None:
    rng = np.random.default_rng(seed)
    df = _table(rng)
    drop = rng.random(len(df)) < 0.2  # periods absent from the table
    blank = rng.random(len(df)) < 0.05  # a row present, its quantity blank
    df = df[~drop].copy()
    df.loc[blank[~drop], "units"] = np.nan
    p = check_and_fill(df, _fc(gaps=gaps, known=["price"]))
    f = p.frame
    end = pd.to_datetime(df["week"]).max()  # every series runs to the table's last week
    for (store, sku), part in df.groupby(["store", "sku"]):
        t = pd.to_datetime(part["week"])
        full = pd.date_range(t.min(), end, freq="W-MON")
        ref = part.assign(week=t).set_index("week")["units"].reindex(full)
        mine = f[f["unique_id"] == f"{store}/{sku}"].set_index("ds")
        absent = ~full.isin(t)
        got = mine["y"].to_numpy()
        if gaps == "zero":
            np.testing.assert_array_equal(got[absent], 0.0)
        else:
            assert np.isnan(got[absent]).all()
        np.testing.assert_array_equal(got[~absent], ref.to_numpy()[~absent])
        # observed: the rows with a value, and with gaps=zero the absent ones (real zeros)
        want_obs = ref.notna().to_numpy() | (absent if gaps == "zero" else False)
        np.testing.assert_array_equal(mine["observed"].to_numpy(), want_obs)
        assert mine["price"].notna().all(), "a known column is carried into absent periods"


@pytest.mark.parametrize(
    ("dates", "freq"),
    [
        (pd.date_range("2026-01-05", periods=20, freq="W-MON"), "W-MON"),
        (pd.date_range("1990-06-14", periods=20, freq="W-THU"), "W-THU"),
        (pd.date_range("2026-01-01", periods=40, freq="D"), "D"),
        (pd.date_range("2020-01-01", periods=30, freq="MS"), "MS"),
    ],
)
def test_the_frequency_is_inferred_even_with_gaps(dates: pd.DatetimeIndex, freq: str) -> None:
    keep = np.ones(len(dates), bool)
    keep[[3, 4, 11]] = False
    assert infer_freq(pd.Series(dates[keep])) == freq


@pytest.mark.parametrize("seed", SEEDS)
def test_the_demand_profile_equals_an_independent_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(8):
        p_sale = rng.uniform(0.1, 1.0)
        y = np.where(rng.random(40) < p_sale, rng.gamma(2, 5, 40).round(), 0.0)
        for t, v in enumerate(y):
            rows.append(("A", f"p{i}", pd.Timestamp("2026-01-05") + pd.Timedelta(weeks=t), v))
    df = pd.DataFrame(rows, columns=["store", "sku", "week", "units"])
    fc = _fc()
    prof = profile(check_and_fill(df, fc).frame, fc).set_index("unique_id")
    for (_, sku), part in df.groupby(["store", "sku"]):
        y = part["units"].to_numpy()
        nz = y[y > 0]
        adi = len(y) / len(nz) if len(nz) else math.inf
        cv2 = (np.std(nz) / np.mean(nz)) ** 2 if len(nz) > 1 else 0.0
        r = prof.loc[f"A/{sku}"]
        assert r["adi"] == pytest.approx(adi) and r["cv2"] == pytest.approx(cv2)
        want = (
            ("lumpy" if cv2 >= 0.49 else "intermittent")
            if adi >= 1.32
            else ("erratic" if cv2 >= 0.49 else "smooth")
        )
        assert r["kind"] == want


# ---- the backtest ------------------------------------------------------------------------


def _panel(rng: np.random.Generator, n: int, t: int, season: int = 1) -> pd.DataFrame:
    rows = []
    start = pd.Timestamp("2025-01-06")
    for i in range(n):
        level = rng.uniform(10, 200)
        x = rng.uniform(0.5, 1.5, t)  # a known price
        y = np.maximum(
            0,
            level * (1 + 0.3 * np.sin(2 * np.pi * np.arange(t) / max(season, 2)))
            - 8 * x
            + rng.normal(0, level * 0.1, t),
        )
        for k in range(t):
            rows.append((f"s{i}", "a", start + pd.Timedelta(weeks=k), y[k], x[k]))
    return pd.DataFrame(rows, columns=["store", "sku", "week", "units", "price"])


@pytest.mark.parametrize("seed", [0, 1])
def test_each_window_sees_only_its_past_as_statsforecast_called_directly(seed: int) -> None:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    rng = np.random.default_rng(seed)
    fc = _fc(
        families=["naive", "auto_ets"],
        known=["price"],
        horizon=3,
        backtest={"windows": 3, "step": 2},
    )
    panel = check_and_fill(_panel(rng, 5, 40), fc).frame
    bt = backtest_batch(panel, fc.model_dump(mode="json"))
    for uid, s in panel.groupby("unique_id"):
        s = s.reset_index(drop=True)
        for k in range(3):
            end = len(s) - 3 - 2 * (2 - k)  # the window's origin, counted independently
            hist = s.iloc[:end]
            got = bt[(bt["unique_id"] == uid) & (bt["window"] == k)].sort_values("step")
            assert list(got["ds"]) == list(s["ds"].iloc[end : end + 3])
            np.testing.assert_allclose(got["naive"], hist["y"].iloc[-1])
            ref = StatsForecast(models=[AutoETS(season_length=1)], freq="W-MON").forecast(
                df=hist[["unique_id", "ds", "y"]], h=3
            )
            np.testing.assert_allclose(got["auto_ets"], np.maximum(ref["AutoETS"], 0), rtol=1e-6)
            # naive+x: least squares on the past only, plus the last residual
            xm = np.column_stack([np.ones(end), hist["price"]])
            beta = np.linalg.lstsq(xm, hist["y"], rcond=None)[0]
            last_res = hist["y"].iloc[-1] - xm[-1] @ beta
            fut = np.column_stack([np.ones(3), s["price"].iloc[end : end + 3]]) @ beta
            np.testing.assert_allclose(got["naive+x"], np.maximum(fut + last_res, 0), rtol=1e-5)
            # MASE's scale: the mean absolute difference before the first window
            first = len(s) - 3 - 2 * 2
            scale = np.abs(np.diff(s["y"].iloc[:first])).mean()
            assert got["scale"].iloc[0] == pytest.approx(scale)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_conformal_quantile_is_the_finite_sample_order_statistic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    e = rng.exponential(size=int(rng.integers(5, 400)))
    for level in (0.8, 0.95):
        k = math.ceil((len(e) + 1) * level)
        q = conformal_quantile(e, level)
        if k > len(e):
            assert q == math.inf
        else:
            assert q == np.sort(e)[k - 1] and np.mean(e <= q) >= level


def test_the_choice_follows_each_series_when_the_evidence_is_clear() -> None:
    """Half the series are seasonal (seasonal naive is right), half random walks (naive is
    right): the per-series choice finds each, and the margin chosen by cross-validation
    lets them leave the common choice."""
    rng = np.random.default_rng(5)
    rows = []
    start = pd.Timestamp("2025-01-06")
    for i in range(40):
        t = np.arange(80)
        if i % 2:
            y = 100 + 60 * np.sin(2 * np.pi * t / 4) + rng.normal(0, 2, t.size)
        else:
            y = 100 + np.cumsum(rng.normal(0, 8, t.size))
        rows += [
            ("s", f"p{i}", start + pd.Timedelta(weeks=int(k)), max(v, 0))
            for k, v in zip(t, y, strict=True)
        ]
    df = pd.DataFrame(rows, columns=["store", "sku", "week", "units"])
    fc = _fc(families=["naive", "seasonal_naive"], season_length=4, backtest={"windows": 4})
    panel = check_and_fill(df, fc)
    bt = run_backtest(
        panel.frame, fc, list(panel.profile["unique_id"]), use_ray=False, log=lambda m: None
    )
    ch = bt.final.chosen
    seasonal = [f"s/p{i}" for i in range(1, 40, 2)]
    walks = [f"s/p{i}" for i in range(0, 40, 2)]
    assert (ch[seasonal] == "seasonal_naive").mean() >= 0.95
    assert (ch[walks] == "naive").mean() >= 0.8
    ev = bt.evaluation
    assert ev["mase"] < min(ev["mase_by_candidate"].values()), "the choice beats each family"


def _future_sim(seed: int, n: int, t: int, h: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random walks with drift and series-specific noise scales: history and the truth of
    the next h periods, drawn from the same process."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    start = pd.Timestamp("2025-01-06")
    for i in range(n):
        sd = rng.uniform(1, 20)
        y = 500 + np.cumsum(rng.normal(0.5, sd, t + h))
        for k in range(t + h):
            r = (f"s{i}", "x", start + pd.Timedelta(weeks=k), max(y[k], 0.0))
            (rows if k < t else truth).append(r)
    cols = ["store", "sku", "week", "units"]
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(truth, columns=cols)


def test_intervals_cover_simulated_futures_within_3_points_of_nominal() -> None:
    """The engine calibrates on its backtest, then forecasts a future it never saw, drawn
    from the same processes: over seeds, the 80% and 95% intervals hold the truth within
    3 points of nominal."""
    from engine.forecast.backtest import series_scale
    from engine.forecast.predictor import Forecaster

    fc = _fc(
        families=["naive", "seasonal_naive"], season_length=2, horizon=4, backtest={"windows": 5}
    )
    inside: dict[int, list[float]] = {80: [], 95: []}
    for seed in range(6):
        hist, truth = _future_sim(seed, 150, 60, 4)
        panel = check_and_fill(hist, fc)
        bt = run_backtest(
            panel.frame, fc, list(panel.profile["unique_id"]), use_ray=False, log=lambda m: None
        )
        lens = panel.frame.groupby("unique_id").size()
        scale = series_scale(panel.frame, lens, fc.season_length).to_dict()
        f = Forecaster(fc, bt.final.chosen.to_dict(), scale, bt.final.quantiles, "sim")
        out = f.forecast(panel.frame, None)
        t = truth.assign(
            unique_id=truth["store"] + "/" + truth["sku"], ds=pd.to_datetime(truth["week"])
        )
        m = out.merge(t[["unique_id", "ds", "units"]], on=["unique_id", "ds"])
        assert len(m) == 150 * 4
        for lv in inside:
            inside[lv].append(
                float(((m["units"] >= m[f"lo-{lv}"]) & (m["units"] <= m[f"hi-{lv}"])).mean())
            )
    print({lv: round(float(np.mean(xs)), 4) for lv, xs in inside.items()})
    for lv, xs in inside.items():
        assert abs(np.mean(xs) - lv / 100) <= 0.03, (lv, xs)


def test_the_sales_generator_keeps_its_truth_and_is_reused(tmp_path: Any) -> None:
    from engine.data.sales import against_truth, generate_sales

    t = generate_sales(tmp_path, stores=2, products=6, weeks=60, horizon=4)
    sales = pd.read_csv(tmp_path / "sales.csv")
    fut = pd.read_csv(tmp_path / "future.csv")
    assert (
        not t["reused"]
        and generate_sales(tmp_path, stores=2, products=6, weeks=60, horizon=4)["reused"]
    )
    assert len(fut) == 12 * 4 and sales.groupby(["store", "product"]).size().min() == 26
    assert set(t["new_products"]) == {"S0/P04", "S1/P04"} and t["structural_break"] == "S0/P00"
    # a forecast equal to the expected demand is 0 from it; the noise floor is the draw's
    perfect = pd.DataFrame(
        [
            {
                "unique_id": u,
                "step": k + 1,
                "forecast": v["expected"][k],
                "lo-80": 0.0,
                "hi-80": 1e9,
            }
            for u, v in t["future"].items()
            for k in range(4)
        ]
    )
    vs = against_truth(perfect, t, [80])
    draws = np.array([d for v in t["future"].values() for d in v["draw"]])
    exp = np.array([e for v in t["future"].values() for e in v["expected"]])
    assert vs["mae_vs_expected"] == 0 and vs["noise_floor_mae"] == pytest.approx(
        np.abs(draws - exp).mean()
    )
    assert vs["coverage"]["80"] == 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_smape_equals_its_definition(seed: int) -> None:
    from engine.forecast.backtest import smape

    rng = np.random.default_rng(seed)
    f = np.where(rng.random(50) < 0.2, 0.0, rng.gamma(2, 3, 50))
    y = np.where(rng.random(50) < 0.2, 0.0, rng.gamma(2, 3, 50))
    ref = [
        0.0 if a == b == 0 else 2 * abs(a - b) / (abs(a) + abs(b))
        for a, b in zip(f, y, strict=True)
    ]
    assert smape(f, y) == pytest.approx(np.mean(ref))
