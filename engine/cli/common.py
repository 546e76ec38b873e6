"""What every ``insight`` subcommand shares: the project/workspace options and loading them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.config.project import DEFAULT_PROJECT, ProjectConfig
from engine.workspace import Workspace

__all__ = [
    "DEFAULT_PROJECT",
    "AddressOpt",
    "ProfileOpt",
    "ProjectOpt",
    "WorkspaceOpt",
    "load",
    "project_path",
]

ProjectOpt = Annotated[
    Path | None,
    typer.Option(
        "--project",
        "-p",
        help="Project file. Default: ./insight.yaml if present, else the retail example.",
    ),
]
WorkspaceOpt = Annotated[
    Path | None, typer.Option("--workspace", "-w", help="Workspace root (default: .insight).")
]
ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="Where to run: a profile under 'cluster:' in the project file (default: "
        "INSIGHT_PROFILE, else the file's default, else local).",
    ),
]
AddressOpt = Annotated[
    str | None, typer.Option("--address", help="Ray cluster address (default: a local cluster).")
]


def project_path(project: Path | None) -> Path:
    if project is None:
        project = Path("insight.yaml") if Path("insight.yaml").is_file() else DEFAULT_PROJECT
    return project.resolve()


def load(
    project: Path | None,
    workspace: Path | None,
    profile: str | None = None,
    *,
    must_exist: bool = False,
) -> tuple[ProjectConfig, Workspace]:
    """The project and its workspace, with the profile applied (engine.config.cluster).
    ``must_exist``: a command that only reads (the report, the dashboard) refuses a
    ``--workspace`` that does not exist instead of making a new, empty one there."""
    from engine.project import open_project

    if must_exist and workspace is not None and not workspace.is_dir():
        from engine.errors import ConfigError

        raise ConfigError(
            f"--workspace {workspace}: no such folder (a mistyped path?); this command only "
            "reads a workspace. Fix: pass the folder that `insight demo` or `insight monitor` "
            "wrote (default .insight), or leave --workspace out."
        )

    cfg, ws, _ = open_project(project_path(project), workspace, profile)
    return cfg, ws
