"""The features stage as a job: build (or reuse) the project's feature snapshot on Spark.

    python jobs/features.py --project examples/retail/insight.yaml
    insight submit features --profile lab

The Spark master comes from the profile (``spark: spark://HOST:7077`` or ``local[N]``);
the snapshot lands under the profile's storage. Prints one JSON summary line at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SMOKE = (
    "build the features of the first 1,000 label rows on Spark and run the leakage guard "
    "and the expectations; write nothing"
)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from engine.project import open_project
    from engine.stages.features import stage_features
    from jobs._common import job_parser, run_job

    ap = job_parser(__doc__, SMOKE)
    args = ap.parse_args(argv)

    def body() -> int:
        cfg, ws, prof = open_project(args.project, args.workspace, args.profile)
        if args.smoke:
            from engine.stages.features import check_features

            out = check_features(cfg, ws, rows=1000)
            print(json.dumps({**out, "spark": cfg.features.spark_master, "profile": prof.name}))
            return 0
        s, reused = stage_features(cfg, ws)
        m = s.manifest
        print(
            json.dumps(
                {
                    "snapshot_id": s.id,
                    "path": str(s.path),
                    "reused": reused,
                    "rows": m["rows"],
                    "content_hash": m.get("content_hash"),
                    "spark": cfg.features.spark_master,
                    "profile": prof.name,
                }
            )
        )
        return 0

    return run_job(body)


if __name__ == "__main__":
    raise SystemExit(main())
