"""The train stage as a Ray job: search (or data-parallel training), MLflow tracking,
registration as @challenger with a model card, then the promotion gate.

Runs anywhere Ray runs:

    python jobs/train.py                       # a private local Ray cluster
    python jobs/train.py --address auto        # the cluster this machine belongs to
    ray job submit --address http://127.0.0.1:8265 \\
        --runtime-env-json '{"working_dir": ".", "excludes": [".venv", ".insight", ".git"]}' \\
        -- python jobs/train.py --project examples/retail/insight.yaml --gate

Inside ``ray job submit`` Ray sets ``RAY_ADDRESS``; the job then joins that cluster. Prints
one JSON summary line at the end (what was registered, metrics, gate verdict).

``--smoke``: a small search (2 trials of 10 rounds, no uplift learners) on the newest
snapshot, in seconds; the test suite runs it that way.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SMOKE = "2 trials of 10 rounds, no uplift"


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from engine.project import open_project
    from engine.raycluster import start_ray, stop_ray
    from engine.stages.train import stage_train
    from jobs._common import job_parser, run_job

    ap = job_parser(__doc__, SMOKE)
    ap.add_argument("--snapshot", default=None, help="snapshot id (default: newest)")
    ap.add_argument("--address", default=os.environ.get("RAY_ADDRESS"))
    ap.add_argument("--resume", action="store_true", help="resume an interrupted search")
    ap.add_argument("--gate", action="store_true", help="run the promotion gate afterwards")
    args = ap.parse_args(argv)

    def body() -> int:
        cfg, ws, _ = open_project(args.project, args.workspace, args.profile)
        if args.smoke:
            cfg = cfg.model_copy(
                update={
                    "train": cfg.train.model_copy(
                        update={
                            "num_samples": 2,
                            "num_boost_round": 10,
                            "grace_rounds": 5,
                            "uplift_learners": [],
                            "families": {
                                k: v for k, v in cfg.train.families.items() if k != "random_forest"
                            },
                        }
                    )
                }
            )
        start_ray(ws, address=args.address)
        try:
            r = stage_train(cfg, ws, args.snapshot, resume=args.resume)
        finally:
            stop_ray()
        out = {
            "model": f"models:/{r.model_name}/{r.version}",
            "alias": r.alias,
            "family": r.family,
            "trials": r.trials,
            "errored": r.errored,
            "valid_auc": r.best_metrics.get("valid_auc"),
            "test_auc": r.test_auc,
            "parent_run_id": r.parent_run_id,
            "trial_nodes": r.trial_nodes,
            "nodes": sorted({n for ns in r.trial_nodes.values() for n in ns}),
        }
        if args.gate:
            from engine.registry.gate import run_gate

            g = run_gate(cfg, ws)
            out["gate"] = {"passed": g.passed, "promoted": g.promoted}
        print(json.dumps(out))
        return 0

    return run_job(body)


if __name__ == "__main__":
    raise SystemExit(main())
