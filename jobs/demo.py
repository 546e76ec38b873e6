"""The whole loop as a job: ``python jobs/demo.py [--smoke]`` (what ``insight demo`` runs).

``--smoke`` uses the tiny sample (about two minutes on two cores). Prints where the outputs
are at the end; exits non-zero with one clear line on a user error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from engine.config import DEFAULT_PROJECT, ProjectConfig
    from engine.console import console
    from engine.errors import InsightError
    from engine.stages.demo import run_demo
    from engine.workspace import Workspace

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--project", default=str(DEFAULT_PROJECT))
    ap.add_argument("--workspace", default=None)
    ap.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    ap.add_argument("--smoke", action="store_true", help="tiny data")
    args = ap.parse_args(argv)
    try:
        cfg = ProjectConfig.load(args.project)
        ws = Workspace(cfg.workspace_root(args.workspace)).ensure()
        run_demo(cfg, ws, size="tiny" if args.smoke else None, address=args.address)
    except InsightError as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
