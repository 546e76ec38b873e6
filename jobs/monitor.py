"""The monitor as a job: one run over a window of the audit log (or ``--every`` until
stopped), alerts delivered, a requested retrain run. What ``insight monitor`` runs.

    python jobs/monitor.py --from -1h
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python jobs/monitor.py

``--smoke``: one run over the last five minutes, no alerts sent, no retrain (seconds; the
test suite runs it). Prints one JSON summary line at the end.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

SMOKE = "one run, last 5 minutes, nothing sent"


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from engine.cli.monitor import parse_time
    from engine.config.monitor import seconds
    from engine.project import open_project
    from engine.stages.monitor import every, stage_monitor
    from jobs._common import job_parser, run_job

    ap = job_parser(__doc__, SMOKE)
    ap.add_argument("--from", dest="since", default=None, help="ISO time or '-1h'")
    ap.add_argument("--to", dest="until", default=None, help="ISO time or 'now'")
    ap.add_argument("--every", default=None, help="run every period (e.g. 5m) until stopped")
    ap.add_argument("--app", default="insight")
    ap.add_argument("--no-retrain", action="store_true")
    args = ap.parse_args(argv)

    def body() -> int:
        cfg, ws, _ = open_project(args.project, args.workspace, args.profile)
        if args.every and not args.smoke:
            n = every(cfg, ws, seconds(args.every), app=args.app)
            print(json.dumps({"runs": n}))
            return 0
        now = time.time()
        since = parse_time("-5m" if args.smoke else args.since, now)
        r = stage_monitor(
            cfg, ws, since, parse_time(args.until, now), app=args.app, send=not args.smoke
        )
        if r.retrains and not (args.smoke or args.no_retrain):
            from engine.stages.retrain import run_requested

            run_requested(cfg, ws, app=args.app)
        res = r.result
        print(
            json.dumps(
                {
                    "result": str(r.path),
                    "requests": res.traffic.requests,
                    "no_traffic": res.no_traffic,
                    "chain_ok": res.audit.chain_ok,
                    "firing": res.rules.firing if res.rules else [],
                    "retrain_requests": len(r.retrains),
                }
            )
        )
        return 0

    return run_job(body)


if __name__ == "__main__":
    raise SystemExit(main())
