"""MLflow setup for a workspace: sqlite tracking + registry, local artifact store."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from engine.workspace import Workspace


def use_workspace(ws: Workspace) -> None:
    """Point MLflow's tracking and registry at the workspace. Every stage that reads the
    registry calls this (or :func:`setup_mlflow`) first: without it MLflow falls back to
    ``mlflow.db`` in the working directory, another registry that it creates there."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # "Failed to resolve installed pip version": harmless, requirements are explicit.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(ws.tracking_uri)
    mlflow.set_registry_uri(ws.tracking_uri)


def setup_mlflow(ws: Workspace, experiment: str) -> str:
    """Point MLflow at the workspace and return the experiment id (created if missing)."""
    import mlflow

    use_workspace(ws)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is not None:
        return str(exp.experiment_id)
    if ws.shared_tracking:  # the server's artifact root (proxied), which every node reaches
        return str(mlflow.create_experiment(experiment))
    return str(mlflow.create_experiment(experiment, artifact_location=ws.artifacts.as_uri()))


def code_version() -> str:
    """The git commit of the engine's checkout, or 'unknown' outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"
