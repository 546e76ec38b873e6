"""Forecast monitoring (engine.forecast.monitor): realized MASE, bias and coverage of the
issued forecasts against independent computations (utilsforecast's MASE, pandas), their
intervals' coverage by simulation, the issued-forecast log (served and batch, tamper
checked), actuals ingestion, and the loop: a shifted world fires a rule on the shifted
group only, one notification reaches a webhook on 127.0.0.1, the retrain registers a new
version."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from engine.errors import DataError
from engine.forecast.monitor import quality

SEEDS = list(range(12))
LEVELS = [80, 95]


def _issued(rng: np.random.Generator, n_series: int, h: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Issued forecasts with actuals (rows) and each series' training history."""
    rows, hist = [], []
    for s in range(n_series):
        level = rng.uniform(5, 60)
        train = rng.poisson(level, size=30).astype(float)
        hist.append(pd.DataFrame({"unique_id": f"s{s}", "ds": np.arange(30), "y": train}))
        y = rng.poisson(level * rng.uniform(0.7, 1.3), size=h).astype(float)
        f = np.full(h, level) + rng.normal(0, 2, h)
        half80, half95 = rng.uniform(2, 12), rng.uniform(12, 25)
        rows.append(
            pd.DataFrame(
                {
                    "unique_id": f"s{s}",
                    "ds": np.arange(30, 30 + h),
                    "y": y,
                    "forecast": f,
                    "lo-80": f - half80,
                    "hi-80": f + half80,
                    "lo-95": f - half95,
                    "hi-95": f + half95,
                }
            )
        )
    return pd.concat(rows, ignore_index=True), pd.concat(hist, ignore_index=True)


@pytest.mark.parametrize("seed", SEEDS)
def test_realized_accuracy_equals_utilsforecast_and_pandas(seed: int) -> None:
    from utilsforecast.losses import mase as uf_mase

    rng = np.random.default_rng(seed)
    df, hist = _issued(rng, int(rng.integers(3, 30)), int(rng.integers(1, 9)))
    # MASE's scale as the engine trains it: the in-sample naive MAE (season 1 here)
    scale = hist.groupby("unique_id")["y"].apply(lambda y: np.abs(np.diff(y.to_numpy())).mean())
    q = quality(df.assign(scale=df["unique_id"].map(scale)), LEVELS, 0.05, issued_points=len(df))
    ref = uf_mase(df, ["forecast"], seasonality=1, train_df=hist)
    assert q.mase.estimate == pytest.approx(float(ref["forecast"].mean()), rel=1e-9)
    assert q.bias.estimate == pytest.approx(
        float((df["forecast"] - df["y"]).sum() / df["y"].abs().sum()), rel=1e-9
    )
    for lv in LEVELS:
        inside = df["y"].between(df[f"lo-{lv}"], df[f"hi-{lv}"])
        assert q.coverage[str(lv)].estimate == pytest.approx(float(inside.mean()))
    assert q.series == df["unique_id"].nunique() and q.points == len(df)
    for s in (q.mase, q.bias, q.coverage_80, q.coverage_95):
        assert s is not None and s.low is not None and s.high is not None
        assert s.low <= s.estimate <= s.high


def _coverage_sim(n_series: int, h: int, sims: int, seed: int) -> dict[str, float]:
    """Share of simulations whose 95% interval holds the population value, for MASE and
    80% coverage, with errors correlated within a series (a per-series scale and bias)."""
    rng = np.random.default_rng(seed)
    hit = {"mase": 0, "cov": 0}
    true_mase = np.sqrt(2 / np.pi) * 1.0  # E|N(b, s)| averaged: computed below by MC
    mc = rng.normal(rng.normal(0, 0.5, 200_000), rng.gamma(4, 0.25, 200_000))
    true_mase = float(np.abs(mc).mean())
    true_cov = float((np.abs(mc) <= 1.2).mean())
    for _ in range(sims):
        b = rng.normal(0, 0.5, n_series)
        s = rng.gamma(4, 0.25, n_series)
        e = rng.normal(b[:, None], s[:, None], (n_series, h))
        df = pd.DataFrame(
            {
                "unique_id": np.repeat(np.arange(n_series), h),
                "y": e.ravel(),
                "forecast": 0.0,
                "scale": 1.0,
                "lo-80": -1.2,
                "hi-80": 1.2,
                "lo-95": -2.0,
                "hi-95": 2.0,
            }
        )
        q = quality(
            df, LEVELS, 0.05, issued_points=len(df), n_boot=400, seed=int(rng.integers(1e9))
        )
        assert q.mase.low is not None and q.coverage_80 is not None
        hit["mase"] += q.mase.low <= true_mase <= q.mase.high  # type: ignore[operator]
        hit["cov"] += q.coverage_80.low <= true_cov <= q.coverage_80.high  # type: ignore[operator]
    return {k: v / sims for k, v in hit.items()}


