"""What every ``insight`` subcommand shares: the project/workspace options and loading them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.config import DEFAULT_PROJECT, ProjectConfig
from engine.workspace import Workspace

__all__ = ["DEFAULT_PROJECT", "AddressOpt", "ProjectOpt", "WorkspaceOpt", "load", "project_path"]

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
AddressOpt = Annotated[
    str | None, typer.Option("--address", help="Ray cluster address (default: a local cluster).")
]


def project_path(project: Path | None) -> Path:
    if project is None:
        project = Path("insight.yaml") if Path("insight.yaml").is_file() else DEFAULT_PROJECT
    return project.resolve()


def load(project: Path | None, workspace: Path | None) -> tuple[ProjectConfig, Workspace]:
    cfg = ProjectConfig.load(project_path(project))
    return cfg, Workspace(cfg.workspace_root(workspace)).ensure()
