"""The monitor under faults and bad input, through its real entry points: killed mid-run it
resumes without duplicate alerts; an empty window is a "no traffic" result; a malformed
labels file or a rule naming an unknown feature is a clear error with nothing written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from engine.audit import AuditWriter, audit_inputs, decision_record
from engine.monitor.receiver import http_receiver
from tests.conftest import EXAMPLE

pytestmark = pytest.mark.process
ROOT = Path(__file__).resolve().parent.parent


def _insight(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
        cwd=cwd,
    )


def _project(tmp: Path, rules: list[dict[str, object]]) -> Path:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["monitor"] = {
        "rules": rules,
        "sinks": {"hook": {"type": "webhook", "url_env": "T_HOOK", "backoff_s": 0.01}},
    }
    raw["sources"] = {
        k: {**v, "path": str(tmp / "nowhere.parquet")} for k, v in raw["sources"].items()
    }
    p = tmp / "insight.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_empty_window_bad_labels_and_unknown_rule_features(tmp_path: Path) -> None:
    proj = _project(tmp_path, [])
    ws = tmp_path / "ws"
    r = _insight("monitor", "-p", str(proj), "-w", str(ws), "--from", "-1h")
    assert r.returncode == 0 and "no traffic in this window" in r.stdout, r.stdout + r.stderr
    bad = tmp_path / "labels.csv"
    bad.write_text("customer_id,churned\n1,1\n2,maybe\n3,0\n")
    r = _insight("labels", "ingest", str(bad), "-p", str(proj), "-w", str(ws))
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2 and "3 distinct values" in out and "Traceback" not in out
    assert not (ws / "labels").exists() or not list((ws / "labels").iterdir()), "nothing partial"
    proj2 = _project(
        tmp_path,
        [
            {
                "name": "r",
                "statistic": "feature.psi",
                "op": ">",
                "threshold": 0.2,
                "features": ["amout"],
            }
        ],
    )
    r = _insight("monitor", "-p", str(proj2), "-w", str(ws))
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2 and "unknown feature(s) ['amout']" in out and "Fix" in out


def _big_log(root: Path, n: int) -> tuple[float, float]:
    """A served log of ``n`` one-row requests whose 'amount' doubles its variance, and a
    profile-free model: the monitor then needs a profile, so write one."""
    w = AuditWriter(root, writer="t", anchor_every=1000)
    lid = w.register_layout(["amount"], [], [])
    rng = np.random.default_rng(0)
    t0 = time.time() + 2
    lines = []
    for i in range(n):
        x = pd.DataFrame({"amount": [float(rng.normal(0, 2))]})
        rec = decision_record(
            route="predict",
            request_id=f"r{i}",
            model="m",
            versions=["1"],
            generation=1,
            ids=None,
            layout=lid,
            inputs=audit_inputs(x, "values", ["amount"], []),
            input_policy="values",
            scores=[0.2],
            threshold=0.5,
            latency_ms=1.0,
        )
        rec["time"] = t0 + i * 1e-4
        lines.append(rec)
        if len(lines) == 1000:
            w.append(lines)
            lines = []
    w.append(lines)
    w.close()
    return t0 - 1, t0 + n * 1e-4 + 1


def test_killed_monitor_resumes_without_duplicate_alerts(tmp_path: Path) -> None:
    """SIGKILL mid-run: after the monitor measured its window, before it saved anything
    (tests/faults.py stalls it exactly there); the next run judges the same window and
    pages exactly once; a third pages no one."""
    from engine.config.project import ProjectConfig
    from engine.monitor.profile import build_profile
    from engine.monitor.store import monitor_dir
    from engine.workspace import Workspace

    proj = _project(
        tmp_path,
        [
            {
                "name": "var",
                "statistic": "feature.variance_change",
                "op": ">",
                "threshold": 0.5,
                "sinks": ["hook"],
            }
        ],
    )
    cfg = ProjectConfig.load(proj)
    ws = Workspace(tmp_path / "ws").ensure()
    t_from, t_to = _big_log(ws.audit / "insight", 20_000)
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"amount": rng.normal(0, 1, 5000), "churned": np.zeros(5000)})
    prof = build_profile(
        rows=ref,
        scores=np.full(5000, 0.2),
        label="churned",
        features=["amount"],
        categorical=[],
        sensitive=[],
        threshold=0.5,
        psi_bins=10,
        test_labels=np.r_[0.0, 1.0],
        test_scores=np.r_[0.1, 0.9],
        uplift=None,
    )
    cache = monitor_dir(ws) / "profiles" / f"{cfg.train.model_name}-v1.json"
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps(prof))
    state = monitor_dir(ws) / "state.json"
    with http_receiver() as rx:
        env = {"T_HOOK": rx.url + "/hook"}
        args = [
            "monitor",
            "-p",
            str(proj),
            "-w",
            str(ws.root),
            "--from",
            str(t_from),
            "--to",
            str(t_to),
            "--no-retrain",
        ]
        args = [
            a
            if a not in (str(t_from), str(t_to))
            else pd.Timestamp(float(a), unit="s", tz="UTC").isoformat()
            for a in args
        ]
        marker = tmp_path / "measured"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults", "stall-monitor", str(marker), *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not marker.exists():
            time.sleep(0.05)
        assert marker.exists(), proc.communicate(timeout=30)[0]
        os.killpg(proc.pid, signal.SIGKILL)  # this test's own process group
        proc.wait(timeout=30)
        assert not state.exists() and rx.requests == [], "killed before it saved or sent anything"
        for _ in range(2):
            r = _insight(*args, env=env)
            assert r.returncode == 0, r.stdout + r.stderr
        pages = rx.delivered()
        assert len(pages) == 1 and pages[0]["json"]["dedup_key"] == "insight|var|v1", pages


def test_the_monitor_reads_the_workspaces_registry_from_any_directory(tmp_path: Path) -> None:
    """`insight monitor` run from another directory takes each version's role from the
    workspace's registry, and writes no MLflow store where it runs (it once read, and
    created, ``mlflow.db`` in the working directory: every version was 'other')."""
    from mlflow import MlflowClient

    from engine.config.project import ProjectConfig
    from engine.workspace import Workspace

    proj = _project(tmp_path, [])
    name = ProjectConfig.load(proj).train.model_name
    ws = Workspace(tmp_path / "ws").ensure()
    # explicit URIs (registry too: it defaults to the process's, which earlier tests set)
    client = MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.tracking_uri)
    client.create_registered_model(name)
    v = client.create_model_version(
        name, source=str(tmp_path / "model"), tags={"features": '["amount"]'}
    )
    client.set_registered_model_alias(name, "champion", v.version)
    t_from, t_to = _big_log(ws.audit / "insight", 300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = _insight(
        "monitor",
        "-p",
        str(proj),
        "-w",
        str(ws.root),
        "--from",
        pd.Timestamp(t_from, unit="s", tz="UTC").isoformat(),
        "--to",
        pd.Timestamp(t_to + 1, unit="s", tz="UTC").isoformat(),
        "--no-retrain",
        cwd=elsewhere,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert not list(elsewhere.iterdir()), "nothing written where the monitor ran"
    run = json.loads(next((ws.root / "monitor" / "runs").glob("*.json")).read_text())
    assert run["models"]["1"]["role"] == "champion", run["models"]["1"].get("role")
