"""`features build` beyond local[2], through profiles: on a Spark standalone cluster (a master
and two workers started with spark-class on 127.0.0.1, tests/sparknodes.py) and through Spark
Connect (a token-authenticated server that is an application of that master). Each produces the
same snapshot (same id, same content hash) as the local[2] build; a worker killed mid-build
still ends in the same committed snapshot."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from engine.config.project import DEFAULT_PROJECT
from engine.workspace import Workspace
from tests.sparknodes import ConnectServer, SparkNodes, start_connect, start_spark

pytestmark = [pytest.mark.cluster, pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "engine.cli"]


@pytest.fixture(scope="module")
def standalone() -> Iterator[SparkNodes]:
    c = start_spark(workers=2, cores=1)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def connect(standalone: SparkNodes) -> Iterator[ConnectServer]:
    s = start_connect(standalone.master_url, token=os.urandom(16).hex())
    try:
        yield s
    finally:
        s.stop()  # frees the master's cores for the next test


def _project(tiny_ws: Workspace, tmp_path: Path, spark: str) -> tuple[Path, Workspace]:
    storage = tmp_path / "shared"
    ws = Workspace(storage / "retail").ensure()
    shutil.copytree(tiny_ws.data, ws.data, dirs_exist_ok=True)
    # The same PII key (identifiers hash the same): on a cluster it lives on the storage.
    shutil.copytree(tiny_ws.root / "secrets", ws.root / "secrets", dirs_exist_ok=True)
    raw = yaml.safe_load(Path(DEFAULT_PROJECT).read_text())
    raw["cluster"] = {"profiles": {"remote": {"spark": spark, "storage": str(storage)}}}
    project = tmp_path / "insight.yaml"
    project.write_text(yaml.safe_dump(raw, sort_keys=False))
    return project, ws


def _build(project: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "features", "build", "-p", str(project), "--profile", "remote"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _finish(p: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = p.communicate(timeout=600)
    return p.returncode, out


def _assert_same_snapshot(ws: Workspace, local: dict[str, Any]) -> None:
    manifests = list((ws.features / "retail").glob("*/manifest.json"))
    assert len(manifests) == 1
    m = json.loads(manifests[0].read_text())
    assert m["snapshot_id"] == local["snapshot_id"]
    assert m["content_hash"] == local["content_hash"], "same rows, same values"
    assert m["rows"] == local["rows"]


def _apps(standalone: SparkNodes) -> dict[str, Any]:
    d: dict[str, Any] = httpx.get(f"{standalone.ui}/json/", timeout=5).json()
    return d


def test_standalone_build_equals_the_local_build(
    standalone: SparkNodes, tiny_ws: Workspace, tiny_snapshot: Any, tmp_path: Path
) -> None:
    project, ws = _project(tiny_ws, tmp_path, standalone.master_url)
    rc, out = _finish(_build(project))
    assert rc == 0, out[-4000:]
    _assert_same_snapshot(ws, tiny_snapshot.manifest)
    done = [
        a for a in _apps(standalone).get("completedapps", []) if a["name"] == "insight-features"
    ]
    assert done, "the build ran as an application of the standalone master"


def test_spark_connect_build_equals_the_local_build(
    connect: ConnectServer,
    standalone: SparkNodes,
    tiny_ws: Workspace,
    tiny_snapshot: Any,
    tmp_path: Path,
) -> None:
    project, ws = _project(tiny_ws, tmp_path, connect.url)
    before = [a["name"] for a in _apps(standalone).get("completedapps", [])]
    assert connect.token not in project.read_text(), "the token stays in the environment"
    # A wrong token: a clear error naming the variable, no traceback, nothing written.
    rc, out = _finish(_build(project, {"SPARK_CONNECT_AUTHENTICATE_TOKEN": "wrong"}))
    assert rc == 2, out[-3000:]
    assert "SPARK_CONNECT_AUTHENTICATE_TOKEN" in out and "Traceback" not in out, out[-3000:]
    assert not list((ws.features / "retail").glob("*/manifest.json"))
    rc, out = _finish(_build(project, {"SPARK_CONNECT_AUTHENTICATE_TOKEN": connect.token}))
    assert rc == 0, out[-4000:]
    _assert_same_snapshot(ws, tiny_snapshot.manifest)
    active = [a["name"] for a in _apps(standalone).get("activeapps", [])]
    assert "insight-connect" in active, "the server ran the build on the standalone cluster"
    after = [a["name"] for a in _apps(standalone).get("completedapps", [])]
    assert "insight-features" not in active and after.count("insight-features") == before.count(
        "insight-features"
    ), "the client started no Spark application of its own"


def test_a_worker_killed_mid_build_still_commits_the_same_snapshot(
    standalone: SparkNodes, tiny_ws: Workspace, tiny_snapshot: Any, tmp_path: Path
) -> None:
    """SIGKILL one of the two workers while the build's application is running. Spark
    reschedules the lost executor's tasks on the other worker: the build must end in the same
    committed snapshot, or fail with nothing visible. (Runs last: it leaves one worker.)"""
    project, ws = _project(tiny_ws, tmp_path, standalone.master_url)
    p = _build(project)
    killed: list[float] = []

    def kill_when_running() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and p.poll() is None:
            apps = _apps(standalone).get("activeapps", [])
            if any(a["name"] == "insight-features" for a in apps):
                # Executors on both workers: wait until each worker runs one, then kill one.
                d = _apps(standalone)
                busy = [w for w in d.get("workers", []) if w.get("coresused", 0) > 0]
                if len(busy) == 2:
                    time.sleep(2.0)  # into the build's jobs, not its start
                    os.killpg(standalone.procs[-1].pid, signal.SIGKILL)
                    still = any(
                        a["name"] == "insight-features"
                        for a in _apps(standalone).get("activeapps", [])
                    )
                    killed.append(still and p.poll() is None)
                    return
            time.sleep(0.2)

    t = threading.Thread(target=kill_when_running, daemon=True)
    t.start()
    rc, out = _finish(p)
    t.join(timeout=10)
    assert killed == [True], "the worker was killed while the build's application ran"
    manifests = list((ws.features / "retail").glob("*/manifest.json"))
    if rc == 0:
        _assert_same_snapshot(ws, tiny_snapshot.manifest)
    else:  # a clean failure: a message, and no snapshot folder visible (only temp paths)
        assert "Traceback" not in out, out[-3000:]
        assert not manifests
        assert not [d for d in (ws.features / "retail").glob("*") if not d.name.startswith(".")]
    assert standalone.alive_workers() == 1
