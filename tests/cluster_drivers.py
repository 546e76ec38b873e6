"""Drivers the multi-node tests run as their own processes on the cluster (the test process
has its own local Ray): ``serve`` deploys the app with two replicas and reports where they
run; ``search`` runs a search whose rounds are slowed (tests.faults.SlowRounds), so a test
can SIGKILL a worker node while trials run. Each prints one JSON line at the end.

    python -m tests.cluster_drivers serve PROJECT PROFILE
    python -m tests.cluster_drivers search PROJECT PROFILE SECONDS_PER_ROUND
"""

from __future__ import annotations

import json
import sys
from typing import Any


def serve_on_nodes(project: str, profile: str) -> dict[str, Any]:
    import httpx
    import ray
    from ray.util.state import list_actors

    from engine.project import open_project
    from engine.raycluster import start_ray
    from engine.registry.gate import run_gate
    from engine.registry.models import try_resolve
    from engine.tracking import setup_mlflow
    from serve.deploy import serve_down, serve_up

    cfg, ws, _ = open_project(project, None, profile)
    start_ray(ws)
    setup_mlflow(ws, cfg.name)
    name = cfg.train.model_name
    if try_resolve(name, "champion") is None and try_resolve(name, "challenger") is None:
        from engine.stages.train import stage_train

        small = {"num_samples": 2, "num_boost_round": 10, "uplift_learners": []}
        stage_train(
            cfg.model_copy(update={"train": cfg.train.model_copy(update=small)}),
            ws,
            show_progress=False,
        )
    if try_resolve(name, "champion") is None:
        run_gate(cfg, ws)  # no champion yet: the challenger is promoted
    auto = cfg.serve.autoscaling.model_copy(update={"min_replicas": 2, "max_replicas": 2})
    # 0.75 CPU a replica on 1-CPU workers: two replicas cannot share a node.
    ep = serve_up(cfg, ws, autoscaling=auto, num_cpus=0.75)
    try:
        from engine.features import snapshot as snap
        from engine.train.dataset import load_training_set

        ts = load_training_set(cfg, snap.find(ws, cfg.name))
        from serve.inputs import request_rows

        rows = request_rows(ts.x("test").head(3))
        r = httpx.post(f"{ep.url}/predict", json={"rows": rows}, timeout=60)
        replicas = [
            a
            for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
            if "ServeReplica" in (a.class_name or "")
        ]
        return {
            "status": r.status_code,
            "predictions": len(r.json().get("predictions", [])),
            "replica_nodes": sorted({a.node_id for a in replicas}),
            "replicas": len(replicas),
            "url": ep.url,
            "cluster_nodes": [n["NodeID"] for n in ray.nodes() if n["Alive"]],
        }
    finally:
        serve_down()


def search_on_nodes(project: str, profile: str, seconds: float) -> dict[str, Any]:
    from engine.project import open_project
    from engine.raycluster import start_ray
    from engine.stages.train import stage_train
    from tests.faults import SlowRounds, ship_by_value

    cfg, ws, _ = open_project(project, None, profile)
    cfg = cfg.model_copy(
        update={
            "train": cfg.train.model_copy(
                update={
                    "num_samples": 2,
                    "num_boost_round": 40,
                    "grace_rounds": 40,  # no early stop: both trials run their whole budget
                    "checkpoint_every": 5,
                    "report_every": 5,
                    "max_failures": 2,
                    "uplift_learners": [],
                    "families": {"xgboost": cfg.train.families["xgboost"]},
                }
            )
        }
    )
    start_ray(ws)
    ship_by_value()
    r = stage_train(cfg, ws, hooks=[SlowRounds(seconds)], show_progress=False)
    return {
        "trials": r.trials,
        "errored": r.errored,
        "trial_nodes": r.trial_nodes,
        "version": r.version,
        "experiment_path": r.experiment_path,
    }


def main(argv: list[str]) -> int:
    cmd, project, profile = argv[:3]
    if cmd == "serve":
        out = serve_on_nodes(project, profile)
    elif cmd == "search":
        out = search_on_nodes(project, profile, float(argv[3]))
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
