"""The whole loop, end to end, as a user runs it: real Spark, Ray Tune, MLflow, Serve, HTTP;
then the report it wrote and the live dashboard on its workspace, in headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.ray, pytest.mark.serve]
ROOT = Path(__file__).resolve().parent.parent


# Every process the demo starts (its Ray cluster, Spark's JVM, their workers) inherits this
# variable from the demo's environment: a process that carries it and is still alive after
# the demo exits is one the demo left behind. Other tests' Ray and Spark processes (the
# integration tier runs on two workers) do not carry it.
TAG = "INSIGHT_TEST_DEMO_TAG"


def _engine_pids(tag: str) -> set[int]:
    out = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if not any(
            k in cmd
            for k in ("raylet", "gcs_server", "org.apache.spark", "ray::", "default_worker.py")
        ):
            continue
        try:
            if p.environ().get(TAG) == tag:
                out.add(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


@dataclass
class DemoRun:
    ws: Path
    out: str
    returncode: int
    elapsed: float
    tag: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    tmp_path = tmp_path_factory.mktemp("demo")
    tag = uuid.uuid4().hex
    ws = tmp_path / ".insight"
    t0 = time.monotonic()
    r = subprocess.run(
        # The job entry point at its smoke size; `insight demo` runs the same stage
        # (tests/test_cli.py checks that wiring).
        [sys.executable, str(ROOT / "jobs" / "demo.py"), "--smoke", "--workspace", str(ws)],
        capture_output=True,
        text=True,
        timeout=840,  # about 4 minutes alone; the integration tier runs beside it
        check=False,
        cwd=tmp_path,
        env={**os.environ, TAG: tag},
    )
    return DemoRun(ws, r.stdout + r.stderr, r.returncode, time.monotonic() - t0, tag)


def test_demo_runs_end_to_end_and_leaves_no_process(demo: DemoRun) -> None:
    ws, out = demo.ws, demo.out
    assert demo.returncode == 0, out[-4000:]
    out = " ".join(out.split())  # rich wraps long lines when stdout is not a terminal
    assert "Traceback" not in out
    for piece in (
        "snapshot",
        "trials (0 errored,",
        "as @challenger: test AUC",
        "model card logged",
        "uplift: campaign ATE",
        "gate verdict: pass; v1 promoted to @champion",
        "churned (truth)",
        "single-row requests",
        "/explain first row: score",
        "segment(s), intact",
        "traffic like the training window",
        "later, drifted traffic",
        "-> firing",
        "PagerDuty event(s) (trigger insight|feature-variance-rise|v1",
        "labels arrived",
        "realized AUC",
        "retrain: v2",
        "retrain gate auc:",
        "forecast monitor, v1 on the 192 series-weeks that followed: realized MASE",
        "campaign: 4,000 customers e-mailed at random",
        "search (this process, 1 configuration)",
        "of the achievable",
        "Churn risk and uplift rank customers differently",
        "demo finished",
        "Open the report: file://",
    ):
        assert piece in out, piece
    assert "all injected features found, no stable feature flagged" in out
    assert "rolled back" in out or "promoted" in out or "failed the gate" in out, "the gate decided"
    # What the demo produced is on disk and real.
    assert (ws / "mlflow.db").is_file()
    reports = list((ws / "reports").glob("drift-*.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["columns"]
    # No Ray or Spark process survives the demo (give the OS a moment to reap).
    deadline = time.monotonic() + 20
    while (left := _engine_pids(demo.tag)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, [psutil.Process(p).cmdline()[:3] for p in left if psutil.pid_exists(p)]


# --- the report and the dashboard in a real browser (Debian's chromium + chromium-driver,
# installed by `make test`; a missing browser fails, it does not skip).

PANELS = (
    "kpi",
    "drift",
    "uplift",
    "fairness",
    "latency",
    "alerts",
    "models",
    "demand",
    "targeting",
)
# Series colours app.js draws with: a drawn chart has pixels of them on its canvas.
SERIES_RGB = [(31, 119, 180), (232, 113, 10), (42, 157, 92), (200, 55, 45), (142, 90, 200)]


def _browser() -> Any:
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "chromium and chromium-driver are needed: `make test` installs them"
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    # --disable-dev-shm-usage: containers often have a 64 MB /dev/shm, too small for Chromium.
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


# For each canvas of a panel: how many of its pixels have a series colour (a drawn line or
# band edge), not only axes and grid.
_PIXELS = """
const [panel, colours] = arguments;
return [...document.querySelectorAll(`section[data-panel="${panel}"] canvas`)].map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] < 200) continue;
    for (const [r, g, b] of colours) {
      if (Math.abs(d[i] - r) < 12 && Math.abs(d[i + 1] - g) < 12 && Math.abs(d[i + 2] - b) < 12) { n++; break; }
    }
  }
  return n;
});
"""


def _check_page(driver: Any, url: str, shot: Path) -> dict[str, Any]:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.body.getAttribute('data-drawn')") == "true"
    )
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    drawn: dict[str, Any] = driver.execute_script("return window.__insightPanels")
    for p in PANELS:
        assert driver.find_elements("css selector", f'section[data-panel="{p}"] .body > *'), p
        assert drawn.get(p, {}).get("points", 0) > 0, f"panel {p} drew nothing: {drawn.get(p)}"
        canvases = driver.execute_script(_PIXELS, p, SERIES_RGB)
        assert len(canvases) == drawn[p]["charts"], (p, canvases, drawn[p])
        assert all(n > 20 for n in canvases), f"an empty chart in panel {p}: {canvases}"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    return drawn


def test_the_report_opens_in_chromium_with_every_panel_drawn(demo: DemoRun, tmp_path: Path) -> None:
    assert demo.returncode == 0, demo.out[-3000:]
    report = demo.ws / "report" / "report.html"
    assert report.is_file() and report.stat().st_size < 2 * 1024 * 1024
    text = report.read_text()
    assert "<script src" not in text and "<link" not in text, "self-contained: nothing fetched"
    driver = _browser()
    try:
        drawn = _check_page(driver, report.as_uri(), tmp_path / "report.png")
        assert drawn["drift"]["charts"] == 2 and drawn["uplift"]["charts"] == 2
        demand = driver.find_element("css selector", 'section[data-panel="demand"] .body').text
        for words in (
            "Held-out backtest of v1",
            "Stock from the batch forecast of v1",
            "Live accuracy of v1",
            "inventory turnover",
        ):
            assert words in demand, (words, demand[:2000])
        target = driver.find_element("css selector", 'section[data-panel="targeting"] .body').text
        for words in (
            "email-campaign-uplift v1 (champion)",
            "held-out Qini AUC",
            "treat by churn score",
            "K-means segments",
            "Effect-tree segments",
            "BH-adjusted p",
        ):
            assert words in target, (words, target[:2000])
        # two Qini curves (one per offer arm) and the profit over the budget
        assert drawn["targeting"]["charts"] == 3
        # Every panel of a real run: no serious accessibility violation, fits a phone.
        from tests.test_report import axe_violations, phone_overflow

        assert axe_violations(driver) == []
        assert phone_overflow(driver) == []
        driver.set_window_size(1400, 1000)
        # The model timeline links to each version's card page, which opens cleanly.
        links = driver.find_elements("css selector", 'section[data-panel="models"] a')
        assert links, "model timeline without card links"
        links[0].click()
        assert "Model card:" in driver.title
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert driver.find_elements("css selector", 'section[data-panel="Fairness"] table')
        driver.save_screenshot(str(tmp_path / "card.png"))
    finally:
        driver.quit()


def test_the_live_dashboard_serves_the_same_page_in_chromium(demo: DemoRun, tmp_path: Path) -> None:
    import socket

    import httpx

    assert demo.returncode == 0, demo.out[-3000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "dashboard", "-w", str(demo.ws), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    driver = _browser()
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.communicate()[0][-3000:]
                time.sleep(0.5)
        _check_page(driver, url, tmp_path / "dashboard.png")
        assert httpx.post(url, timeout=5).status_code == 405
        # New monitor history shows on the next load (the page is rebuilt on change).
        hist = demo.ws / "monitor" / "history.jsonl"
        before = httpx.get(url + "data.json", timeout=30).json()["header"]["monitor_runs"]
        last = json.loads(hist.read_text().splitlines()[-1])
        last.update(run_id="later", **{"from": last["to"], "to": last["to"] + 300})
        with hist.open("a") as f:
            f.write(json.dumps(last) + "\n")
        time.sleep(1.2)
        after = httpx.get(url + "data.json", timeout=30).json()["header"]["monitor_runs"]
        assert after == before + 1
        _review_in_chromium(driver, url, demo.ws)
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(timeout=20)


def _review_in_chromium(driver: Any, url: str, ws: Path) -> None:
    """The reviewer's page of the same dashboard: the demo's served decisions queued, a
    reviewer's token opens /review; the page passes axe; a dispute typed into the form and
    submitted is recorded in the reviewer's name."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from engine.audit.verify import read_records
    from engine.config.governance import GovernanceConfig, ReviewConfig
    from engine.config.project import ProjectConfig
    from engine.governance.review import sample
    from engine.governance.roles import add_token
    from engine.workspace import Workspace
    from tests.test_report import axe_violations

    cfg = ProjectConfig.load(ROOT / "examples" / "retail" / "insight.yaml")
    cfg = cfg.model_copy(
        update={"workspace": str(ws),
                "governance": GovernanceConfig(review=ReviewConfig(random_rate=1.0))}
    )  # fmt: skip
    w = Workspace(ws)
    assert sample(cfg, w)["queued"] > 0
    token = add_token(ws, "ana", "reviewer")
    driver.get(f"{url}review?token={token}")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Review queue"
    assert "Reviewer: ana" in driver.find_element(By.TAG_NAME, "main").text
    assert axe_violations(driver) == []
    item = driver.find_element(By.NAME, "item").get_attribute("value")
    driver.find_element(By.CSS_SELECTOR, "input[value='dispute']").click()
    driver.find_element(By.ID, "reason").send_keys("the tenure looks wrong")
    driver.find_element(By.CSS_SELECTOR, "button[type='submit']").click()
    WebDriverWait(driver, 30).until(
        lambda d: "dispute recorded, by ana" in d.find_element(By.TAG_NAME, "main").text
    )
    [rec] = [r for r in read_records(ws / "audit" / "control", kind="review") if r["item"] == item]
    assert rec["reviewer"] == "ana" and rec["reason"] == "the tenure looks wrong"


