"""Every entry point in jobs/ runs, the way a cluster runs it (`python jobs/X.py`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.process
JOBS = sorted(p.name for p in (ROOT / "jobs").glob("*.py") if not p.name.startswith("_"))


def _job(name: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "jobs" / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.parametrize("name", JOBS)
def test_every_job_has_help_and_smoke(name: str) -> None:
    r = _job(name, "--help", timeout=120)
    assert r.returncode == 0 and "--smoke" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("name", JOBS)
def test_a_bad_project_is_one_clear_line(name: str, tmp_path: Path) -> None:
    r = _job(name, "--smoke", "--project", str(tmp_path / "nope.yaml"), timeout=120)
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2 and "does not exist" in out and "Traceback" not in out, out


@pytest.mark.ray
@pytest.mark.spark
def test_train_job_smoke_registers_and_gates(
    tiny_ws: Workspace, tiny_snapshot: Any, tmp_path: Path
) -> None:
    ws = Workspace(tmp_path / ".insight").ensure()
    shutil.copytree(tiny_ws.features, ws.features, dirs_exist_ok=True)
    r = _job("train.py", "--smoke", "--gate", "--workspace", str(ws.root))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["model"] == "models:/retail-churn/1" and out["trials"] == 2
    assert out["errored"] == 0 and out["gate"] == {"passed": True, "promoted": True}

    # The champion just registered scores 1,000 snapshot rows with SHAP; nothing is left.
    r = _job("score.py", "--smoke", "--workspace", str(ws.root))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["model"] == "retail-churn" and out["version"] == "1" and out["rows"] == 1000
    assert not list(ws.root.glob("score-smoke-*")) and not (ws.audit / "batch").exists()


@pytest.mark.spark
def test_features_job_smoke_checks_a_sample_on_spark_and_writes_nothing(
    tiny_ws: Workspace, tiny_snapshot: Any
) -> None:
    def state() -> list[str]:
        return sorted(str(p) for d in (tiny_ws.features, tiny_ws.reports) for p in d.rglob("*"))

    before = state()
    r = _job("features.py", "--smoke", "--workspace", str(tiny_ws.root))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["snapshot_id"] == tiny_snapshot.id and out["sampled_rows"] == 1000
    assert out["written"] is False and out["leakage_checked"] and out["expectations_passed"]
    assert state() == before


def test_monitor_job_smoke_on_an_empty_log(tmp_path: Path) -> None:
    r = _job("monitor.py", "--smoke", "--workspace", str(tmp_path / "ws"), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["no_traffic"] is True and out["chain_ok"] is True and out["firing"] == []