@pytest.mark.stats
def test_the_intervals_cover_the_population_value_by_simulation() -> None:
    """Nominal 95%: a percentile bootstrap over 40 series covers within a few points; a
    bootstrap over points would not (the within-series correlation), which is why the
    engine resamples series."""
    runs = [_coverage_sim(40, 8, 300, seed=s) for s in (1, 2)]  # 600 simulated panels
    got = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
    assert 0.90 <= got["mase"] <= 0.99, got
    assert 0.90 <= got["cov"] <= 0.99, got


def test_few_series_fall_back_to_points_within_series_and_say_nothing_false() -> None:
    rng = np.random.default_rng(3)
    df, _ = _issued(rng, 2, 8)
    q = quality(df.assign(scale=1.0), LEVELS, 0.05, issued_points=20)
    assert q.series == 2 and q.points == 16
    assert q.actuals_share.estimate == pytest.approx(16 / 20)
    assert q.mase.low is not None and q.mase.low <= q.mase.estimate <= q.mase.high  # type: ignore[operator]
    from statsmodels.stats.proportion import proportion_confint

    inside = int(df["y"].between(df["lo-80"], df["hi-80"]).sum())
    lo, hi = proportion_confint(inside, 16, alpha=0.05, method="wilson")
    assert q.coverage_80 is not None  # few series: Wilson on the points, never [1, 1]
    assert (q.coverage_80.low, q.coverage_80.high) == pytest.approx((lo, hi), rel=1e-6)
    empty = quality(df.iloc[:0].assign(scale=1.0), LEVELS, 0.05, issued_points=5)
    assert empty.mase.estimate is None and empty.actuals_share.estimate == 0.0


def test_the_ratio_compares_the_same_series_backtest() -> None:
    rng = np.random.default_rng(5)
    df, _ = _issued(rng, 10, 4)
    ref = pd.Series({f"s{i}": 0.5 + i / 10 for i in range(20)})  # more series than issued
    q = quality(df.assign(scale=2.0), LEVELS, 0.05, issued_points=len(df), reference=ref)
    same = float(ref[[f"s{i}" for i in range(10)]].mean())
    assert q.reference_mase == pytest.approx(same)
    assert q.mase_ratio is not None and q.mase.estimate is not None
    assert q.mase_ratio.estimate == pytest.approx(q.mase.estimate / same)


# ---- the issued-forecast log and actuals -------------------------------------------------


def _project(d: Path, weeks: int, *, shift: dict[str, float] | None = None) -> Any:
    """A small shop panel (4 stores x 3 products, weekly): the first `weeks` weeks in
    sales.csv; with ``shift``, a store's later demand multiplied (a changed world)."""
    import yaml

    from engine.config.forecast import ForecastProject

    rng, rng_shift = np.random.default_rng(0), np.random.default_rng(1)
    rows = []
    start = pd.Timestamp("2025-01-06")
    for s in ("A", "B", "C", "D"):
        for k in range(3):
            base = rng.uniform(30, 90)
            noise = rng.poisson(base, size=52)  # the same draws whatever `weeks` is
            for t in range(weeks):
                m = (shift or {}).get(s, 1.0) if t >= 48 else 1.0
                units = rng_shift.poisson(base * m) if m != 1.0 else noise[t]
                rows.append((s, f"p{k}", start + pd.Timedelta(weeks=t), units))
    pd.DataFrame(rows, columns=["store", "sku", "week", "units"]).to_csv(
        d / "sales.csv", index=False
    )
    raw = {
        "name": "shop",
        "sources": {"sales": {"path": "sales.csv", "format": "csv"}},
        "forecast": {
            "source": "sales",
            "series": ["store", "sku"],
            "time": "week",
            "target": "units",
            "freq": "W-MON",
            "horizon": 4,
            "season_length": 4,
            "families": ["naive", "seasonal_naive"],
            "global_model": {"enabled": False},
        },
        "business": {"inventory": {"lead_time": 1, "service_level": 0.95}},
    }
    (d / "insight.yaml").write_text(yaml.safe_dump(raw))
    return ForecastProject.load(d / "insight.yaml")


