"""Batch scoring as a job: a registered model scores a snapshot or a table with Ray Data
across the cluster's CPUs, into Parquet (what ``insight score`` runs). Submitted to a
cluster (RAY_ADDRESS set), it scores on Ray Data; run on one machine with no cluster named,
a table under 256 MB is scored in this process (``--engine ray`` to force Ray Data).

    python jobs/score.py --snapshot latest --output /mnt/insight/scores/2026-11
    insight submit score --profile lab -- --snapshot latest --output /mnt/insight/scores/x

Prints one JSON summary line at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SMOKE = (
    "score the first 1,000 rows (of --snapshot, default the newest) with SHAP into a "
    "temporary folder, removed after; no audit record"
)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from engine.project import open_project
    from engine.raycluster import stop_ray
    from engine.stages.score import stage_score
    from jobs._common import job_parser, run_job

    ap = job_parser(__doc__, SMOKE)
    ap.add_argument("--model", default=None, help="NAME[@alias] or NAME/VERSION")
    ap.add_argument("--snapshot", default=None, help="snapshot id or 'latest'")
    ap.add_argument("--input", type=Path, default=None, help="a Parquet/CSV table")
    ap.add_argument("--output", type=Path, default=None, help="the Parquet folder (required)")
    ap.add_argument("--shap", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--engine", choices=["auto", "ray", "local"], default="auto")
    args = ap.parse_args(argv)

    def body() -> int:
        cfg, ws, _ = open_project(args.project, args.workspace, args.profile)
        smoke_dir = None
        if args.smoke:
            import tempfile

            smoke_dir = Path(tempfile.mkdtemp(prefix="score-smoke-", dir=ws.root))
            args.output = smoke_dir / "scores"
            if args.input is None and args.snapshot is None:
                args.snapshot = "latest"
        elif args.output is None:
            ap.error("--output is required")
        try:
            r = stage_score(
                cfg,
                ws,
                args.model,
                snapshot=args.snapshot,
                input_path=args.input,
                output=args.output,
                overwrite=args.overwrite,
                shap=args.shap or args.smoke,
                limit=1000 if args.smoke else None,
                record=not args.smoke,
                engine=args.engine,
            )
        finally:
            stop_ray()
            if smoke_dir is not None:
                import shutil

                shutil.rmtree(smoke_dir, ignore_errors=True)
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
