"""The whole loop as a job: ``python jobs/demo.py [--smoke]`` (what ``insight demo`` runs).

``--smoke`` uses the tiny sample (about two minutes on two cores). Prints where the outputs
are at the end; exits non-zero with one clear line on a user error.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from engine.demo.run import run_demo
    from engine.project import open_project
    from jobs._common import job_parser, run_job

    ap = job_parser(__doc__, "tiny data")
    ap.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    args = ap.parse_args(argv)

    def body() -> int:
        cfg, ws, _ = open_project(args.project, args.workspace, args.profile)
        run_demo(cfg, ws, size="tiny" if args.smoke else None, address=args.address)
        return 0

    return run_job(body)


if __name__ == "__main__":
    sys.exit(main())
