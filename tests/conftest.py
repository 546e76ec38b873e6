"""Shared fixtures: random seeds, one Spark session and one Ray cluster per test run."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config.project import ProjectConfig
from engine.data import RetailParams, generate_retail
from engine.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "retail" / "insight.yaml"

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# Statistical tests run for each of these seeds; INSIGHT_SEEDS=200 for a deeper sweep.
# A failure names the seed in the test id: rerun it with `-k "seed-17"`.
SEEDS = [int(s) for s in range(int(os.environ.get("INSIGHT_SEEDS", "25")))]


@pytest.fixture(params=SEEDS, ids=lambda s: f"seed-{s}")
def seed(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture(scope="session")
def example_cfg() -> ProjectConfig:
    return ProjectConfig.load(EXAMPLE)


@pytest.fixture(scope="session")
def tiny_ws(tmp_path_factory: pytest.TempPathFactory, example_cfg: ProjectConfig) -> Workspace:
    """A workspace with the tiny retail sample generated (shared, read-mostly)."""
    ws = Workspace(tmp_path_factory.mktemp("ws") / ".insight").ensure()
    generate_retail(RetailParams(customers=600), ws.data / "retail")
    return ws


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from engine.features.spark import get_spark

    s = get_spark("local[2]", shuffle_partitions=2, local_dir=tmp_path_factory.mktemp("spark"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def tiny_snapshot(example_cfg: ProjectConfig, tiny_ws: Workspace, spark: object) -> object:
    from engine.stages.features import stage_features

    snap, _ = stage_features(example_cfg, tiny_ws, spark)  # type: ignore[arg-type]
    return snap


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    from engine.raycluster import start_ray, stop_ray

    ws = Workspace(tmp_path_factory.mktemp("rayws") / ".insight").ensure()
    start_ray(ws, num_cpus=2, object_store_mb=256)
    yield ws
    stop_ray()
    shutil.rmtree(ws.ray_temp_dir(), ignore_errors=True)


def _in_use(paths: list[Path]) -> set[Path]:
    """Those of ``paths`` named on a running process's command line (a live Ray cluster's
    raylet, GCS and workers carry their session folder)."""
    used: set[Path] = set()
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmd.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        used.update(p for p in paths if str(p) in text)
    return used


@pytest.fixture(autouse=True, scope="session")
def _ray_session_folders_are_removed() -> Iterator[None]:
    """Ray leaves its session folder (logs, sockets) in the temp dir after a shutdown; a
    workspace's is /tmp/insray-<hash>. Remove the ones this session made that no running
    process uses (the other xdist worker's live cluster keeps its own)."""
    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("insray-*"))
    yield
    new = [p for p in tmp.glob("insray-*") if p not in before]
    if not Path("/proc").is_dir():
        return
    for p in set(new) - _in_use(new):
        shutil.rmtree(p, ignore_errors=True)


# MLflow's default store is `mlflow.db` in the working directory: a call that reaches MLflow
# without the workspace's tracking URI would write one into the repository. Fail the test
# that did it (a file written in the checkout is a defect, not clutter).
_STRAYS = ("mlflow.db", "mlruns")


@pytest.fixture(autouse=True, scope="session")
def _no_stray_mlflow_store_in_the_session() -> Iterator[None]:
    """The same check over the whole session: a module- or session-scoped fixture runs
    before the per-test check takes its 'before' (a forecast fixture once wrote ./mlruns
    that way unseen)."""
    before = {name for name in _STRAYS if (ROOT / name).exists()}
    yield
    made = [name for name in _STRAYS if name not in before and (ROOT / name).exists()]
    if made:
        pytest.fail(f"this session wrote {made} into the repository root ({ROOT})", pytrace=False)


@pytest.fixture(autouse=True)
def _no_stray_mlflow_store() -> Iterator[None]:
    before = {name for name in _STRAYS if (ROOT / name).exists()}
    yield
    made = [name for name in _STRAYS if name not in before and (ROOT / name).exists()]
    if made:
        pytest.fail(f"this test wrote {made} into the repository root ({ROOT})", pytrace=False)


# The integration tier runs on two xdist workers, a whole file per worker at a time
# (--dist loadfile), in collection order. Starting with the longest files evens the two
# workers' finishing times (longest-first scheduling); the order inside a file is kept.
_LONGEST_FIRST = (
    "test_demo_e2e.py",
    "test_user_tables_e2e.py",
    "test_benchmarks_smoke_a.py",
    "test_serve.py",
    "test_forecast_e2e.py",
    "test_benchmarks_smoke_b.py",
    "test_ingest_e2e.py",
    "test_train_ray.py",
    "test_jobs.py",
    "test_train_faults.py",
    "test_benchmarks_smoke_c.py",
    "test_forecast_serve.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda it: rank.get(it.path.name, len(rank)))
