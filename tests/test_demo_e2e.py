"""The whole loop, end to end, as a user runs it: real Spark, Ray Tune, MLflow, Serve, HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.ray, pytest.mark.serve]
ROOT = Path(__file__).resolve().parent.parent


def _engine_pids() -> set[int]:
    out = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(
            k in cmd
            for k in ("raylet", "gcs_server", "org.apache.spark", "ray::", "default_worker.py")
        ):
            out.add(p.pid)
    return out


def test_demo_runs_end_to_end_and_leaves_no_process(tmp_path: Path) -> None:
    before = _engine_pids()
    ws = tmp_path / ".insight"
    t0 = time.monotonic()
    r = subprocess.run(
        # The job entry point at its smoke size; `insight demo` runs the same stage
        # (tests/test_cli.py checks that wiring).
        [sys.executable, str(ROOT / "jobs" / "demo.py"), "--smoke", "--workspace", str(ws)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - t0
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
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
        "PagerDuty event(s) (trigger feature-variance-rise",
        "labels arrived",
        "realized AUC",
        "retrain: v2",
        "retrain gate auc:",
        "demo finished",
    ):
        assert piece in out, piece
    assert "all injected features found, no stable feature flagged" in out
    assert "rolled back" in out or "promoted" in out or "failed the gate" in out, "the gate decided"
    assert elapsed < 300, f"demo took {elapsed:.0f} s"
    # What the demo produced is on disk and real.
    assert (ws / "mlflow.db").is_file()
    reports = list((ws / "reports").glob("drift-*.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["columns"]
    # No Ray or Spark process survives the demo (give the OS a moment to reap).
    deadline = time.monotonic() + 20
    while (left := _engine_pids() - before) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, [psutil.Process(p).cmdline()[:3] for p in left if psutil.pid_exists(p)]
