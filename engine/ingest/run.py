"""One ingestion run of a database source: pull what changed since the last run, check
it, land the good rows, quarantine the bad, record the run.

Order (what makes a re-run idempotent and a crash harmless):
1. take the source's lock; finish or remove what a crashed run left (engine.ingest.store);
2. compare the relation's columns with the project file (nothing is read or written on a
   mismatch);
3. pull rows with ``watermark >= last watermark - lookback`` (Spark JDBC, partitioned, or
   ADBC);
4. run the checks: a failing ``blocking`` check stops here (the run is recorded as
   blocked; nothing lands; the watermark stays);
5. drop rows that are already the current version of their key (by row hash);
6. write the new rows and the quarantine under ``.staging``;
7. append the ledger record (fsynced: the commit point), then publish by renames.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config.base import HasSources
from engine.config.monitor import seconds
from engine.config.source import SourceConfig
from engine.errors import ConfigError, DataError
from engine.ingest import db, ledger, store
from engine.ingest.checks import CheckResult, run_checks
from engine.ingest.lock import job_lock
from engine.workspace import Workspace

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass
class IngestRun:
    source: str
    run: int
    status: str  # landed | blocked | failed
    rows_read: int = 0
    rows_landed: int = 0
    rows_already_landed: int = 0
    rows_quarantined: int = 0
    watermark_before: dict[str, Any] | None = None
    watermark_after: dict[str, Any] | None = None
    reader: str = ""
    partitions: int = 1
    seconds: float = 0.0
    checks: list[CheckResult] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    recovered: dict[str, list[int]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.rows_landed > 0

    def summary(self) -> str:
        wm = (self.watermark_after or {}).get("value", "-")
        return (
            f"{self.source}: run {self.run} {self.status}: {self.rows_read:,} read, "
            f"{self.rows_landed:,} landed, {self.rows_already_landed:,} already landed, "
            f"{self.rows_quarantined:,} quarantined; watermark {wm} ({self.reader}, "
            f"{self.partitions} partition(s), {self.seconds:.1f} s)"
        )


def database_sources(cfg: HasSources) -> list[str]:
    return [n for n, s in cfg.sources.items() if s.is_database]


def choose_reader(src: SourceConfig, spark_master: str) -> str:
    want = src.database.reader if src.database else "spark"
    if want != "auto":
        return want
    return "adbc" if src.kind == "postgres" and spark_master.startswith("local") else "spark"


def reach(cfg: HasSources, name: str, ws: Workspace) -> None:
    """Connect once over ADBC and read the relation's columns (no rows): a database that
    is down, or refuses the credentials, is reported in a second, and recorded in the
    ledger as a failed run (the watermark unchanged)."""
    src = cfg.sources[name]
    try:
        db.probe_columns(None, name, src)
    except (ConfigError, DataError) as exc:
        book = ledger.Ledger(ws)
        try:
            book.append(
                {
                    "source": name,
                    "run": ledger.next_run(ws, name),
                    "status": "failed",
                    "relation": db.base_relation(src),
                    "reader": "adbc",
                    "watermark_before": ledger.last_watermark(ws, name),
                    "watermark_after": ledger.last_watermark(ws, name),
                    "rows_read": 0,
                    "rows_landed": 0,
                    "error": str(exc)[:500],
                }
            )
        finally:
            book.close()
        raise


def _needed_columns(cfg: HasSources, name: str) -> set[str]:
    src = cfg.sources[name]
    need = set(src.columns) | set(store.key_columns(cfg, name))
    need |= {c for c in (src.event_time, src.ingest.watermark) if c}
    need |= {c.column for c in src.checks if c.column}
    return need


def check_columns(cfg: HasSources, name: str, found: dict[str, str]) -> None:
    """The relation's columns against the project file, before anything is read: a column
    the file needs that the relation lacks, or (when the file declares its columns) a
    column it returns that the file does not declare, is named."""
    src = cfg.sources[name]
    back = {new: old for old, new in src.rename.items()}
    have = {src.rename.get(c, c) for c in found}
    missing = sorted(c for c in _needed_columns(cfg, name) if c not in have)
    extra = sorted(c for c in have if src.columns and c not in src.columns)
    extra = [c for c in extra if c not in _needed_columns(cfg, name)]
    problems = []
    if missing:
        problems.append(
            f"it does not return {', '.join(repr(back.get(c, c)) for c in missing)}, which "
            "the project file needs"
        )
    if extra:
        problems.append(
            f"it returns {', '.join(repr(back.get(c, c)) for c in extra)}, which the project "
            f"file does not declare (declared: {', '.join(src.columns)})"
        )
    if problems:
        raise DataError(
            f"source '{name}' ({db.base_relation(src)}): {'; and '.join(problems)}. Nothing "
            f"was read or written. Fix: change the table or query, or declare the columns "
            f"under sources.{name}.columns."
        )


def _since(src: SourceConfig, prev: dict[str, Any] | None) -> db.Watermark | None:
    if prev is None or src.ingest.watermark is None:
        return None
    value, kind = str(prev["value"]), str(prev["kind"])
    back = seconds(src.ingest.lookback)
    if kind != "number" and back:
        t = dt.datetime.fromisoformat(value) - dt.timedelta(seconds=back)
        value = t.isoformat(sep=" ")
    return db.Watermark(src.ingest.watermark, value, kind)


def _watermark_kind(df: DataFrame, col: str) -> str:
    from pyspark.sql import types as T

    t = df.schema[col].dataType
    if isinstance(t, T.TimestampType):
        return "timestamptz"
    if isinstance(t, T.TimestampNTZType | T.DateType):
        return "timestamp"
    if isinstance(t, T.NumericType):
        return "number"
    raise ConfigError(
        f"watermark column '{col}' is {t.simpleString()}: a watermark is a time or a number "
        "that grows when a row is added or changed. Fix: name such a column in ingest.watermark."
    )


def with_row_hash(df: DataFrame) -> DataFrame:
    """``_row_hash``: SHA-256 over every value (as text, nulls marked), the same for the
    same row from either reader."""
    from pyspark.sql import functions as F

    vals = [F.coalesce(F.col(f"`{c}`").cast("string"), F.lit("\u0000")) for c in df.columns]
    return df.withColumn(store.ROW_HASH, F.sha2(F.concat_ws("\u001f", *vals), 256))


def _existing_hashes(
    spark: SparkSession, path: Path, keys: list[str], pulled: DataFrame, rows: int
) -> DataFrame | None:
    """Row hashes already current in the raw store for the rows just pulled: per key the
    latest version (a row equal to it is not landed again); without a key, landed rows
    with the same hash. Only the store's rows whose key (or hash) was pulled are ranked: a
    1% incremental run sorts 1% of the store, not all of it."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not path.is_dir() or not store.data_files(path):
        return None
    landed = spark.read.parquet(*[str(f) for f in store.data_files(path)])
    on = keys or [store.ROW_HASH]
    wanted = pulled.select(*on).distinct()
    if rows <= 2_000_000:  # an incremental pull: sent to every task, the store not shuffled
        wanted = F.broadcast(wanted)
    landed = landed.select(*dict.fromkeys([*on, store.RUN, store.ROW_HASH])).join(
        wanted, on, "left_semi"
    )
    if keys:
        w = Window.partitionBy(*keys).orderBy(F.col(store.RUN).desc(), F.col(store.ROW_HASH).desc())
        landed = landed.withColumn("__n", F.row_number().over(w)).where("__n = 1")
    return landed.select(store.ROW_HASH).distinct()


