"""What every job entry point shares: the --project, --workspace, --profile and --smoke
arguments, and one line (not a traceback) for an error the user can fix."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def job_parser(doc: str | None, smoke_help: str) -> argparse.ArgumentParser:
    from engine.config.project import DEFAULT_PROJECT

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--project", type=Path, default=DEFAULT_PROJECT)
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--profile", default=None, help="cluster profile (default: INSIGHT_PROFILE)")
    ap.add_argument("--smoke", action="store_true", help=smoke_help)
    return ap


def run_job(body: Callable[[], int]) -> int:
    """``body()``'s exit code; an :class:`InsightError` is printed as one line with its own
    exit code."""
    from engine.errors import InsightError

    try:
        return body()
    except InsightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
