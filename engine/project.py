"""Opening a project: the project file loaded, its cluster profile applied, its workspace
ready. What every CLI command and job starts with (kept apart from the profile schemas in
:mod:`engine.config.cluster`, which the project file's schema imports: no import circle)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.config.cluster import Resolved, resolve
from engine.config.forecast import ForecastProject
from engine.config.project import ProjectConfig
from engine.config.target import TargetProject
from engine.workspace import Workspace


def open_project(
    project: str | Path,
    workspace: str | Path | None = None,
    profile: str | None = None,
) -> tuple[ProjectConfig, Workspace, Resolved]:
    """Load a project file and apply a profile: ``(ProjectConfig, Workspace, Resolved)``.

    The profile sets the Spark master, the workspace root (``storage``, one folder per
    project), the MLflow tracking URI and the Ray address; ``workspace`` overrides the root.
    """
    cfg = ProjectConfig.load(project)
    prof = resolve(cfg.cluster, profile)
    p = prof.profile
    if p.spark:
        cfg = cfg.model_copy(
            update={"features": cfg.features.model_copy(update={"spark_master": p.spark})}
        )
    root: str | Path | None = workspace
    if root is None and p.storage:
        root = Path(p.storage) / cfg.name
    ws = Workspace(cfg.workspace_root(root), tracking=p.mlflow, ray_address=p.ray).ensure()
    return cfg, ws, prof


def open_forecast_project(
    project: str | Path,
    workspace: str | Path | None = None,
    profile: str | None = None,
) -> tuple[ForecastProject, Workspace, Resolved]:
    """The forecasting part of a project file (engine.config.forecast), its profile
    applied as :func:`open_project` applies it (workspace root, MLflow, Ray)."""
    proj = ForecastProject.load(project)
    prof = resolve(proj.cluster, profile)
    p = prof.profile
    if p.spark:
        proj = proj.model_copy(update={"spark_master": p.spark})
    root: str | Path | None = workspace
    if root is None and p.storage:
        root = Path(p.storage) / proj.name
    root = Path(root if root is not None else proj.workspace).resolve()
    ws = Workspace(root, tracking=p.mlflow, ray_address=p.ray).ensure()
    return proj, ws, prof


def open_target_project(
    project: str | Path,
    workspace: str | Path | None = None,
    profile: str | None = None,
) -> tuple[TargetProject, Workspace, Resolved]:
    """The targeting part of a project file (engine.config.target), its profile applied
    as :func:`open_project` applies it (workspace root, MLflow, Ray)."""
    proj = TargetProject.load(project)
    prof = resolve(proj.cluster, profile)
    p = prof.profile
    root: str | Path | None = workspace
    if root is None and p.storage:
        root = Path(p.storage) / proj.name
    root = Path(root if root is not None else proj.workspace).resolve()
    ws = Workspace(root, tracking=p.mlflow, ray_address=p.ray).ensure()
    return proj, ws, prof


@dataclass(frozen=True)
class AnyProject:
    """A project file of any task, for what every task shares (sources, ingestion,
    schedules): the task's config, its workspace, and where Spark runs."""

    cfg: ProjectConfig | ForecastProject | TargetProject
    ws: Workspace
    task: str  # churn | forecast | target
    spark_master: str
    path: Path

    @property
    def base_dir(self) -> Path:
        return Path(self.cfg.base_dir)


def open_any_project(
    project: str | Path, workspace: str | Path | None = None, profile: str | None = None
) -> AnyProject:
    """Open a churn, forecast or targeting project file by what it holds (``label:``,
    ``forecast:`` or ``target:``), its profile applied."""
    from engine.config.base import read_project_file

    p, raw = read_project_file(project)
    if "label" in raw:
        cfg, ws, _ = open_project(p, workspace, profile)
        return AnyProject(cfg, ws, "churn", cfg.features.spark_master, p.resolve())
    if "forecast" in raw:
        fc, ws, _ = open_forecast_project(p, workspace, profile)
        return AnyProject(fc, ws, "forecast", fc.spark_master, p.resolve())
    tp, ws, prof = open_target_project(p, workspace, profile)
    return AnyProject(tp, ws, "target", prof.profile.spark or "local[2]", p.resolve())