def test_erasing_a_served_customer_reaches_every_copy_the_demo_made(demo: DemoRun) -> None:
    """Runs last (it changes the demo's workspace): the customer served most often is
    erased with the CLI; then no row of theirs is in any Parquet file (sources, snapshots,
    online table, labels, batch outputs), no served record reads back with them, their
    e-mail and keyed hash are in no file of the workspace (MLflow's database and artifacts
    included), their sealed records still verify, and the receipt lists the models."""
    import pandas as pd
    import pyarrow.parquet as pq

    from engine.audit.verify import read_records, verify
    from engine.pii import hmac_hex, load_key

    assert demo.returncode == 0, demo.out[-3000:]
    ws = demo.ws
    served = [i for r in read_records(ws / "audit" / "insight") for i in r.get("ids") or []]
    me = min(set(served), key=lambda i: (-served.count(i), i))
    cust = pd.read_parquet(ws / "data" / "retail" / "customers.parquet")
    email = str(cust.loc[cust["customer_id"].astype(str) == me, "email"].iloc[0])
    keyed = hmac_hex(load_key(ws), me)
    # their feature values that no other row has (and long enough to be told apart)
    import struct

    [snap] = [p for p in (ws / "features" / "retail").iterdir() if (p / "data").is_dir()]
    rows = pd.read_parquet(snap / "data")
    mine = rows["customer_id"].astype(str) == me
    values = {
        float(v)
        for c in rows.columns
        if rows[c].dtype.kind == "f"
        for v in rows.loc[mine, c]
        if len(repr(float(v))) > 9 and v not in set(rows.loc[~mine, c])
    }
    assert values, "the scan needs some of their values"
    find = [email.encode(), keyed.encode()]
    find += [repr(v).encode() for v in values] + [struct.pack("<d", v) for v in values]
    held = b"".join(p.read_bytes() for p in (snap / "data").glob("*.parquet"))
    assert any(struct.pack("<d", v) in held for v in values)  # the scan can find them
    raw = b"".join(p.read_bytes() for p in (ws / "audit" / "insight").iterdir())
    assert f'"{me}"'.encode() not in raw  # sealed as served: never in the log in the clear
    from engine.governance.roles import add_token

    admin = add_token(ws, "dpo", "admin")  # with named tokens, erasing needs an admin's
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", "erase", "--subject", me, "--reason",
         "GDPR art. 17 request", "--project", str(ROOT / "examples" / "retail" / "insight.yaml"),
         "--workspace", str(ws)],
        capture_output=True, text=True, check=False, timeout=300, cwd=ws.parent,
        env={**os.environ, "INSIGHT_TOKEN": admin},
    )  # fmt: skip
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 0, out[-3000:]
    assert "models trained on the subject: retail-churn v" in out
    for p in ws.rglob("*.parquet"):
        t = pq.read_table(p)
        for c in ("customer_id", "id", "subject"):
            if c in t.column_names:
                assert me not in {str(v) for v in t.column(c).to_pylist()}, (p, c)
    for p in ws.rglob("*"):  # every byte: sources, snapshots, MLflow's database and artifacts
        if p.is_file():
            data = p.read_bytes()
            assert not [b for b in find if b in data], p
    audit = ws / "audit"
    assert all(me not in (r.get("ids") or []) for r in read_records(audit / "insight"))
    assert verify(audit / "insight").ok and verify(audit / "control").ok
    [receipt] = list(read_records(audit / "control", kind="erasure"))
    assert {m["decision"] for m in receipt["models"]} == {"next_training"}
    assert receipt["actor"] == "dpo"  # the token's holder
    assert admin.encode() not in b"".join(
        p.read_bytes() for p in (audit / "control").iterdir() if p.is_file()
    )  # the token itself is never logged
    stores = {t["store"] for t in receipt["touched"]}
    assert {"source", "snapshot", "online table", "audit log"} <= stores
