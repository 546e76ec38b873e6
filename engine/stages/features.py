"""Stage: check the sources, build the point-in-time training table on Spark, validate it
(leakage guard, expectations) and commit an immutable snapshot. A snapshot whose id (spec
and source bytes) already exists is reused without starting Spark."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING

from engine.config.project import ProjectConfig
from engine.data.labels import LabelValues, read_label_values
from engine.data.sources import (
    check_sources,
    fingerprint,
    read_source,
    source_path,
    source_quality,
)
from engine.errors import DataError
from engine.features import snapshot as snap
from engine.features.build import (
    AS_OF_T,
    FT_PREFIX,
    build_training_table,
    label_rows,
    label_time_column,
)
from engine.features.checks import leakage_report, raise_on_failures, run_expectations
from engine.features.spark import spark_session
from engine.ingest.ledger import ingested
from engine.pii import key_fingerprint, load_key
from engine.workspace import Workspace, atomic_write_text

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def used_sources(cfg: ProjectConfig) -> list[str]:
    names = [cfg.label.source] + [v.source for v in cfg.features.views]
    return list(dict.fromkeys(names))


def plan_snapshot(
    cfg: ProjectConfig, ws: Workspace
) -> tuple[str, dict[str, str], bytes, LabelValues]:
    """Check the sources and the label's values and compute the snapshot id, without
    starting Spark."""
    names = used_sources(cfg)
    check_sources(cfg, ws.root, names)
    labels = read_label_values(cfg, ws.root)
    key = load_key(ws.root)
    fps = {n: fingerprint(source_path(cfg, n, ws.root)) for n in names}
    return snap.snapshot_id(cfg, fps, key_fingerprint(key)), fps, key, labels


def stage_features(
    cfg: ProjectConfig, ws: Workspace, spark: SparkSession | None = None
) -> tuple[snap.Snapshot, bool]:
    """Build (or reuse) the snapshot for the current sources and spec.

    Returns the snapshot and whether it already existed (then Spark is not started).
    The governance policy decides first whether the build may read the sources.
    """
    from engine.governance.enforce import check_snapshot

    check_snapshot(cfg, ws)
    sid, fps, key, labels = plan_snapshot(cfg, ws)
    existing = [s for s in snap.list_snapshots(ws, cfg.name) if s.id == sid]
    if existing:
        return existing[0], True
    if spark is None:
        with spark_session(cfg, ws) as s:
            return _build_or_explain(cfg, ws, s, sid, fps, key, labels), False
    return _build_or_explain(cfg, ws, spark, sid, fps, key, labels), False


def check_features(
    cfg: ProjectConfig, ws: Workspace, spark: SparkSession | None = None, rows: int = 1000
) -> dict[str, object]:
    """The features stage on a sample, writing nothing (a job's ``--smoke``): the sources
    are read on Spark, the first ``rows`` label rows get every view's features point in
    time, and the leakage guard and the views' expectations run on them, as in a build."""
    sid, fps, key, labels = plan_snapshot(cfg, ws)
    if spark is None:
        with spark_session(cfg, ws) as s:
            return check_features(cfg, ws, s, rows)
    with _spark_errors(cfg):
        sources = {n: read_source(spark, cfg, n, ws.root, key) for n in fps}
        table = build_training_table(
            cfg, sources, labels.positive, labels.negative, sample_labels=rows
        ).persist()
        try:
            lt = label_time_column(cfg)
            lab_src = cfg.sources[cfg.label.source]
            assert lab_src.entity is not None
            leakage = leakage_report(table, lt) if lt is not None else {}
            results = run_expectations(cfg, table, cfg.entity_key(lab_src.entity), lt)
            raise_on_failures(results, "(smoke run: no report written)")
            n = table.count()
        finally:
            table.unpersist()
    return {
        "snapshot_id": sid,
        "sampled_rows": n,
        "features": cfg.feature_names(),
        "leakage_checked": sorted(leakage),
        "expectations_passed": len(results),
        "written": False,
    }


def _untimed_labels(cfg: ProjectConfig, label_rows: DataFrame) -> int:
    """Label rows whose time could not be read: dropped and counted; all of them is an
    error (a snapshot without times would split and join on nothing)."""
    from pyspark.sql import functions as F

    t = cfg.label.event_time
    if t is None:
        return 0
    row = label_rows.agg(F.count(F.lit(1)).alias("n"), F.count(t).alias("timed")).first()
    assert row is not None
    n, timed = int(row["n"]), int(row["timed"])
    if n and not timed:
        src = cfg.sources[cfg.label.source]
        if t in src.time_formats:
            raise DataError(
                f"label time '{t}' could not be read in any of the {n:,} label rows of "
                f"source '{cfg.label.source}' ({src.path}) as its declared format "
                f"'{src.time_formats[t]}'. Fix: set sources.{cfg.label.source}.time_formats."
                f"{t} to the format the file has (letters yyyy MM dd HH mm ss), or remove it "
                "and run `insight init --force` to detect it."
            )
        raise DataError(
            f"label time '{t}' could not be read in any of the {n:,} label rows of source "
            f"'{cfg.label.source}' ({src.path}). Fix: if the file writes it as text other "
            f"than ISO dates (2026-06-01), declare its format: sources.{cfg.label.source}."
            f"time_formats: {{{t}: 'dd/MM/yyyy'}} (or the format it has); `insight init` "
            "detects it."
        )
    return n - timed


def _one_row_per_label(
    cfg: ProjectConfig,
    sources: dict[str, DataFrame],
    labels: DataFrame,
    n_labels: int,
    n_rows: int,
    key: str,
    lt: str | None,
) -> None:
    """The training table has exactly the label rows it was given, or a DataError names the
    key that repeats (the checks before the build read the file; a cast can still make two
    keys one, e.g. '01' and '1' read as the number 1)."""
    from engine.data.keys import largest_group

    if n_rows == n_labels:
        return
    where = []
    on = [key] if lt is None else [key, lt]
    hit = largest_group(labels, on)
    if hit is not None:
        at = ", ".join(f"{k}={v}" for k, v in hit[0].items())
        where.append(f"label rows of source '{cfg.label.source}' repeat {on} ({at}: {hit[1]} rows)")
    for view in cfg.features.views:
        if cfg.sources[view.source].event_time is None:
            hit = largest_group(sources[view.source], [key])
            if hit is not None:
                at = ", ".join(f"{k}={v}" for k, v in hit[0].items())
                where.append(
                    f"view '{view.name}' joins source '{view.source}' on '{key}', which "
                    f"repeats ({at}: {hit[1]} rows)"
                )
    raise DataError(
        f"the training table of '{cfg.name}' has {n_rows:,} rows for {n_labels:,} label rows: "
        f"{'; '.join(where) or 'a join multiplied rows'}. Nothing was written. Fix: keep one "
        f"row per '{key}' in a table without event time (after the declared types are "
        "applied: a number column reads '01' and '1' as one value), or declare the key as "
        "text."
    )


def _build_or_explain(
    cfg: ProjectConfig,
    ws: Workspace,
    spark: SparkSession,
    sid: str,
    fps: dict[str, str],
    key: bytes,
    labels: LabelValues,
) -> snap.Snapshot:
    """The build, with a Spark analysis error turned into one clear message."""
    with _spark_errors(cfg):
        return _build(cfg, ws, spark, sid, fps, key, labels)


@contextlib.contextmanager
def _spark_errors(cfg: ProjectConfig) -> Iterator[None]:
    """A Spark error as one DataError with a fix, its text read while the session is alive
    (after it stops, the error's text can no longer be read)."""
    from pyspark.errors import PySparkException

    try:
        yield
    except PySparkException as exc:
        text = str(exc).strip().splitlines()[0][:600]
        raise DataError(
            f"Spark could not build the feature table of '{cfg.name}': {text}. Fix: check the "
            "column names and SQL expressions of the feature views (derived, expr, filter) "
            "against the sources; `insight validate` checks the columns without Spark."
        ) from None


def _build(
    cfg: ProjectConfig,
    ws: Workspace,
    spark: SparkSession,
    sid: str,
    fps: dict[str, str],
    key: bytes,
    labels: LabelValues,
) -> snap.Snapshot:
    from pyspark.sql import functions as F

    sources = {n: read_source(spark, cfg, n, ws.root, key) for n in fps}
    quality = {n: q for n in fps if (q := source_quality(spark, cfg, n, ws.root))}
    untimed = _untimed_labels(cfg, sources[cfg.label.source])
    lab_rows = label_rows(cfg, sources, labels.positive, labels.negative)
    table = build_training_table(cfg, sources, labels=lab_rows)
    lab_src = cfg.sources[cfg.label.source]
    assert lab_src.entity is not None
    ent, lt = cfg.entity_key(lab_src.entity), label_time_column(cfg)
    tmp = snap.temp_dir(ws, cfg.name, sid)
    table = table.persist()
    try:
        n_labels = lab_rows.count()
        _one_row_per_label(cfg, sources, lab_rows, n_labels, table.count(), ent, lt)
        # Checks first: nothing is written unless the table is leak-free and as expected.
        leakage = leakage_report(table, lt) if lt is not None else {}
        results = run_expectations(cfg, table, ent, lt)
        report = ws.reports / f"validation-{sid}.json"
        label_info = {
            "column": labels.column,
            "positive": labels.positive,
            "negative": labels.negative,
            "values": labels.counts,
            "rows_without_label_dropped": labels.missing,
            "rows_without_time_dropped": untimed,
            "positive_rate": labels.positive_rate,
        }
        atomic_write_text(
            report,
            json.dumps(
                {
                    "snapshot_id": sid,
                    "expectations": [asdict(r) for r in results],
                    "label": label_info,
                    "unparsed_cells": quality,
                },
                indent=2,
                default=str,
            ),
        )
        raise_on_failures(results, str(report))
        visible = [c for c in table.columns if not c.startswith(FT_PREFIX) and c != AS_OF_T]
        data = tmp / snap.DATA_DIR
        table.select(*visible).orderBy(*([lt] if lt in visible else []), ent).write.parquet(
            str(data)
        )
        written = spark.read.parquet(str(data))
        stored_lt = cfg.label.event_time
        time_aggs = (
            [F.min(stored_lt).alias("t_min"), F.max(stored_lt).alias("t_max")]
            if stored_lt
            else [F.lit(None).alias("t_min"), F.lit(None).alias("t_max")]
        )
        row = written.agg(
            F.count(F.lit(1)).alias("rows"),
            *time_aggs,
            # Order-independent content hash: sum of per-row 64-bit hashes.
            F.sum(F.xxhash64(*written.columns).cast("decimal(38,0)")).alias("h"),
        ).first()
        assert row is not None
        manifest = {
            "snapshot_id": sid,
            "project": cfg.name,
            "entity": ent,
            "label_time": stored_lt,
            "label_as_of": str(cfg.label.as_of) if cfg.label.as_of else None,
            "label": cfg.label.column,
            "labels": label_info,
            "features": cfg.feature_names(),
            "views": {v.name: v.spec_hash() for v in cfg.features.views},
            "schema": [[f.name, f.dataType.simpleString()] for f in written.schema.fields],
            "rows": int(row["rows"]),
            # the build's own check: the table has exactly the label rows it was given
            "label_rows": n_labels,
            "one_row_per_label_row": int(row["rows"]) == n_labels,
            "event_time_range": [str(row["t_min"]), str(row["t_max"])] if stored_lt else None,
            "sources": {n: {"fingerprint": fp, **ingested(ws, cfg, n)} for n, fp in fps.items()},
            "unparsed_cells": quality,
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
