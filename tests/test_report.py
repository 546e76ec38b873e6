"""The report and the dashboard without a browser: the numbers it plots against independent
references (pandas, scikit-learn), its size and content bounds (aggregates only, under 2 MB
whatever the history), escaping, the card page, and the dashboard's HTTP contract (read-only,
loopback, token when set). The browser checks run on the demo's real workspace
(tests/test_demo_e2e.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix

from engine.config.project import BusinessConfig, ProjectConfig
from engine.kernels.scores import confusion, lift_top
from engine.report.collect import roi, series, thin
from engine.workspace import Workspace

SEEDS = range(12)


@pytest.mark.parametrize("seed", SEEDS)
def test_lift_and_confusion_match_pandas_and_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 3000))
    s = rng.random(n)
    y = (rng.random(n) < 0.1 + 0.5 * s).astype(float)
    d = s >= rng.uniform(0.2, 0.8)
    df = pd.DataFrame({"y": y, "s": s})
    k = max(1, round(0.1 * n))
    want = df.nlargest(k, "s")["y"].mean() / df["y"].mean()
    assert lift_top(y, s) == pytest.approx(want, rel=1e-12)
    tn, fp, fn, tp = confusion_matrix(y.astype(int), d.astype(int), labels=[0, 1]).ravel()
    assert confusion(y, d) == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def test_lift_is_undefined_without_positives() -> None:
    assert lift_top(np.zeros(50), np.random.default_rng(0).random(50)) is None
    assert lift_top(np.zeros(0), np.zeros(0)) is None


def test_roi_is_the_business_value_formula() -> None:
    b = BusinessConfig(retained_value=120, contact_cost=2, save_rate=0.25)
    # 30 TP, 70 FP: 100 contacts cost 200; 30 x 0.25 x 120 = 900 kept; ROI (900-200)/200.
    assert roi(b, 30, 100) == pytest.approx(3.5)
    assert roi(b, 0, 0) is None
    # No business values given: no ROI, nothing assumed (the report once showed an ROI of
    # 7.47 computed from defaults nobody wrote); some but not all: a clear error.
    assert roi(BusinessConfig(), 30, 100) is None and not BusinessConfig().is_set
    with pytest.raises(ValueError, match="given without contact_cost, save_rate"):
        BusinessConfig(retained_value=120)


def _line(i: int, feats: int, *, t0: float = 1.8e9) -> dict[str, Any]:
    rng = np.random.default_rng(i)
    return {
        "run_id": f"r{i}",
        "from": t0 + 300 * i,
        "to": t0 + 300 * (i + 1),
        "requests": 50,
        "rows": 1000,
        "chain_ok": True,
        "models": {
            "1": {
                "role": "champion",
                "rows": 1000,
                "requests": 50,
                "decision_rate": 0.2,
                "score_mean": 0.25,
                "latency": {"p50_ms": 8.0, "p95_ms": 12.0, "p99_ms": 20.0},
                "psi": {f"num_{j}": float(rng.random()) for j in range(feats)},
                "js": {"plan": 0.01},
                "concept": {"label_rate": 0.22, "lift_top_decile": 2.5, "auc": 0.8},
                "confusion": {"tp": 30, "fp": 70, "fn": 10, "tn": 890},
                "fairness": {"gender": {"selection_rate_gap": [0.02, 0.0, 0.05]}},
                "ate": [0.04, 0.01, 0.07],
            }
        },
        "firing": [],
        "changes": [{"key": "drift|v1|num_0", "from": "inactive", "to": "pending", "at": 1.8e9}]
        if i == 3
        else [],
        "covered": [["seg-a", 50 * i, 50 * i + 49]],
    }


def test_series_follow_the_history_lines(example_cfg: ProjectConfig) -> None:
    hist = [_line(i, 3) for i in range(7)]
    hist[2]["models"]["1"]["psi"].pop("num_1")  # a feature missing in one run: a gap
    hist[4]["models"]["1"]["ate"] = 0.05  # a line from before intervals: the estimate only
    s = series(example_cfg, hist)
    assert s["t"] == [h["to"] for h in hist]
    assert s["drift"]["features"]["num_1"][2] is None
    assert len(s["drift"]["features"]["num_1"]) == 7
    assert s["drift"]["features"]["num_0"] == [h["models"]["1"]["psi"]["num_0"] for h in hist]
    assert s["drift"]["kind"]["plan"] == "js"
    assert s["ate"][4] == 0.05 and s["ate_low"][4] is None
    assert s["roi"][0] == pytest.approx(roi(example_cfg.business, 30, 100))
    assert s["fairness"]["gender"][0] == [0.02, 0.0, 0.05]


def test_thin_keeps_first_last_and_bounds_the_count() -> None:
    rows = [{"i": i} for i in range(10_001)]
    t = thin(rows, 500)
    assert len(t) == 500 and t[0]["i"] == 0 and t[-1]["i"] == 10_000
    assert [r["i"] for r in t] == sorted({r["i"] for r in t})
    assert thin(rows[:10], 500) == rows[:10]


@pytest.fixture(scope="module")
def big_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """20,000 monitor runs of 40 features, an audit log holding identifiers, no model yet."""
    from engine.audit import AuditWriter

    ws = Workspace(tmp_path_factory.mktemp("rep") / ".insight").ensure()
    mon = ws.root / "monitor"
    mon.mkdir(parents=True)
    with (mon / "history.jsonl").open("w") as f:
        for i in range(20_000):
            f.write(json.dumps(_line(i, 40)) + "\n")
        f.write('{"run_id": "half-writ')  # a killed run's partial last line
    w = AuditWriter(ws.audit / "insight", writer="t")
    w.append([{"kind": "decision", "entity": "cust-SECRET-42", "email": "a.b@example.com"}])
    w.close()
    return ws


def test_a_long_history_stays_under_2_mb_and_holds_no_identifier(
    example_cfg: ProjectConfig, big_ws: Workspace, tmp_path: Path
) -> None:
    from engine.report import MAX_BYTES, write_report

    r = write_report(example_cfg, big_ws, out=tmp_path / "r.html")
    text = r.path.read_text()
    assert r.bytes < MAX_BYTES, r.bytes
    assert r.header["monitor_runs"] == 20_000 and r.header["points"] == 500
    # the request count says when it was counted (the last monitor window's end here: the
    # history lines carry no ran_at), not as if it were live
    assert r.header["requests_as_of"] == r.header["to_iso"]
    assert "cust-SECRET-42" not in text and "example.com" not in text
    assert "<script src" not in text and "http://" not in text.split("<script>")[0]
    data = json.loads(
        text.split('id="report-data">', 1)[1].split("</script>", 1)[0].replace("\\u003c", "<")
    )
    assert data["versions"] == [] and len(data["series"]["t"]) == 500
    assert not list(tmp_path.glob(".*tmp*")), "no temp file left"


def test_a_value_cannot_close_the_data_script() -> None:
    from engine.report.page import _json_script

    text = _json_script({"k": "</script><script>alert(1)</script>"})
    assert "</script>" not in text and json.loads(text)["k"].startswith("</script>")


def _card(example_cfg: ProjectConfig) -> dict[str, Any]:
    return {
        "model": {"name": "m", "version": "3", "family": "xgboost"},
        "intended_use": "rank <b>customers</b>",
        "training_data": {
            "snapshot_id": "abc",
            "time_range": None,
            "split": {"how": "random"},
            "features": ["x<script>", "y"],
            "categorical": {},
        },
        "metrics": {
            "auc": {"estimate": 0.8, "low": 0.75, "high": 0.85},
            "logloss": 0.4,
            "brier": 0.1,
            "threshold": 0.5,
            "accuracy_at_threshold": 0.9,
            "selection_rate": 0.2,
            "rows": 100,
            "positive_rate": 0.2,
            "lift_top_decile": 3.1,
            "confusion": {"tp": 1, "fp": 2, "fn": 3, "tn": 4},
            "calibration": {
                "ece": 0.02,
                "bins": [{"bin": 0, "rows": 10, "mean_score": 0.1, "observed_rate": 0.12}],
            },
            "fairness": {
                "gender": {
                    "demographic_parity_difference": {"value": 0.01, "low": 0.0, "high": 0.05},
                    "equal_opportunity_difference": {"value": None, "undefined": "no positives"},
                    "equalized_odds_difference": {"value": 0.02, "low": 0.0, "high": 0.06},
                    "by_group": {"F": {"count": 50, "selection_rate": 0.2}},
                }
            },
        },
        "uplift": None,
        "shap_importance": {"x<script>": 0.3, "y": 0.1},
        "family_notes": [],
        "limitations": ["small test split"],
    }


def test_the_card_page_has_every_section_and_escapes(example_cfg: ProjectConfig) -> None:
    from engine.report.page import render_card

    page = render_card(_card(example_cfg))
    for title in (
        "Intended use",
        "Training data and lineage",
        "Metrics on the test split",
        "Calibration",
        "Fairness",
        "Global SHAP importance",
        "Known limitations",
    ):
        assert f"<h2>{title}" in page, title
    assert "<script" not in page and "x&lt;script&gt;" in page and "&lt;b&gt;" in page
    assert "0.8000 (0.7500 – 0.8500)" in page and "3.10x" in page and "1 / 2 / 3 / 4" in page
    assert "undefined (no positives)" in page


@pytest.fixture
def dashboard(example_cfg: ProjectConfig, big_ws: Workspace) -> Iterator[tuple[str, Any]]:
    from engine.report.server import dashboard_url, serve_dashboard

    started: list[Any] = []

    def start(token: str | None = None) -> str:
        srv = serve_dashboard(example_cfg, big_ws, port=0, token=token, log=lambda m: None)
        threading.Thread(
            target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        ).start()
        started.append(srv)
        return dashboard_url(srv)

    yield "", start
    for s in started:
        s.shutdown()
        s.server_close()


def test_the_dashboard_is_read_only_on_loopback(dashboard: tuple[str, Any]) -> None:
    url = dashboard[1]()
    assert url.startswith("http://127.0.0.1:")
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200 and 'data-panel="kpi"' in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert httpx.get(url + "data.json", timeout=10).json()["header"]["monitor_runs"] == 20_000
    assert httpx.post(url, timeout=10).status_code == 405
    assert httpx.delete(url + "data.json", timeout=10).status_code == 405
    missing = httpx.get(url + "nope", timeout=10)
    assert missing.status_code == 404 and "/report.html" in missing.text


def test_the_dashboard_token_when_set(dashboard: tuple[str, Any]) -> None:
    url = dashboard[1]("s3cret-token")
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    ok = httpx.get(url, headers={"Authorization": "Bearer s3cret-token"}, timeout=30)
    assert ok.status_code == 200
    first = httpx.get(url + "?token=s3cret-token", timeout=10)
    assert first.status_code == 200 and "insight_token=" in first.headers["set-cookie"]
    again = httpx.get(url, cookies={"insight_token": "s3cret-token"}, timeout=10)
    assert again.status_code == 200
    assert httpx.get(url + "healthz", timeout=10).status_code == 200
    # Regression: a token with non-ASCII characters raised in compare_digest and dropped the
    # connection; it is a wrong token like any other.
    for bad in ("?token=%C3%A9t%C3%A9", "?token=\u00e9t\u00e9"):
        assert httpx.get(url + bad, timeout=10).status_code == 401
    raw = httpx.get(url, headers={"Authorization": "Bearer caf\u00e9".encode()}, timeout=10)
    assert raw.status_code == 401


def test_the_dashboard_checks_the_host_header(dashboard: tuple[str, Any]) -> None:
    """A page asked for under another name (DNS rebinding to 127.0.0.1) is refused."""
    url = dashboard[1]()
    port = url.rsplit(":", 1)[1].strip("/")
    assert httpx.get(url, headers={"Host": f"localhost:{port}"}, timeout=10).status_code == 200
    evil = httpx.get(url, headers={"Host": f"attacker.example:{port}"}, timeout=10)
    assert evil.status_code == 403 and "Host" in evil.text


def test_a_mistyped_workspace_is_an_error_not_a_new_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import EXAMPLE
    from tests.test_init import _insight

    gone = tmp_path / ".insigth"
    code, text = _insight(capsys, "report", "-p", str(EXAMPLE), "-w", str(gone))
    assert code != 0 and "no such folder" in text and str(gone) in text
    assert not gone.exists(), "nothing created there"


def test_an_empty_workspace_gives_a_page_that_says_what_to_run(
    example_cfg: ProjectConfig, tmp_path: Path
) -> None:
    """No monitor run, no model: every panel says what is missing and which command makes
    it; Chromium shows it with no console error (the browser `make test` installs)."""
    from engine.report import write_report
    from tests.test_demo_e2e import _browser

    ws = Workspace(tmp_path / ".insight").ensure()
    r = write_report(example_cfg, ws)
    assert r.header["monitor_runs"] == 0 and r.header["versions_registered"] == []
    d = _browser()
    try:
        d.get(r.path.as_uri())
        body = d.find_element("css selector", "body")
        assert body.get_attribute("data-drawn") == "true"
        assert not [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
        for panel in ("drift", "uplift", "fairness", "latency", "alerts", "models", "demand"):
            text = d.find_element("css selector", f'section[data-panel="{panel}"] .body').text
            assert "insight" in text or "No " in text, (panel, text)
        top = d.find_element("css selector", "header.top").text
        assert "no monitor run yet" in top
        assert "requests not counted yet: `insight monitor` reads the audit log" in top
        d.save_screenshot(str(tmp_path / "empty.png"))
    finally:
        d.quit()


def test_without_business_values_the_roi_asks_for_them(
    example_cfg: ProjectConfig, tmp_path: Path
) -> None:
    """No default numbers: the ROI tile names the three values to set and shows no ratio."""
    from engine.config.project import BusinessConfig
    from engine.report import write_report
    from tests.test_demo_e2e import _browser

    cfg = example_cfg.model_copy(update={"business": BusinessConfig()})
    ws = Workspace(tmp_path / ".insight").ensure()
    r = write_report(cfg, ws)
    d = _browser()
    try:
        d.get(r.path.as_uri())
        tile = d.find_element("css selector", '.tile[data-kpi="ROI"]').text
        assert "not set" in tile and "retained_value, contact_cost and save_rate" in tile
        assert "×" not in tile
    finally:
        d.quit()


AXE = Path(__file__).resolve().parent.parent / ".venv" / "axe" / "axe.min.js"


def axe_violations(d: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page open in ``d`` (the npm
    package `make test` fetches: .venv/axe/axe.min.js)."""
    assert AXE.is_file(), "axe-core is needed: `make test` (or `make axe`) fetches it"
    d.execute_script(AXE.read_text(encoding="utf-8"))
    found = d.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(function (r) {"
        "  done(r.violations.map(function (v) { return {id: v.id, impact: v.impact,"
        "    nodes: v.nodes.slice(0, 3).map(function (n) { return n.target.join(' '); })}; }));"
        "});"
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def phone_overflow(d: Any) -> list[str]:
    """Panels wider than a 390 px screen (none may be)."""
    d.set_window_size(390, 844)
    d.execute_script("window.dispatchEvent(new Event('resize'))")
    return d.execute_script(
        "var w = document.documentElement.clientWidth, out = [];"
        "document.querySelectorAll('section.panel, header.top').forEach(function (p) {"
        "  var r = p.getBoundingClientRect(); if (r.right > w + 1) out.push((p.dataset.panel || 'header') + ' ' + r.right);"
        "});"
        "if (document.documentElement.scrollWidth > w + 1) out.push('page ' + document.documentElement.scrollWidth);"
        "return out;"
    )


def test_the_report_is_accessible_and_fits_a_phone(
    example_cfg: ProjectConfig, big_ws: Workspace, tmp_path: Path
) -> None:
    """axe-core finds no serious violation (contrast, names, structure); every chart has a
    text alternative; at 390 px no panel is wider than the screen."""
    from engine.report import write_report
    from tests.test_demo_e2e import _browser

    r = write_report(example_cfg, big_ws, out=tmp_path / "r.html")
    d = _browser()
    try:
        d.get(r.path.as_uri())
        assert d.find_element("css selector", "body").get_attribute("data-drawn") == "true"
        assert axe_violations(d) == []
        charts = d.find_elements("css selector", "div.chart")
        assert charts and all(
            (c.get_attribute("role") == "img" and "latest" in (c.get_attribute("aria-label") or ""))
            for c in charts
        )
        assert phone_overflow(d) == []
        d.save_screenshot(str(tmp_path / "phone.png"))
    finally:
        d.quit()


def test_twenty_thousand_alert_events_stay_under_2_mb(
    example_cfg: ProjectConfig, tmp_path: Path
) -> None:
    """Regression: 20,000 alert transitions made a 2.9 MB page; the newest are listed and
    the rest counted per alert."""
    from engine.report import MAX_BYTES, write_report
    from engine.report.collect import MAX_EVENTS

    ws = Workspace(tmp_path / ".insight").ensure()
    mon = ws.root / "monitor"
    mon.mkdir(parents=True)
    with (mon / "history.jsonl").open("w") as f:
        for i in range(10_000):
            line = _line(i, 5)
            line["changes"] = [
                {"key": f"insight|drift|v1|num_{j}", "from": a, "to": b, "at": 1.8e9 + i}
                for j, (a, b) in enumerate((("inactive", "firing"), ("firing", "inactive")))
            ]
            f.write(json.dumps(line) + "\n")
    r = write_report(example_cfg, ws, out=tmp_path / "r.html")
    assert r.bytes < MAX_BYTES, r.bytes
    text = r.path.read_text()
    data = json.loads(
        text.split('id="report-data">', 1)[1].split("</script>", 1)[0].replace("\\u003c", "<")
    )
    a = data["alerts"]
    assert a["total_events"] == 20_000 and len(a["events"]) == MAX_EVENTS
    assert sum(a["older"].values()) == 20_000 - MAX_EVENTS
