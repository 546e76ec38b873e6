"""Stage: check the sources, build the point-in-time training table on Spark, validate it
(leakage guard, expectations) and commit an immutable snapshot. A snapshot whose id (spec
and source bytes) already exists is reused without starting Spark."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from engine.config import ProjectConfig
from engine.data.sources import check_sources, fingerprint, read_source, source_path
from engine.features import snapshot as snap
from engine.features.build import FT_PREFIX, build_training_table
from engine.features.checks import leakage_report, raise_on_failures, run_expectations
from engine.features.spark import spark_session
from engine.pii import key_fingerprint, load_key
from engine.workspace import Workspace, atomic_write_text

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def used_sources(cfg: ProjectConfig) -> list[str]:
    names = [cfg.label.source] + [v.source for v in cfg.features.views]
    return list(dict.fromkeys(names))


def plan_snapshot(cfg: ProjectConfig, ws: Workspace) -> tuple[str, dict[str, str], bytes]:
    """Check the sources and compute the snapshot id, without starting Spark."""
    names = used_sources(cfg)
    check_sources(cfg, ws.root, names)
    key = load_key(ws.root)
    fps = {n: fingerprint(source_path(cfg, n, ws.root)) for n in names}
    return snap.snapshot_id(cfg, fps, key_fingerprint(key)), fps, key


def stage_features(
    cfg: ProjectConfig, ws: Workspace, spark: SparkSession | None = None
) -> tuple[snap.Snapshot, bool]:
    """Build (or reuse) the snapshot for the current sources and spec.

    Returns the snapshot and whether it already existed (then Spark is not started).
    """
    sid, fps, key = plan_snapshot(cfg, ws)
    existing = [s for s in snap.list_snapshots(ws, cfg.name) if s.id == sid]
    if existing:
        return existing[0], True
    if spark is None:
        with spark_session(cfg, ws) as s:
            return _build(cfg, ws, s, sid, fps, key), False
    return _build(cfg, ws, spark, sid, fps, key), False


def _build(
    cfg: ProjectConfig,
    ws: Workspace,
    spark: SparkSession,
    sid: str,
    fps: dict[str, str],
    key: bytes,
) -> snap.Snapshot:
    from pyspark.sql import functions as F

    sources = {n: read_source(spark, cfg, n, ws.root, key) for n in fps}
    table = build_training_table(cfg, sources)
    lab_src = cfg.sources[cfg.label.source]
    assert lab_src.entity is not None
    ent, lt = cfg.entity_key(lab_src.entity), cfg.label.event_time
    tmp = snap.temp_dir(ws, cfg.name, sid)
    table = table.persist()
    try:
        # Checks first: nothing is written unless the table is leak-free and as expected.
        leakage = leakage_report(table, lt)
        results = run_expectations(cfg, table, ent, lt)
        report = ws.reports / f"validation-{sid}.json"
        atomic_write_text(
            report,
            json.dumps(
                {"snapshot_id": sid, "expectations": [asdict(r) for r in results]},
                indent=2,
                default=str,
            ),
        )
        raise_on_failures(results, str(report))
        visible = [c for c in table.columns if not c.startswith(FT_PREFIX)]
        table.select(*visible).orderBy(lt, ent).write.parquet(str(tmp))
        written = spark.read.parquet(str(tmp))
        row = written.agg(
            F.count(F.lit(1)).alias("rows"),
            F.min(lt).alias("t_min"),
            F.max(lt).alias("t_max"),
            # Order-independent content hash: sum of per-row 64-bit hashes.
            F.sum(F.xxhash64(*written.columns).cast("decimal(38,0)")).alias("h"),
        ).first()
        assert row is not None
        manifest = {
            "snapshot_id": sid,
            "project": cfg.name,
            "entity": ent,
            "label_time": lt,
            "label": cfg.label.column,
            "features": cfg.feature_names(),
            "views": {v.name: v.spec_hash() for v in cfg.features.views},
            "schema": [[f.name, f.dataType.simpleString()] for f in written.schema.fields],
            "rows": int(row["rows"]),
            "event_time_range": [str(row["t_min"]), str(row["t_max"])],
            "sources": {n: {"fingerprint": fp} for n, fp in fps.items()},
            "content_hash": format(int(row["h"] or 0) % (1 << 128), "032x"),
            "pii_hashed": list(cfg.pii),
            "leakage": leakage,
            "expectations": {"checked": len(results), "report": str(report)},
        }
        return snap.commit(tmp, manifest)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        table.unpersist()
