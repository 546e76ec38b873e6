"""Batch scoring as a job: a registered model scores a snapshot or a table with Ray Data
across the cluster's CPUs, into Parquet (what ``insight score`` runs).

    python jobs/score.py --snapshot latest --output /mnt/insight/scores/2026-11
    insight submit score --profile lab -- --snapshot latest --output /mnt/insight/scores/x

Prints one JSON summary line at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SMOKE = "check the project and the model, score nothing"


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from engine.profiles import open_project
    from engine.raycluster import start_ray, stop_ray
    from engine.stages.score import stage_score
    from jobs._common import job_parser, run_job

    ap = job_parser(__doc__, SMOKE)
    ap.add_argument("--model", default=None, help="NAME[@alias] or NAME/VERSION")
    ap.add_argument("--snapshot", default=None, help="snapshot id or 'latest'")
    ap.add_argument("--input", type=Path, default=None, help="a Parquet/CSV table")
    ap.add_argument("--output", type=Path, default=None, help="the Parquet folder (required)")
    ap.add_argument("--shap", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)

    def body() -> int:
        cfg, ws, _ = open_project(args.project, args.workspace, args.profile)
        if args.smoke:
            from engine.registry.models import try_resolve
            from engine.tracking import setup_mlflow

            setup_mlflow(ws, cfg.name)
            ref = try_resolve(cfg.train.model_name, "champion")
            print(json.dumps({"model": cfg.train.model_name, "champion": ref and ref.version}))
            return 0
        if args.output is None:
            ap.error("--output is required")
        start_ray(ws)
        try:
            r = stage_score(
                cfg,
                ws,
                args.model,
                snapshot=args.snapshot,
                input_path=args.input,
                output=args.output,
                shap=args.shap,
                overwrite=args.overwrite,
            )
        finally:
            stop_ray()
        print(
            json.dumps(
                {
                    "model": r.model,
                    "version": r.version,
                    "rows": r.rows,
                    "output": str(r.output),
                    "rows_per_s": r.rows_per_s,
                    "cpus": r.cpus,
                    "input_fingerprint": r.input_fingerprint,
                    "output_fingerprint": r.output_fingerprint,
                }
            )
        )
        return 0

    return run_job(body)


if __name__ == "__main__":
    raise SystemExit(main())
