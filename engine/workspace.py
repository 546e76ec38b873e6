"""Where local state lives.

Everything the engine writes on one machine goes under one root (``.insight/`` by default):

- ``mlflow.db`` and ``mlartifacts/``: MLflow tracking + registry (sqlite backend)
- ``features/``: immutable feature snapshots
- ``data/``: generated sample data
- ``audit/``, ``reports/``: audit log segments and reports
- ``ray/``, ``tune/``, ``numba/``, ``spark/``: scratch for the engines (short paths)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InsightError


@dataclass(frozen=True)
class Workspace:
    root: Path
    # Set by a cluster profile (engine.config.cluster): an MLflow server and a Ray address to join.
    tracking: str | None = None
    ray_address: str | None = None

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def tracking_uri(self) -> str:
        return self.tracking or f"sqlite:///{self.mlflow_db}"

    @property
    def shared_tracking(self) -> bool:
        """True when MLflow is a server (artifacts go through it, not to a local folder)."""
        return self.tracking is not None and self.tracking.startswith(("http://", "https://"))

    @property
    def artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def audit(self) -> Path:
        return self.root / "audit"

    @property
    def reports(self) -> Path:
        """The stages' JSON reports (validation, drift); the HTML report is ``site``."""
        return self.root / "reports"

    @property
    def site(self) -> Path:
        """The HTML report and its card pages (``insight report``)."""
        return self.root / "report"

    @property
    def online(self) -> Path:
        return self.root / "online"

    @property
    def serve(self) -> Path:
        """The detached server's state, the rollout's progress."""
        return self.root / "serve"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def monitor(self) -> Path:
        return self.root / "monitor"

    @property
    def labels(self) -> Path:
        return self.root / "labels"

    @property
    def tune(self) -> Path:
        return self.root / "tune"

    @property
    def scratch(self) -> Path:
        return self.root / "tmp"

    def ensure(self) -> Workspace:
        for p in (self.root, self.features, self.data, self.audit, self.reports, self.tune):
            p.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        # Numba's on-disk cache must be writable; keep it in the workspace (STACK.md).
        os.environ.setdefault("NUMBA_CACHE_DIR", str(self.root / "numba"))
        return self

    def ray_temp_dir(self) -> Path:
        """A short private temp dir for Ray (its socket paths must stay under 107 bytes)."""
        # Named after the workspace, so leftover processes of this workspace are findable.
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:8]
        d = Path(tempfile.gettempdir()) / f"insray-{digest}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def clean(self) -> bool:
        """Remove the workspace. Refuses anything that does not look like one."""
        if not self.root.exists():
            return False
        marker_like = {"mlflow.db", "features", "data", "tune", "mlartifacts", "reports"}
        present = {p.name for p in self.root.iterdir()}
        if present and not (present & marker_like) and self.root.name != ".insight":
            raise InsightError(
                f"refusing to delete '{self.root}': it does not look like an insight workspace "
                f"(found {sorted(present)[:5]}). Fix: point --workspace at the workspace folder."
            )
        shutil.rmtree(self.root)
        return True


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so readers see either the old content or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
