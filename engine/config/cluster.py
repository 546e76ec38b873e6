"""Cluster profiles: where each part of a project runs.

The project file (or a file its ``cluster:`` key names) lists profiles::

    cluster:
      default: local
      profiles:
        lab:
          ray: 10.0.0.5:6379                   # Ray address the stages join ("auto" in a job)
          jobs: http://10.0.0.5:8265           # Ray Jobs API, for `insight submit`
          spark: spark://10.0.0.5:7077         # a standalone master, or local[N]
          mlflow: http://10.0.0.5:5000         # an MLflow server (tracking + registry)
          storage: /mnt/insight                # a folder every node mounts: the workspace

``local`` always exists and is today's embedded default: a private Ray cluster per command,
``local[2]`` Spark, sqlite MLflow and the workspace folder. A profile may leave any part
out; that part then runs locally. Values may name environment variables (``${VAR}``), so
one file serves several clusters. Credentials never go in the file: Ray reads
``RAY_AUTH_TOKEN``, MLflow ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` from the
environment of the process that connects (on a
cluster: the nodes' environment, e.g. a Kubernetes secret).

``storage`` is a filesystem path every node sees (NFS, EFS, Filestore, a PVC): snapshots,
Tune checkpoints and audit segments are files there, written with temp-then-rename.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from engine.config.base import Model, read_yaml
from engine.errors import ConfigError, format_validation_error

LOCAL = "local"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Profile(Model):
    """One place to run. Every part left out runs locally."""

    ray: str | None = Field(
        default=None, description="Ray address the stages join: host:port of the GCS, or auto."
    )
    jobs: str | None = Field(
        default=None, description="Ray Jobs API (the dashboard), http://host:8265."
    )
    spark: str | None = Field(
        default=None, description="Spark master: spark://host:7077 or local[N]."
    )
    mlflow: str | None = Field(default=None, description="MLflow server: http(s)://host:port.")
    storage: str | None = Field(
        default=None, description="A folder every node mounts: the workspace on the cluster."
    )
    python: str = Field(
        default="python",
        description="The interpreter a submitted job's entrypoint calls, as the cluster's "
        "nodes name it (on their PATH).",
    )
    excludes: list[str] = Field(
        default_factory=lambda: [
            ".venv",
            ".insight",
            ".git",
            "**/__pycache__",
            ".mypy_cache",
            ".ruff_cache",
            ".pytest_cache",
            ".hypothesis",
            "benchmarks/results",
        ],
        description="What `insight submit` leaves out of the uploaded working directory.",
    )
    pip: list[str] = Field(
        default_factory=list,
        description="Extra packages the job's runtime environment installs (empty: the "
        "cluster's image has the engine's dependencies).",
    )

    @field_validator("spark")
    @classmethod
    def _spark(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(spark://|sc://|local(\[[0-9*]+\])?$)", v):
            raise ValueError(
                f"spark: {v!r} is not a Spark master. Fix: spark://HOST:7077 (standalone), "
                "sc://HOST:15002 (Spark Connect) or local[2]."
            )
        if v is not None and v.startswith("sc://") and "token=" in v:
            raise ValueError(
                "spark: the Spark Connect URL holds a token; a secret does not belong in the "
                "project file. Fix: drop ';token=...' and set SPARK_CONNECT_AUTHENTICATE_TOKEN "
                "in the environment."
            )
        return v

    @field_validator("mlflow")
    @classmethod
    def _mlflow(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(https?://|sqlite:///|postgresql)", v):
            raise ValueError(
                f"mlflow: {v!r} is not a tracking URI a cluster can share. Fix: the URL of an "
                "MLflow server, http://HOST:5000 (`mlflow server ...`)."
            )
        return v

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v.startswith("file://"):
            v = v[len("file://") :]
        if "://" in v:
            raise ValueError(
                f"storage: {v!r}: snapshots, checkpoints and audit segments are files on a "
                "folder every node mounts; object-store URIs are not read directly. Fix: mount "
                "the bucket on every node (e.g. mountpoint-s3, gcsfuse) and give the mount path."
            )
        if not v.startswith("/"):
            raise ValueError(f"storage: {v!r} must be an absolute path (the same on every node).")
        return v


class ClusterConfig(Model):
    default: str = Field(default=LOCAL, description="The profile used without --profile.")
    profiles: dict[str, Profile] = Field(default_factory=dict)


@dataclass(frozen=True)
class Resolved:
    """A profile with its environment variables expanded."""

    name: str
    profile: Profile

    @property
    def is_local(self) -> bool:
        p = self.profile
        return not any((p.ray, p.jobs, p.spark, p.mlflow, p.storage))


def load_cluster(raw: Any, base_dir: str) -> ClusterConfig:
    """The ``cluster:`` value of a project file: a mapping, or a path to a YAML file with one."""
    if raw is None:
        return ClusterConfig()
    if isinstance(raw, str):
        p = Path(raw) if Path(raw).is_absolute() else Path(base_dir) / raw
        if not p.is_file():
            raise ConfigError(
                f"cluster: file '{raw}' does not exist (looked at {p}). Fix: a path relative "
                "to the project file, or put the profiles under 'cluster:' directly."
            )
        raw = read_yaml(p)
    try:
        return ClusterConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(base_dir, exc, prefix="cluster.")) from None


def _expand(name: str, field: str, value: str) -> str:
    def sub(m: re.Match[str]) -> str:
        var = m.group(1)
        if var not in os.environ:
            raise ConfigError(
                f"profile '{name}': {field} names ${{{var}}}, which is not set. Fix: export "
                f"{var}=... (or write the value into the profile)."
            )
        return os.environ[var]

    return _VAR.sub(sub, value)


def resolve(cluster: ClusterConfig, name: str | None = None) -> Resolved:
    """The profile ``name`` (default: ``INSIGHT_PROFILE``, else the file's default)."""
    name = name or os.environ.get("INSIGHT_PROFILE") or cluster.default
    if name == LOCAL and LOCAL not in cluster.profiles:
        return Resolved(LOCAL, Profile())
    if name not in cluster.profiles:
        known = ", ".join([LOCAL, *sorted(p for p in cluster.profiles if p != LOCAL)])
        raise ConfigError(
            f"profile '{name}' is not defined (profiles: {known}). Fix: add it under "
            "'cluster: profiles:' in the project file, or pass one of those to --profile."
        )
    p = cluster.profiles[name]
    data = {k: _expand(name, k, v) if isinstance(v, str) else v for k, v in p.model_dump().items()}
    try:
        return Resolved(name, Profile.model_validate(data))
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(f"profile '{name}'", exc, prefix=f"cluster.profiles.{name}.")
        ) from None
