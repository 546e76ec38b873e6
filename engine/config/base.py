"""What every schema of the project file shares: the one model base, the name pattern and
the one YAML loader."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict

from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.config.source import SourceConfig

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"  # a name usable in SQL and JSON without quoting


class Model(BaseModel):
    """A part of the project file: unknown keys are errors (a typo is never ignored), and
    a loaded configuration does not change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_yaml(path: Path) -> Any:
    """The parsed YAML of ``path``; a syntax error is a :class:`ConfigError` naming it."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}). Fix: save the file "
            "as UTF-8."
        ) from None


def read_project_file(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """A project file's mapping with ``base_dir`` set (the folder its paths are relative
    to): what every task's loader starts from."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"project file '{p}' does not exist. Fix: pass --project PATH to an insight.yaml."
        )
    raw = read_yaml(p)
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping.")
    raw["base_dir"] = str(p.resolve().parent)
    return p, raw


class HasSources(Protocol):
    """A project file's part that names sources (the churn project, the forecast project):
    what the source readers of engine.data.sources need."""

    @property
    def sources(self) -> dict[str, SourceConfig]: ...

    def resolve_path(self, path: str, workspace: Path) -> Path: ...


def resolve_source_path(base_dir: str, path: str, workspace: Path) -> Path:
    """Expand ``{workspace}`` and make a source path absolute (relative to the file)."""
    p = Path(path.replace("{workspace}", str(workspace)))
    return p if p.is_absolute() else (Path(base_dir) / p).resolve()
