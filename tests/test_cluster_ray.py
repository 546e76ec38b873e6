"""A real multi-node Ray cluster on 127.0.0.1 (tests/raynodes.py: a head and two worker
nodes, each its own `ray start --block` process, token authentication on): jobs submitted
with `insight submit` through the Ray Jobs API, Tune trials spread over the nodes, Serve
replicas on more than one node, and a worker node SIGKILLed mid-search.

The head has no CPUs for tasks and each worker one, so two trials at a time must run on
two different nodes. Every process the cluster starts is stopped by PID at the end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.config.project import DEFAULT_PROJECT as EXAMPLE_PROJECT
from engine.workspace import Workspace
from tests.pgmlflow import SharedMLflow, start_shared_mlflow
from tests.raynodes import RayNodes, start_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mlflow_server() -> Iterator[SharedMLflow]:
    db = start_shared_mlflow()
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture(scope="module")
def nodes(mlflow_server: SharedMLflow) -> Iterator[RayNodes]:
    # The nodes hold the MLflow credentials in their environment (a cluster's secret).
    c = start_cluster(workers=2, worker_cpus=1, head_cpus=0, extra_env=mlflow_server.env)
    try:
        yield c
    finally:
        left = c.stop()
        assert not left, f"processes left running: {left}"


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_ws: Workspace,
    tiny_snapshot: Any,
    nodes: RayNodes,
    mlflow_server: SharedMLflow,
) -> Path:
    """The example project with a `nodes` profile: the cluster's addresses and a storage
    folder every node sees (the workspace there holds the sample data and snapshot)."""
    storage = tmp_path_factory.mktemp("shared")
    ws = Workspace(storage / "retail").ensure()
    shutil.copytree(tiny_ws.features, ws.features, dirs_exist_ok=True)
    shutil.copytree(tiny_ws.data, ws.data, dirs_exist_ok=True)
    # The PII key the snapshot was built with: on a cluster it lives on the storage.
    shutil.copytree(tiny_ws.root / "secrets", ws.root / "secrets", dirs_exist_ok=True)
    raw = yaml.safe_load(Path(EXAMPLE_PROJECT).read_text())
    raw["cluster"] = {
        "profiles": {
            "nodes": {
                "ray": nodes.address,
                "jobs": nodes.jobs_url,
                "storage": str(storage),
                "mlflow": mlflow_server.url,
            }
        }
    }
    out = tmp_path_factory.mktemp("project") / "insight.yaml"  # outside the checkout
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def _env(nodes: RayNodes, token: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")
    env.update({k: v for k, v in nodes.env.items() if k.startswith("MLFLOW_TRACKING_")})
    if token:
        env["RAY_AUTH_TOKEN"] = nodes.token
    return env


def _insight(
    env: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            return dict(json.loads(line))
    raise AssertionError(f"no JSON summary line in:\n{text[-3000:]}")


def test_a_submitted_train_job_runs_trials_on_two_nodes_and_registers(
    nodes: RayNodes, project: Path, mlflow_server: SharedMLflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(nodes)
    r = _insight(env, "submit", "train", "-p", str(project), "--profile", "nodes", "--", "--smoke")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "SUCCEEDED" in r.stdout
    job_id = r.stdout.split("submitted ", 1)[1].split()[0]
    summary = _last_json(r.stdout)
    workers = {n["id"] for n in nodes.alive_nodes() if n["cpus"] > 0}
    assert summary["trials"] == 2 and summary["errored"] == 0
    assert len(set(summary["nodes"])) >= 2, summary["trial_nodes"]
    assert set(summary["nodes"]) <= workers, "trials ran on the worker nodes"
    # The model is in the registry on the shared storage, its trials tagged with nodes.
    # The registry is the MLflow server (PostgreSQL behind it); no credentials, no answer.
    import httpx
    from mlflow.tracking import MlflowClient

    search = f"{mlflow_server.url}/api/2.0/mlflow/registered-models/search"
    assert httpx.get(search, timeout=10).status_code == 401
    assert not (Path(project_storage(project)) / "retail" / "mlflow.db").exists()
    for k, v in mlflow_server.env.items():
        monkeypatch.setenv(k, v)
    client = MlflowClient(mlflow_server.url)
    version = summary["model"].rsplit("/", 1)[1]
    mv = client.get_model_version("retail-churn", version)
    assert "challenger" in mv.aliases
    runs = client.search_runs(
        [client.get_experiment_by_name("retail").experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'",
    )
    tagged = {r.data.tags.get("nodes") for r in runs if r.data.tags.get("nodes")}
    assert len(tagged) == 2 and {n for t in tagged for n in t.split(",")} == set(summary["nodes"])

    # The jobs commands see it; the entrypoint names no path of this machine.
    lst = _insight(env, "jobs", "list", "-p", str(project), "--profile", "nodes", "--json")
    assert lst.returncode == 0, lst.stderr
    row = next(j for j in json.loads(lst.stdout) if j["id"] == job_id)
    assert row["status"] == "SUCCEEDED" and row["job"] == "train"
    assert row["entrypoint"].startswith("python jobs/train.py --project .submit/insight.yaml")
    assert str(ROOT) not in row["entrypoint"] and sys.executable not in row["entrypoint"]
    logs = _insight(env, "jobs", "logs", job_id, "-p", str(project), "--profile", "nodes")
    assert logs.returncode == 0 and '"trial_nodes"' in logs.stdout


def project_storage(project: Path) -> str:
    raw = yaml.safe_load(project.read_text())
    return str(raw["cluster"]["profiles"]["nodes"]["storage"])


def test_token_auth_refuses_a_client_without_the_token(nodes: RayNodes, project: Path) -> None:
    r = _insight(_env(nodes, token=False), "jobs", "list", "-p", str(project), "--profile", "nodes")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "Traceback" not in out
    assert "token" in out.lower(), out[-2000:]


def test_a_job_can_be_stopped_and_unknown_jobs_are_clear(nodes: RayNodes, project: Path) -> None:
    env = _env(nodes)
    r = _insight(
        env,
        "submit",
        "monitor",
        "-p",
        str(project),
        "--profile",
        "nodes",
        "--no-wait",
        "--",
        "--every",
        "5m",
        "--no-retrain",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    job_id = r.stdout.split("submitted ", 1)[1].split()[0]
    deadline = time.monotonic() + 120
    status = ""
    while time.monotonic() < deadline:
        st = _insight(env, "jobs", "status", job_id, "-p", str(project), "--profile", "nodes")
        status = json.loads(st.stdout)["status"]
        if status == "RUNNING":
            break
        time.sleep(2)
    assert status == "RUNNING"
    stop = _insight(env, "jobs", "stop", job_id, "-p", str(project), "--profile", "nodes")
    assert stop.returncode == 0 and "stop requested" in stop.stdout
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and status != "STOPPED":
        st = _insight(env, "jobs", "status", job_id, "-p", str(project), "--profile", "nodes")
        status = json.loads(st.stdout)["status"]
        time.sleep(1)
    assert status == "STOPPED"
    missing = _insight(
        env, "jobs", "status", "no-such-job", "-p", str(project), "--profile", "nodes"
    )
    assert missing.returncode != 0 and "no job 'no-such-job'" in missing.stdout + missing.stderr


def test_submitted_features_and_bench_jobs_succeed_and_record_the_cluster(
    nodes: RayNodes, project: Path, tiny_snapshot: Any
) -> None:
    """`insight submit features` reuses the snapshot on the shared storage; `insight submit
    bench` runs benchmarks as a Ray job: one scores on the cluster, and its result records the
    profile, the 3 nodes and their 2 task CPUs; the forecast backtest's batches split over
    both worker nodes."""
    env = _env(nodes)
    f = _insight(env, "submit", "features", "-p", str(project), "--profile", "nodes")
    assert f.returncode == 0 and "SUCCEEDED" in f.stdout, f.stdout[-4000:] + f.stderr[-2000:]
    assert _last_json(f.stdout)["snapshot_id"] == tiny_snapshot.manifest["snapshot_id"]
    b = _insight(
        env,
        "submit",
        "bench",
        "-p",
        str(project),
        "--profile",
        "nodes",
        "--",
        "--smoke",
        "--only",
        "bench_score",
        "bench_forecast_scale",
    )
    assert b.returncode == 0 and "SUCCEEDED" in b.stdout, b.stdout[-4000:] + b.stderr[-2000:]
    out = Path(project_storage(project)) / "retail" / "benchmarks" / "nodes"
    doc = json.loads((out / "bench_score.smoke.json").read_text())
    m = doc["machine"]
    assert m["profile"] == "nodes" and m["nodes"] == 3 and m["cluster_cpus"] == 2, m
    assert m["git_sha"] and m["cpu_model"] and m["packages"]["ray"]
    (c,) = doc["cases"]
    assert "the Ray cluster (3 nodes, 2 CPUs)" in c["case"] and c["equal"] is True, c
    # the forecast backtest's batches ran on both worker nodes (the head has no task CPU)
    (fc,) = json.loads((out / "bench_forecast_scale.smoke.json").read_text())["cases"]
    assert fc["equal"] is True and fc["cluster_cpus"] == 2, fc
    assert len(fc["batches_per_node"]) == 2 and sum(fc["batches_per_node"].values()) == 3, fc


def _driver(nodes: RayNodes, *args: str, timeout: float = 600) -> subprocess.Popen[str]:
    env = {**_env(nodes), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.cluster_drivers", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_serve_places_replicas_on_more_than_one_node(nodes: RayNodes, project: Path) -> None:
    p = _driver(nodes, "serve", str(project), "nodes")
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-4000:]
    r = _last_json(out)
    assert r["status"] == 200 and r["predictions"] == 3
    assert r["replicas"] == 2 and len(r["replica_nodes"]) == 2, r
    assert r["url"].startswith("http://127.0.0.1:")


def test_a_worker_node_killed_mid_search_loses_no_trial(nodes: RayNodes, project: Path) -> None:
    """SIGKILL one worker node's processes while both trials run (one on each worker): its
    trial is retried on the surviving node from its last checkpoint; no trial errors."""
    storage = Path(project_storage(project)) / "retail" / "tune"
    before = set(storage.glob("*/trial-nodes.jsonl"))
    p = _driver(nodes, "search", str(project), "nodes", "0.25")
    try:
        deadline = time.monotonic() + 240
        seen: dict[str, str] = {}
        while time.monotonic() < deadline and len(set(seen.values())) < 2:
            assert p.poll() is None, p.communicate()[0][-4000:]
            for f in set(storage.glob("*/trial-nodes.jsonl")) - before:
                for line in f.read_text().splitlines():
                    rec = json.loads(line)
                    seen[rec["trial_id"]] = rec["node_id"]
            time.sleep(0.5)
        assert len(set(seen.values())) == 2, f"trials did not spread over two nodes: {seen}"
        time.sleep(4)  # a few checkpoints (every 5 rounds of 0.25 s)
        victim_trial, victim_node = sorted(seen.items())[0]
        node = nodes.node_of(victim_node)
        nodes.kill(node)  # SIGKILL of the node's whole process group
        out, _ = p.communicate(timeout=400)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out[-4000:]
    r = _last_json(out)
    assert r["trials"] == 2 and r["errored"] == 0, r
    assert r["trial_nodes"][victim_trial][0] == victim_node
    assert len(r["trial_nodes"][victim_trial]) == 2, "the killed trial ran again elsewhere"
    lines = [
        json.loads(x)
        for f in set(storage.glob("*/trial-nodes.jsonl")) - before
        for x in f.read_text().splitlines()
    ]
    again = [x for x in lines if x["trial_id"] == victim_trial][1:]
    assert again and all(x["from_checkpoint"] for x in again), "resumed from its checkpoint"
    nodes.add_worker()  # the next tests get two workers again
    nodes.wait_for(3)
