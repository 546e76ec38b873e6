"""Immutable, content-addressed feature snapshots.

A snapshot is a folder ``<workspace>/features/<project>/<id>/`` holding ``manifest.json``
and ``data/``, the Parquet files alone (so ``pandas.read_parquet(snapshot.data)`` and any
Parquet reader take the folder as one table; snapshots of format 2 kept their files beside
the manifest and are still read). The id is a hash of everything that determines the content: the view
specs, the label spec, the bytes of every source and the PII key's fingerprint. Building
again from the same inputs finds the folder and writes nothing. A build writes into a
hidden temp folder and commits by one ``rename``: a crash leaves no visible snapshot.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from engine.config.project import ProjectConfig
from engine.errors import StateError
from engine.workspace import Workspace, atomic_write_text

FORMAT_VERSION = 3  # 3: data files under data/; row ids unique; view ties rule


DATA_DIR = "data"


@dataclass(frozen=True)
class Snapshot:
    path: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.manifest["snapshot_id"])

    @property
    def data(self) -> Path:
        """The folder of the snapshot's Parquet files (the snapshot's own folder in format 2)."""
        d = self.path / DATA_DIR
        return d if d.is_dir() else self.path

    def read_pandas(self, columns: list[str] | None = None) -> pd.DataFrame:
        files = sorted(self.data.glob("*.parquet"))
        return pq.ParquetDataset(files).read(columns=columns).to_pandas()


def snapshot_root(ws: Workspace, project: str) -> Path:
    return ws.features / project


def snapshot_id(cfg: ProjectConfig, source_fps: dict[str, str], pii_fp: str) -> str:
    spec = {
        "format": FORMAT_VERSION,
        "views": [v.model_dump(mode="json") for v in cfg.features.views],
        "label": cfg.label.model_dump(mode="json"),
        "sources": source_fps,
        "pii": sorted(cfg.pii),
        "pii_key": pii_fp,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def find(ws: Workspace, project: str, sid: str | None = None) -> Snapshot:
    """The snapshot with this id (a unique prefix works), or the newest one."""
    root = snapshot_root(ws, project)
    snaps = list_snapshots(ws, project)
    if not snaps:
        raise StateError(
            f"no feature snapshot for project '{project}' under {root}. "
            "Fix: run `insight features build` first."
        )
    if sid is None:
        return snaps[-1]
    hits = [s for s in snaps if s.id.startswith(sid)]
    if len(hits) != 1:
        known = ", ".join(s.id for s in snaps)
        raise StateError(
            f"snapshot '{sid}' matches {len(hits)} snapshots of '{project}' (known: {known}). "
            "Fix: pass a longer id or one from `insight features list`."
        )
    return hits[0]


def list_snapshots(ws: Workspace, project: str) -> list[Snapshot]:
    root = snapshot_root(ws, project)
    out = []
    for m in root.glob("*/manifest.json") if root.exists() else []:
        if m.parent.name.startswith("."):
            continue
        out.append(Snapshot(m.parent, json.loads(m.read_text())))
    return sorted(out, key=lambda s: s.manifest["created_at"])


STALE_TMP_S = 6 * 3600


def temp_dir(ws: Workspace, project: str, sid: str) -> Path:
    """A fresh hidden build folder; sweeps ones a killed build left hours ago."""
    import time

    root = snapshot_root(ws, project)
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob(".tmp-*"):
        if time.time() - old.stat().st_mtime > STALE_TMP_S:
            shutil.rmtree(old, ignore_errors=True)
    return root / f".tmp-{sid}-{uuid.uuid4().hex[:8]}"


def commit(tmp: Path, manifest: dict[str, Any]) -> Snapshot:
    """Write the manifest into ``tmp`` and rename it to its final id (atomic)."""
    manifest = dict(manifest, created_at=dt.datetime.now(dt.UTC).isoformat())
    atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=2, default=str))
    final = tmp.parent / str(manifest["snapshot_id"])
    for junk in [*tmp.rglob("_SUCCESS"), *tmp.rglob(".*.crc")]:
        junk.unlink()
    try:
        tmp.rename(final)
    except OSError:
        # Another build committed the same content first: same id, same data. Keep theirs.
        shutil.rmtree(tmp, ignore_errors=True)
    return Snapshot(final, json.loads((final / "manifest.json").read_text()))