def _write_staged(df: DataFrame, target: Path, run: int, rows_per_file: int) -> list[Path]:
    from pyspark.sql import functions as F

    staged = store.staging_dir(target, run)
    n = int(df.count())
    if n == 0:
        return []
    df = df.withColumn(store.RUN, F.lit(run).cast("bigint")) if store.RUN not in df.columns else df
    df.coalesce(max(1, -(-n // rows_per_file))).write.mode("overwrite").parquet(str(staged))
    return store.data_files(staged)


def ingest_source(
    cfg: HasSources,
    name: str,
    ws: Workspace,
    spark: SparkSession,
    *,
    spark_master: str = "local[2]",
    reader: str | None = None,
    now: dt.datetime | None = None,
    base_dir: Path | None = None,
) -> IngestRun:
    """Run one ingestion of source ``name`` (see the module's docstring)."""
    src = cfg.sources[name]
    if not src.is_database:
        raise ConfigError(
            f"source '{name}' is a file ({src.path}); `insight ingest` pulls database sources "
            f"(kind: postgres or jdbc). Database sources here: {', '.join(database_sources(cfg)) or 'none'}."
        )
    with job_lock(ws.root, f"ingest-{name}"):
        return _ingest_locked(
            cfg, name, ws, spark, spark_master, reader, now or dt.datetime.now(dt.UTC), base_dir
        )


def _ingest_locked(
    cfg: HasSources,
    name: str,
    ws: Workspace,
    spark: SparkSession,
    spark_master: str,
    reader: str | None,
    now: dt.datetime,
    base_dir: Path | None,
) -> IngestRun:
    from pyspark.sql import functions as F

    t0 = time.monotonic()
    src = cfg.sources[name]
    path = cfg.resolve_path(src.path, ws.root)
    quarantine_path = ws.root / "quarantine" / name
    done = {int(r["run"]): str(r["ingest_date"]) for r in ledger.landed_runs(ws, name)}
    out = IngestRun(name, ledger.next_run(ws, name), "failed")
    out.recovered = store.recover(path, done)
    store.recover(quarantine_path, done)
    out.reader = reader or choose_reader(src, spark_master)
    out.watermark_before = ledger.last_watermark(ws, name)
    since = _since(src, out.watermark_before)
    sql = db.pulled_sql(src, since)
    keys = store.key_columns(cfg, name)
    book = ledger.Ledger(ws)
    day = now.strftime("%Y-%m-%d")
    base: dict[str, Any] = {
        "source": name,
        "run": out.run,
        "ingest_date": day,
        "started": now.isoformat(),
        "relation": db.base_relation(src),
        "since": since.sql() if since else None,
        "reader": out.reader,
        "watermark_before": out.watermark_before,
    }
    try:
        try:
            found = db.probe_columns(spark if out.reader == "spark" else None, name, src)
        except (ConfigError, DataError):
            raise
        except Exception as exc:
            raise db.explain_db_error(name, src, exc) from None
        check_columns(cfg, name, found)
        pulled = _pull(spark, name, src, sql, out, keys)
        pulled = pulled.withColumnsRenamed(src.rename) if src.rename else pulled
        pulled = with_row_hash(pulled).persist()
        try:
            out.rows_read = int(pulled.count())
        except Exception as exc:
            raise db.explain_db_error(name, src, exc) from None
        wm_after = _watermark_after(pulled, src, out.watermark_before)
        out.watermark_after = wm_after
        checked = run_checks(
            spark,
            pulled.drop(store.ROW_HASH),
            src.checks,
            source=name,
            base_dir=base_dir or Path("."),
            history=[int(r["rows_read"]) for r in ledger.landed_runs(ws, name)],
            newest=_newest(wm_after),
            now=now.replace(tzinfo=None),
        )
        out.checks = checked.results
        if checked.blocked:
            out.status = "blocked"
            book.append({**base, **_record(out), "watermark_after": out.watermark_before})
            b = checked.blocked[0]
            raise DataError(
                f"source '{name}': blocking check {b.name} failed"
                f" ({b.failed:,} row(s)" + (f"; {b.detail}" if b.detail else "") + "). Nothing "
                f"was landed and the watermark is unchanged (run {out.run} is recorded as "
                "blocked). Fix: correct the data in the source, or make the check "
                "non-blocking to quarantine the failing rows instead."
            )
        good = with_row_hash(checked.good)
        existing = _existing_hashes(spark, path, keys, good, out.rows_read)
        new = good.dropDuplicates([store.ROW_HASH])
        if existing is not None:
            new = new.join(existing, store.ROW_HASH, "left_anti").select(*good.columns)
        files = _write_staged(new, path, out.run, 2_000_000)
        q_files = []
        if checked.quarantine is not None:
            q = checked.quarantine.withColumn("ingest_run", F.lit(out.run).cast("bigint"))
            q_files = _write_staged(q, quarantine_path, out.run, 2_000_000)
        import pyarrow.parquet as pq

        out.rows_landed = sum(pq.read_metadata(f).num_rows for f in files)
        out.rows_quarantined = sum(pq.read_metadata(f).num_rows for f in q_files)
        out.rows_already_landed = out.rows_read - out.rows_landed - _failed_rows(checked)
        out.status = "landed"
        rel = store.run_dir(path, out.run, day)
        qrel = store.run_dir(quarantine_path, out.run, day)
        out.files = [str((rel / f.name).relative_to(ws.root)) for f in files]
        out.seconds = time.monotonic() - t0
        book.append(
            {
                **base,
                **_record(out),
                "files": [
                    {
                        "path": p,
                        "sha256": ledger.file_sha256(f),
                        "rows": pq.read_metadata(f).num_rows,
                    }
                    for p, f in zip(out.files, files, strict=True)
                ],
                "quarantine_files": [str((qrel / f.name).relative_to(ws.root)) for f in q_files],
            }
        )
        store.publish(path, out.run, day)
        store.publish(quarantine_path, out.run, day)
        return out
    except (ConfigError, DataError) as exc:
        if out.status == "failed":
            out.seconds = time.monotonic() - t0
            book.append(
                {
                    **base,
                    **_record(out),
                    "watermark_after": out.watermark_before,
                    "error": str(exc)[:500],
                }
            )
            shutil_rm(store.staging_dir(path, out.run))
            shutil_rm(store.staging_dir(quarantine_path, out.run))
        raise
    finally:
        book.close()


def shutil_rm(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)


def _failed_rows(checked: Any) -> int:
    if checked.quarantine is None:
        return 0
    from pyspark.sql import functions as F

    # a row failing two checks is quarantined twice but read once
    row = checked.quarantine.agg(F.countDistinct("row").alias("n")).first()
    return int(row["n"]) if row else 0


def _pull(
    spark: SparkSession, name: str, src: SourceConfig, sql: str, out: IngestRun, keys: list[str]
) -> DataFrame:
    try:
        if out.reader == "adbc":
            return db.adbc_frame(spark, name, src, sql)
        part_col = (src.database.partition_column if src.database else None) or _default_part(
            src, keys
        )
        df, part = db.jdbc_frame(spark, name, src, sql, part_col)
        out.partitions = part.partitions if part else 1
        return df
    except (ConfigError, DataError):
        raise
    except Exception as exc:
        raise db.explain_db_error(name, src, exc) from None


def _default_part(src: SourceConfig, keys: list[str]) -> str | None:
    for k in keys:
        if src.columns.get(k) == "int":
            return k
    return None


def _watermark_after(
    df: DataFrame, src: SourceConfig, before: dict[str, Any] | None
) -> dict[str, Any] | None:
    from pyspark.sql import functions as F

    col = src.ingest.watermark
    if col is None:
        return None
    kind = _watermark_kind(df, col)
    row = df.agg(F.max(F.col(f"`{col}`")).cast("string").alias("m")).first()
    value = row["m"] if row else None
    if value is None:
        return before
    if before is not None and kind != "number" and str(before["value"]) > str(value):
        return before  # a lookback re-read only older rows
    if before is not None and kind == "number" and float(before["value"]) > float(value):
        return before
    return {"column": col, "value": str(value), "kind": kind}


def _newest(wm: dict[str, Any] | None) -> dt.datetime | None:
    if wm is None or wm["kind"] == "number":
        return None
    return dt.datetime.fromisoformat(str(wm["value"])).replace(tzinfo=None)


def _record(out: IngestRun) -> dict[str, Any]:
    return {
        "status": out.status,
        "rows_read": out.rows_read,
        "rows_landed": out.rows_landed,
        "rows_already_landed": out.rows_already_landed,
        "rows_quarantined": out.rows_quarantined,
        "watermark_after": out.watermark_after,
        "partitions": out.partitions,
        "seconds": round(out.seconds, 3),
        "checks": [
            {"check": c.name, "blocking": c.blocking, "failed": c.failed, "detail": c.detail}
            for c in out.checks
        ],
    }
