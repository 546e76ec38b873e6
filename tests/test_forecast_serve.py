"""``POST /forecast`` through Ray Serve over real HTTP: forecasts with intervals, the model
version and snapshot, an audit record per answer whose chain verifies, the same numbers
as the forecaster called in process on the same history, and 422s that name the series
and week for a client's mistakes."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.serve


def _sales(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    start = pd.Timestamp("2025-01-06")
    for s in ("A", "B", "C", "D"):  # 12 series: 36 errors per step calibrate the 95% interval
        for k in range(3):
            base = rng.uniform(30, 90)
            for t in range(60):
                price = round(2.0 + 0.3 * rng.random(), 2)
                rows.append(
                    (
                        s,
                        f"p{k}",
                        start + pd.Timedelta(weeks=t),
                        rng.poisson(base * (3 - price)),
                        price,
                    )
                )
    return pd.DataFrame(rows, columns=["store", "sku", "week", "units", "price"])


@pytest.fixture(scope="module")
def forecast_url(tmp_path_factory: pytest.TempPathFactory, ray_local: Any) -> Any:
    import yaml

    from engine.config.forecast import ForecastProject
    from engine.stages.forecast import stage_forecast_train
    from engine.workspace import Workspace
    from serve.forecast_app import forecast_up

    d = tmp_path_factory.mktemp("fc")
    _sales(np.random.default_rng(0)).to_csv(d / "sales.csv", index=False)
    raw = {
        "name": "shop",
        "sources": {"sales": {"path": "sales.csv", "format": "csv"}},
        "forecast": {
            "source": "sales",
            "series": ["store", "sku"],
            "time": "week",
            "target": "units",
            "freq": "W-MON",
            "horizon": 6,
            "known": ["price"],
            "families": ["naive", "seasonal_naive"],
            "season_length": 4,
            "global_model": {"trials": 2},
        },
    }
    (d / "insight.yaml").write_text(yaml.safe_dump(raw))
    proj = ForecastProject.load(d / "insight.yaml")
    ws = Workspace(d / ".insight").ensure()
    stage_forecast_train(proj, ws, use_ray=False, log=lambda m: None)
    from ray import serve

    url = forecast_up(proj, ws)
    try:
        yield url, proj, ws
    finally:
        serve.shutdown()  # the next module's Serve starts on its own port


def _future(
    stores: list[str], skus: list[str], start: str, weeks: int, price: Any = 2.2
) -> list[dict[str, Any]]:
    t0 = pd.Timestamp(start)
    return [
        {
            "store": s,
            "sku": k,
            "week": (t0 + pd.Timedelta(weeks=i)).date().isoformat(),
            "price": price,
        }
        for s in stores
        for k in skus
        for i in range(weeks)
    ]


def test_forecast_answers_with_intervals_audits_and_equals_the_forecaster(
    forecast_url: Any,
) -> None:
    from engine.audit import read_records, verify
    from engine.stages.forecast import load_forecaster

    url, _, ws = forecast_url
    body = {
        "series": [{"store": "A", "sku": "p0"}, {"store": "B", "sku": "p2"}],
        "future": _future(["A", "B"], ["p0", "p2"], "2026-03-02", 6),
    }
    r = httpx.post(f"{url}/", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["version"] == "1" and out["snapshot_id"].startswith("fc-")
    assert [f["unique_id"] for f in out["forecasts"]] == ["A/p0", "B/p2"]
    pts = out["forecasts"][0]["points"]
    assert [p["step"] for p in pts] == [1, 2, 3, 4, 5, 6] and pts[0]["ds"] == "2026-03-02"
    for p in pts:
        assert 0 <= p["lo_95"] <= p["lo_80"] <= p["forecast"] <= p["hi_80"] <= p["hi_95"]
    # the same numbers as the registered forecaster on the same history, in process
    f, _ = load_forecaster(ws, "demand")
    panel = pd.read_parquet(ws.features / "shop" / f.snapshot_id / "data" / "panel.parquet")
    hist = panel[panel["unique_id"].isin(["A/p0", "B/p2"])]
    fut = pd.DataFrame(body["future"]).assign(
        unique_id=lambda d: d["store"] + "/" + d["sku"], ds=lambda d: pd.to_datetime(d["week"])
    )[["unique_id", "ds", "price"]]
    ref = f.forecast(hist, fut)
    np.testing.assert_allclose(
        [p["forecast"] for a in out["forecasts"] for p in a["points"]], ref["forecast"], rtol=1e-9
    )
    # an origin inside the history: forecasts from the weeks before it only
    r2 = httpx.post(
        f"{url}/",
        json={
            "series": [{"store": "A", "sku": "p1"}],
            "origin": "2026-01-05",
            "horizon": 3,
            "future": _future(["A"], ["p1"], "2026-01-05", 3),
        },
        timeout=60,
    )
    assert r2.status_code == 200, r2.text
    assert [p["ds"] for p in r2.json()["forecasts"][0]["points"]] == [
        "2026-01-05",
        "2026-01-12",
        "2026-01-19",
    ]
    recs = list(read_records(ws.audit / "forecast", kind="forecast"))
    assert {x["request_id"] for x in recs} >= {out["request_id"], r2.json()["request_id"]}
    assert verify(ws.audit / "forecast").ok
    lat = []
    one = {
        "series": [{"store": "A", "sku": "p0"}],
        "future": _future(["A"], ["p0"], "2026-03-02", 6),
    }
    with httpx.Client(timeout=30) as c:
        for _ in range(20):
            t0 = time.perf_counter()
            c.post(f"{url}/", json=one).raise_for_status()
            lat.append((time.perf_counter() - t0) * 1000)
    print(
        f"/forecast one series, 6 steps: p50 {np.median(lat):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms"
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"series": [{"store": "A", "sku": "zz"}]}, ["series A/zz has no history"]),
        ({"series": [{"store": "A"}]}, ["lacks key(s) ['sku']"]),
        (
            {"series": [{"store": "A", "sku": "p0"}], "horizon": 9},
            ["horizon 9 is longer than the 6"],
        ),
        ({"series": [{"store": "A", "sku": "p0"}], "origin": "2026-03-04"}, ["not a W-MON period"]),
        (
            {
                "series": [{"store": "A", "sku": "p0"}],
                "future": _future(["A"], ["p0"], "2026-03-02", 6)[1:],
            },
            ["series A/p0 has no future value of ['price'] for the period 2026-03-02"],
        ),
        (
            {
                "series": [{"store": "A", "sku": "p0"}],
                "future": _future(["A"], ["p0"], "2026-03-02", 6, "cheap"),
            },
            ["future 'price' of series A/p0", "'cheap'"],
        ),
    ],
)
def test_client_mistakes_are_422s_naming_the_series_and_period(
    forecast_url: Any, body: dict[str, Any], words: list[str]
) -> None:
    url, _, _ = forecast_url
    r = httpx.post(f"{url}/", json=body, timeout=60)
    assert r.status_code == 422, (r.status_code, r.text)
    for w in words:
        assert w in r.text, r.text


def test_global_model_forecasts_are_served_with_their_shap_values(forecast_url: Any) -> None:
    """The fixture's sales move with price; the global LightGBM model (Spark features,
    Tune search) forecasts the series it won, and ``explain`` gives each of its points
    the SHAP values that add up to it."""
    url, _, _ = forecast_url
    stores, skus = ["A", "B", "C", "D"], ["p0", "p1", "p2"]
    body = {
        "series": [{"store": s, "sku": k} for s in stores for k in skus],
        "future": _future(stores, skus, "2026-03-02", 6),
        "explain": True,
    }
    r = httpx.post(f"{url}/", json=body, timeout=120)
    assert r.status_code == 200, r.text
    out = r.json()["forecasts"]
    glob = [a for a in out if a["model"] == "global"]
    print(f"/forecast explain: {len(glob)} of {len(out)} series forecast by the global model")
    assert glob, [a["model"] for a in out]
    for a in out:
        for p in a["points"]:
            assert ("shap" in p) == (a["model"] == "global")
    for a in glob:
        for p in a["points"]:
            sh = p["shap"]
            raw = sh["base"] + sum(sh["contributions"].values())
            assert p["forecast"] == pytest.approx(max(raw, 0.0), rel=1e-6, abs=1e-6)
            assert "price" in sh["contributions"] and "lag1" in sh["contributions"]
    # without explain: the same forecasts, no SHAP
    r2 = httpx.post(f"{url}/", json={**body, "explain": False}, timeout=120)
    plain = r2.json()["forecasts"]
    assert all("shap" not in p for a in plain for p in a["points"])
    assert [p["forecast"] for a in plain for p in a["points"]] == [
        p["forecast"] for a in out for p in a["points"]
    ]


def test_served_forecasts_are_scored_by_the_monitor_once_actuals_are_known(
    forecast_url: Any,
) -> None:
    """A forecast from an origin inside the history has its actuals already: the monitor
    finds it in the audit log and scores exactly those points, as computed here from the
    answer and the table; forecasts of weeks not yet sold count as issued, not scored."""
    from engine.forecast.monitor import issued
    from engine.stages.forecast import load_forecaster
    from engine.stages.monitor import stage_forecast_monitor

    url, proj, ws = forecast_url
    t0 = time.time()
    body = {
        "series": [{"store": "C", "sku": "p1"}, {"store": "D", "sku": "p2"}],
        "origin": "2026-01-12",
        "horizon": 4,
        "future": _future(["C", "D"], ["p1", "p2"], "2026-01-12", 4),
    }
    r = httpx.post(f"{url}/", json=body, timeout=60)
    assert r.status_code == 200, r.text
    got = issued(ws, t0, time.time() + 1, proj.forecast.levels)
    assert got.requests == 1 and got.problems == [] and len(got.frame) == 8
    run = stage_forecast_monitor(proj, ws, t0, time.time() + 1, send=False, log=lambda m: None)
    q = run.result.models["1"].forecast["all"]
    assert q.points == 8 and q.issued_points == 8 and q.series == 2
    table = pd.read_csv(proj.resolve_path("sales.csv", ws.root), parse_dates=["week"])
    table["unique_id"] = table["store"] + "/" + table["sku"]
    f, _ = load_forecaster(ws, "demand")
    errs, inside = [], []
    for a in r.json()["forecasts"]:
        for p in a["points"]:
            y = float(
                table.loc[
                    (table["unique_id"] == a["unique_id"]) & (table["week"] == p["ds"]), "units"
                ].iloc[0]
            )
            errs.append((a["unique_id"], abs(y - p["forecast"]) / f.scale[a["unique_id"]]))
            inside.append(p["lo_80"] <= y <= p["hi_80"])
    e = pd.DataFrame(errs, columns=["u", "e"]).groupby("u")["e"].mean().mean()
    assert q.mase.estimate == pytest.approx(float(e), rel=1e-9)
    assert q.coverage_80 is not None and q.coverage_80.estimate == pytest.approx(np.mean(inside))
