"""Online table: the latest feature values per entity, for serving.

``materialize`` evaluates the same feature views, with the same code as the training-set
builder, for every known entity at one as-of time ("now" by default), and writes a compact
Parquet table plus a manifest under ``<workspace>/online/<project>/``. Serving loads it
into memory (:class:`OnlineTable`) and looks rows up by entity id: exactly the features
the training-set builder would produce for a label at the as-of time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from engine.config.project import ProjectConfig
from engine.errors import StateError
from engine.features.build import AS_OF_T, FT_PREFIX, build_view
from engine.workspace import Workspace, atomic_write_text

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

AS_OF = "as_of"


def online_root(ws: Workspace, project: str) -> Path:
    return ws.online / project


def entity_keys(cfg: ProjectConfig, sources: dict[str, DataFrame], key: str) -> DataFrame:
    """Every entity id that appears in any view's source."""
    frames = [sources[v.source].select(key) for v in cfg.features.views]
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out.distinct()


def online_features(
    cfg: ProjectConfig, sources: dict[str, DataFrame], as_of: dt.datetime
) -> DataFrame:
    """Feature rows for every entity at ``as_of`` (the training-set builder's code path)."""
    from pyspark.sql import functions as F

    ent = cfg.sources[cfg.label.source].entity
    assert ent is not None
    key = cfg.entity_key(ent)
    lt = cfg.label.event_time or AS_OF_T  # the as-of time every view is evaluated at
    keys = entity_keys(cfg, sources, key).withColumn(
        lt, F.lit(as_of.replace(tzinfo=None)).cast("timestamp_ntz")
    )
    table = keys
    for view in cfg.features.views:
        part = build_view(
            view, keys, sources[view.source], key, lt, cfg.sources[view.source].event_time
        )
        table = table.join(part, on=[key, lt], how="left")
    visible = [c for c in table.columns if not c.startswith(FT_PREFIX)]
    return table.select(*visible).withColumnRenamed(lt, AS_OF)


def materialize(
    cfg: ProjectConfig,
    ws: Workspace,
    spark: SparkSession,
    snapshot_id: str,
    as_of: dt.datetime | None = None,
) -> Path:
    """Write the online table for ``as_of`` (default: now, UTC) and return its folder."""
    from engine.data.sources import read_source
    from engine.pii import load_key

    when = (as_of or dt.datetime.now(dt.UTC)).replace(tzinfo=None, microsecond=0)
    key = load_key(ws.root)
    names = list(dict.fromkeys(v.source for v in cfg.features.views))
    sources = {n: read_source(spark, cfg, n, ws.root, key) for n in names}
    df = online_features(cfg, sources, when).toPandas()
    root = online_root(ws, cfg.name)
    root.mkdir(parents=True, exist_ok=True)
    name = f"{snapshot_id}-{when:%Y%m%dT%H%M%S}"
    tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    try:
        df.to_parquet(tmp / "table.parquet", index=False)
        manifest = {
            "snapshot_id": snapshot_id,
            "as_of": when.isoformat(),
            "rows": len(df),
            "features": cfg.feature_names(),
            "entity_key": df.columns[0],
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=2))
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(root / "CURRENT", name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@dataclass
class OnlineTable:
    """An in-memory online table with lookups by entity id."""

    key: str
    as_of: str
    snapshot_id: str
    frame: pd.DataFrame  # indexed by entity id

    @classmethod
    def load(cls, path: Path) -> OnlineTable:
        m = json.loads((path / "manifest.json").read_text())
        df = pd.read_parquet(path / "table.parquet")
        key = m["entity_key"]
        return cls(key, m["as_of"], m["snapshot_id"], df.set_index(key))

    @classmethod
    def current(cls, ws: Workspace, project: str) -> OnlineTable:
        root = online_root(ws, project)
        pointer = root / "CURRENT"
        if not pointer.is_file():
            raise StateError(
                f"no online table for project '{project}' under {root}. "
                "Fix: run `insight features materialize` first."
            )
        return cls.load(root / pointer.read_text().strip())

    def lookup(self, ids: list[Any], features: list[str]) -> tuple[pd.DataFrame, list[Any]]:
        """Feature rows for ``ids`` (in order) and the ids that are unknown."""
        missing = [i for i in ids if i not in self.frame.index]
        found = [i for i in ids if i in self.frame.index]
        return self.frame.loc[found, features].reset_index(drop=True), missing
