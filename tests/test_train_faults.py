"""A search survives failures: a SIGKILLed trial worker is retried from its checkpoint, and
an interrupted `insight train` resumes with `--resume`. Real Ray, real MLflow, real kills."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient

from engine.config.project import ProjectConfig
from engine.workspace import Workspace
from tests.faults import RecordPid, SlowRounds, ship_by_value

pytestmark = [pytest.mark.ray, pytest.mark.spark]

ROOT = Path(__file__).resolve().parent.parent


def _fault_cfg(cfg: ProjectConfig, ws: Workspace) -> ProjectConfig:
    """Three XGBoost trials of 40 rounds, no early stopping: every trial runs to the end."""
    return cfg.model_copy(
        update={
            "workspace": str(ws.root),
            "train": cfg.train.model_copy(
                update={
                    "num_samples": 3,
                    "num_boost_round": 40,
                    "checkpoint_every": 5,
                    "scheduler": "fifo",
                    "families": {"xgboost": cfg.train.families["xgboost"]},
                    "uplift_learners": [],
                    "max_failures": 2,
                }
            ),
        }
    )


def _kill_first_worker(
    pid_dir: Path, tune_dir: Path, checkpoints: int, killed: dict[str, Any]
) -> None:
    """Wait (bounded) for a trial worker to write its pid and for that trial to have
    written ``checkpoints`` checkpoints, then SIGKILL it. A condition, not a sleep: under
    load a trial reaches its rounds later, and a fixed sleep killed it before its second
    checkpoint (seen with the integration tier on two workers)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        files = sorted(pid_dir.glob("*.pid"))
        if files:
            f = files[0]
            trial = f.read_text().strip()
            if len(list(tune_dir.glob(f"*/*{trial}*/checkpoint_*"))) >= checkpoints:
                killed["trial_id"] = trial
                killed["pid"] = int(f.stem)
                os.kill(killed["pid"], signal.SIGKILL)  # a Ray worker of this test's cluster
                return
        time.sleep(0.05)


def test_killed_trial_worker_is_retried_from_its_checkpoint(
    example_cfg: ProjectConfig,
    tiny_ws: Workspace,
    tiny_snapshot: Any,
    ray_local: Workspace,
    tmp_path: Path,
) -> None:
    from engine.stages.train import stage_train

    ws = Workspace(tmp_path / ".insight").ensure()
    shutil.copytree(tiny_ws.features, ws.features, dirs_exist_ok=True)
    cfg = _fault_cfg(example_cfg, ws)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    killed: dict[str, Any] = {}
    # 0.1 s per round, a checkpoint every 5: a trial lasts >= 4 s. Killed once three
    # checkpoints are on disk, the retry must start from a checkpoint (round 5 or later),
    # not from round 0. (Which of them: the latest the driver had registered; a checkpoint
    # is on disk a moment before the driver has processed its report.)
    t = threading.Thread(target=_kill_first_worker, args=(pid_dir, ws.tune, 3, killed), daemon=True)
    t.start()
    ship_by_value()
    r = stage_train(
        cfg,
        ws,
        tiny_snapshot.id,
        show_progress=False,
        hooks=[RecordPid(pid_dir), SlowRounds(0.1)],
    )
    t.join(timeout=5)
    assert "pid" in killed, "the test never found a trial worker to kill"
    assert r.trials == 3 and r.errored == 0, "all trials accounted for, none lost"

    client = MlflowClient(ws.tracking_uri)
    exp = client.get_experiment_by_name(cfg.name)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    children = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == r.parent_run_id]
    assert len(children) == 3, "a retried trial keeps its one MLflow run"
    victim = next(c for c in children if c.data.tags["trial_id"] == killed["trial_id"])
    assert victim.data.tags.get("restarted") == "true"
    assert victim.info.status == "FINISHED"
    resumed = client.get_metric_history(victim.info.run_id, "resumed_from_round")
    assert max(m.value for m in resumed) >= 5, "resumed from a checkpoint, not from round 0"
    for c in children:
        assert c.data.metrics["round"] == 40


def test_interrupted_search_resumes_with_cli(
    example_cfg: ProjectConfig, tiny_ws: Workspace, tiny_snapshot: Any, tmp_path: Path
) -> None:
    ws = Workspace(tmp_path / ".insight").ensure()
    shutil.copytree(tiny_ws.features, ws.features, dirs_exist_ok=True)
    cfg = _fault_cfg(example_cfg, ws)
    raw = yaml.safe_load((ROOT / "examples" / "retail" / "insight.yaml").read_text())
    raw["train"] = {
        k: v
        for k, v in cfg.train.model_dump(mode="json").items()
        if k not in ("gate", "until") or k == "until"
    }
    raw["train"]["until"] = str(example_cfg.train.until)
    raw["workspace"] = str(ws.root)
    raw["sources"] = {
        k: {**v, "path": v["path"].replace("{workspace}", str(tiny_ws.root))}
        for k, v in raw["sources"].items()
    }
    proj = tmp_path / "insight.yaml"
    proj.write_text(yaml.safe_dump(raw))
    env = dict(os.environ)
    # The real CLI with 0.1 s per boosting round hooked into its train stage (tests/faults.py).
    cmd = [sys.executable, "-m", "tests.faults", "0.1", "train", "-p", str(proj)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if any(ws.tune.glob("retail-*/*/checkpoint_*")):
                break
            time.sleep(0.1)
        if proc.poll() is not None:
            out, _ = proc.communicate(timeout=30)
            pytest.fail(f"the search ended before it could be interrupted:\n{out[-4000:]}")
        proc.send_signal(signal.SIGINT)  # Ctrl+C to the CLI process only
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == 130, out[-3000:]
    assert "insight train --resume" in out

    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "train", "-p", str(proj), "--resume"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 trials (0 errored" in done.stdout
    client = MlflowClient(ws.tracking_uri)
    exp = client.get_experiment_by_name(cfg.name)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [x for x in runs if "mlflow.parentRunId" not in x.data.tags]
    assert len(parents) == 1, "the resumed search continues the same parent run"
    children = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == 3 and all(c.data.metrics["round"] == 40 for c in children)
    assert parents[0].info.status == "FINISHED"
