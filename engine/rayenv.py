"""The Ray environment every engine process sets before Ray is imported.

Ray reads ``RAY_AUTH_MODE`` once, when ``ray`` is imported; the processes it starts (GCS,
raylet) read it from the environment they inherit. Setting it after the import gives a GCS
that demands a token and a client that sends none ("InvalidAuthToken ... RAY_AUTH_MODE is
currently 'disabled'"). That happened whenever ``~/.ray/auth_token`` existed, and Ray 2.60
writes that file on any plain ``ray.init()``. So the engine package (``engine.__init__``)
calls :func:`ray_env` before anything imports Ray, and once Ray is imported the mode is
left as Ray read it.
No engine import here: this runs while the package initialises.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def ray_env() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Token auth only where a token exists; purely local clusters need none (STACK.md).
    # A token in the environment (RAY_AUTH_TOKEN, e.g. from a cluster's secret) means token auth.
    if "ray" not in sys.modules:
        token = Path.home() / ".ray" / "auth_token"
        has_token = token.exists() or bool(os.environ.get("RAY_AUTH_TOKEN"))
        os.environ.setdefault("RAY_AUTH_MODE", "token" if has_token else "disabled")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Quiet Tune: the engine draws its own progress bar; the legacy engine honours verbose=0.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