def test_ingest_actuals_checks_the_whole_file_and_writes_nothing_on_a_problem(
    tmp_path: Path,
) -> None:
    from engine.forecast.actuals import actuals, actuals_dir, ingest_actuals
    from engine.workspace import Workspace

    proj = _project(tmp_path, 20)
    ws = Workspace(tmp_path / ".insight").ensure()
    good = pd.DataFrame(
        {
            "store": ["A", "B"],
            "sku": ["p0", "p1"],
            "week": ["2025-05-26", "2025-05-26"],
            "units": [41, 7],
        }
    )
    bad_cases = {
        "lacks column": good.drop(columns="units"),
        "not on the W-MON grid": good.assign(week=["2025-05-27", "2025-05-26"]),
        "negative": good.assign(units=[-1, 7]),
        "repeat a series and period": pd.concat([good, good.iloc[:1]]),
        "readable": good.assign(week=["someday", "2025-05-26"]),
    }
    for words, frame in bad_cases.items():
        p = tmp_path / "bad.csv"
        frame.to_csv(p, index=False)
        with pytest.raises(DataError, match=words):
            ingest_actuals(proj, ws, p)
        assert not actuals_dir(ws).exists() or not any(actuals_dir(ws).iterdir())
    p = tmp_path / "actuals.csv"
    good.to_csv(p, index=False)
    r = ingest_actuals(proj, ws, p)
    assert r.rows == 2 and not r.duplicate
    assert ingest_actuals(proj, ws, p).duplicate
    a = actuals(proj, ws)
    row = a[(a["unique_id"] == "A/p0") & (a["ds"] == pd.Timestamp("2025-05-26"))]
    assert row["y"].tolist() == [41.0]  # week 20 is after the table's 20 weeks: from the file


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A forecaster trained on 48 weeks; its batch forecast of weeks 49-52 issued."""
    from engine.stages.forecast import stage_forecast, stage_forecast_train
    from engine.workspace import Workspace

    d = tmp_path_factory.mktemp("fcmon")
    proj = _project(d, 48)
    ws = Workspace(d / ".insight").ensure()
    stage_forecast_train(proj, ws, use_ray=False, log=lambda m: None)
    r = stage_forecast(proj, ws, output=d / "out.parquet", use_ray=False, log=lambda m: None)
    return d, proj, ws, r


def test_batch_forecasts_are_kept_by_hash_and_a_changed_copy_is_named(trained: Any) -> None:
    import time

    from engine.audit import verify
    from engine.forecast.monitor import issued

    d, proj, ws, r = trained
    out = pd.read_parquet(d / "out.parquet")
    got = issued(ws, 0, time.time() + 1, proj.forecast.levels)
    assert got.batches == 1 and got.problems == [] and verify(ws.audit / "forecast").ok
    assert len(got.frame) == len(out) == 12 * 4
    pd.testing.assert_series_equal(
        got.frame.sort_values(["unique_id", "step"])["forecast"].reset_index(drop=True),
        out.sort_values(["unique_id", "step"])["forecast"].reset_index(drop=True),
    )
    kept = Path(r["issued"])
    original = kept.read_bytes()
    try:
        pd.read_parquet(kept).assign(forecast=0.0).to_parquet(kept, index=False)
        bad = issued(ws, 0, time.time() + 1, proj.forecast.levels)
        assert bad.frame.empty and any("does not match" in p for p in bad.problems)
    finally:
        kept.write_bytes(original)


class _Hook(BaseHTTPRequestHandler):
    got: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", 0))
        type(self).got.append(json.loads(self.rfile.read(n)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a: Any) -> None:
        pass


def test_a_shifted_store_fires_its_group_notifies_once_and_retrains(
    trained: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from engine.config.forecast import ForecastProject
    from engine.registry.models import try_resolve
    from engine.stages.monitor import stage_forecast_monitor
    from engine.stages.retrain import run_forecast_requested

    d, proj, ws, _ = trained
    # the world after the forecasts: store C sells 2.5 times as much; the others as before
    _project(d, 52, shift={"C": 2.5})
    srv = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv("FC_HOOK_URL", f"http://127.0.0.1:{srv.server_port}/")
    try:
        raw = yaml.safe_load((d / "insight.yaml").read_text())
        raw["monitor"] = {
            "sinks": {"hook": {"type": "webhook", "url_env": "FC_HOOK_URL"}},
            "rules": [
                {
                    "name": "forecast-worse",
                    "statistic": "forecast.mase_ratio",
                    "op": ">",
                    "threshold": 1.5,
                    "min_rows": 8,
                    "sinks": ["hook"],
                    "action": "retrain",
                },
            ],
        }
        (d / "insight.yaml").write_text(yaml.safe_dump(raw))
        proj = ForecastProject.load(d / "insight.yaml")
        run = stage_forecast_monitor(proj, ws, log=lambda m: None)
        q = run.result.models["1"].forecast
        assert set(q) == {"all", "store=A", "store=B", "store=C", "store=D"}
        assert q["all"].points == 48 and q["all"].actuals_share.estimate == 1.0
        c = q["store=C"].mase_ratio
        assert c is not None and c.low is not None and c.low > 1.5, c
        for s in "ABD":  # the unchanged stores stay near their backtest
            r_ = q[f"store={s}"].mase_ratio
            assert r_ is not None and r_.low is not None and r_.low < 1.5, (s, r_)
        assert run.result.rules is not None
        assert run.result.rules.firing == ["forecast|forecast-worse|v1|store=C"]
        assert len(_Hook.got) == 1 and "store=C" in json.dumps(_Hook.got[0])
        assert [r["app"] for r in run.retrains] == ["forecast"]
        again = stage_forecast_monitor(proj, ws, log=lambda m: None)
        assert len(_Hook.got) == 1 and again.retrains == run.retrains  # no second page
        done = run_forecast_requested(proj, ws, use_ray=False, log=lambda m: None)
        assert [x["status"] for x in done] == ["done"] and done[0]["version"] == "2"
        assert run_forecast_requested(proj, ws, use_ray=False, log=lambda m: None) == []
        assert try_resolve("demand", done[0]["alias"]).version == "2"  # type: ignore[union-attr]
    finally:
        srv.shutdown()
    _report_shows_it(proj, ws, d, champion=try_resolve("demand", "champion").version)  # type: ignore[union-attr]


def _report_shows_it(proj: Any, ws: Any, d: Path, champion: str) -> None:
    """`insight report` on the forecasting project, seen in Chromium: the backtest of the
    champion, the stock of the batch run (v1), the live accuracy of v1 with store C
    flagged, each naming its version; no serious accessibility violation."""
    from engine.report import write_forecast_report
    from tests.test_demo_e2e import _browser
    from tests.test_report import axe_violations

    r = write_forecast_report(proj, ws, d / "report.html")
    b = _browser()
    try:
        b.get(r.path.as_uri())
        assert b.find_element("css selector", "body").get_attribute("data-drawn") == "true"
        assert not [e for e in b.get_log("browser") if e["level"] == "SEVERE"]
        text = b.find_element("css selector", 'section[data-panel="demand"] .body').text
        assert f"demand v{champion} (champion)" in text and "Held-out backtest" in text
        assert "Stock from the batch forecast of v1" in text and "safety stock" in text
        assert "Live accuracy of v1" in text and "store=C" in text
        assert "Firing: forecast|forecast-worse|v1|store=C" in text
        assert b.find_elements("css selector", 'section[data-panel="kpi"]') == []
        top = b.find_element("css selector", "header.top").text
        assert "forecast monitor runs 2" in top and "chain verified" in top, top
        alerts = b.find_element("css selector", 'section[data-panel="alerts"] .body').text
        assert "forecast|forecast-worse|v1|store=C" in alerts
        assert axe_violations(b) == []
        b.save_screenshot(str(d / "report.png"))
    finally:
        b.quit()
