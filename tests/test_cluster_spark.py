"""`features build` on a Spark standalone cluster (a master and two workers started with
spark-class on 127.0.0.1, tests/sparknodes.py) through a profile: the same snapshot, same
id and same content hash, as the local[2] build."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from engine.config import DEFAULT_PROJECT
from engine.workspace import Workspace
from tests.sparknodes import SparkNodes, start_spark

pytestmark = [pytest.mark.cluster, pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def standalone() -> Iterator[SparkNodes]:
    c = start_spark(workers=2, cores=1)
    try:
        yield c
    finally:
        c.stop()


def test_standalone_build_equals_the_local_build(
    standalone: SparkNodes,
    tiny_ws: Workspace,
    tiny_snapshot: Any,
    tmp_path: Path,
) -> None:
    storage = tmp_path / "shared"
    ws = Workspace(storage / "retail").ensure()
    shutil.copytree(tiny_ws.data, ws.data, dirs_exist_ok=True)
    # The same PII key (identifiers hash the same): on a cluster it lives on the storage.
    shutil.copytree(tiny_ws.root / "secrets", ws.root / "secrets", dirs_exist_ok=True)
    raw = yaml.safe_load(Path(DEFAULT_PROJECT).read_text())
    raw["cluster"] = {
        "profiles": {"standalone": {"spark": standalone.master_url, "storage": str(storage)}}
    }
    project = tmp_path / "insight.yaml"
    project.write_text(yaml.safe_dump(raw, sort_keys=False))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "features",
            "build",
            "-p",
            str(project),
            "--profile",
            "standalone",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    manifests = list((ws.features / "retail").glob("*/manifest.json"))
    assert len(manifests) == 1
    m = json.loads(manifests[0].read_text())
    local = tiny_snapshot.manifest
    assert m["snapshot_id"] == local["snapshot_id"]
    assert m["content_hash"] == local["content_hash"], "same rows, same values"
    assert m["rows"] == local["rows"]
    apps = httpx.get(f"{standalone.ui}/json/", timeout=5).json()
    done = [a for a in apps.get("completedapps", []) if a.get("name") == "insight-features"]
    assert done, "the build ran as an application of the standalone master"
