"""The raw store: where ``insight ingest`` lands a database source's rows, append-only.

Layout under the source's path (default ``{workspace}/raw/NAME``)::

    ingest_date=2026-12-05/ingest_run=000042/part-*.parquet   one folder per run
    .staging/run-000042/                                       a run being written

A run is written under ``.staging`` (hidden from every reader: Spark and the engine's own
readers skip names that begin with '.' or '_'), recorded in the ledger (the commit point),
then made visible by one ``rename`` of its folder. A crash before the ledger record leaves
only a staging folder, removed by the next run; a crash after it leaves a committed run
whose folder the next run moves into place. So a reader sees a run whole or not at all.

Each landed row carries ``_ingest_run`` (the run's number) and ``_row_hash`` (SHA-256 of
its values): a row whose hash is already the current version of its key is not landed
again, which makes re-runs over the same interval idempotent. Reading a source gives the
*current* rows: for a source with a key, each key's row from the latest run.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config.base import HasSources

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

ROW_HASH = "_row_hash"
RUN = "_ingest_run"
INTERNAL = (ROW_HASH, RUN)
PARTITION_COLUMNS = ("ingest_date", "ingest_run")
STAGING = ".staging"


def hidden(rel: Path) -> bool:
    return any(p.startswith((".", "_")) for p in rel.parts)


def data_files(path: Path, suffix: str = ".parquet") -> list[Path]:
    """The data files of a file or folder, as every reader sees them: hidden folders and
    files (Spark's '.'/'_' rule: staging, checksums, _SUCCESS) left out."""
    if not path.is_dir():
        return [path]
    return sorted(
        f
        for f in path.rglob(f"*{suffix}" if suffix else "*")
        if f.is_file() and not hidden(f.relative_to(path))
    )


def key_columns(cfg: HasSources, name: str) -> list[str]:
    """The columns that identify a row of a database source: ``ingest.key``; else, for a
    static source (no event time) of an entity, the entity's key; else none (rows are only
    ever added: an event table's entity key is not unique)."""
    src = cfg.sources[name]
    if src.ingest.key:
        return list(src.ingest.key)
    entity_key = getattr(cfg, "entity_key", None)
    if src.entity and src.event_time is None and callable(entity_key):
        return [str(entity_key(src.entity))]
    return []


def run_dir(path: Path, run: int, day: str) -> Path:
    return path / f"ingest_date={day}" / f"ingest_run={run:06d}"


def staging_dir(path: Path, run: int) -> Path:
    return path / STAGING / f"run-{run:06d}"


def publish(path: Path, run: int, day: str) -> bool:
    """Make a committed run visible: one rename of its staged folder. False when there was
    nothing staged (already published, or a run that landed no rows)."""
    staged = staging_dir(path, run)
    if not staged.is_dir():
        return False
    for junk in [*staged.glob("_*"), *staged.glob(".*")]:
        junk.unlink(missing_ok=True)
    dest = run_dir(path, run, day)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged.rename(dest)
    return True


def recover(path: Path, committed: dict[int, str]) -> dict[str, list[int]]:
    """After a crash: publish staged runs the ledger committed (``run -> ingest date``) and
    remove the ones it did not (their rows were never visible; the watermark did not move)."""
    out: dict[str, list[int]] = {"published": [], "removed": []}
    base = path / STAGING
    if not base.is_dir():
        return out
    for d in sorted(base.glob("run-*")):
        run = int(d.name.split("-", 1)[1])
        if run in committed:
            publish(path, run, committed[run])
            out["published"].append(run)
        else:
            shutil.rmtree(d, ignore_errors=True)
            out["removed"].append(run)
    return out


def current(df: DataFrame, keys: list[str], order: str | None = None) -> DataFrame:
    """The current rows of a raw store read by Spark: per key, the row of the latest run
    (then the greatest ``order`` column, then hash: a total order, so every read agrees);
    partition and bookkeeping columns dropped."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = df.drop(*[c for c in PARTITION_COLUMNS if c in df.columns])
    if keys and RUN in df.columns:
        by = [F.col(RUN).desc()] + ([F.col(order).desc_nulls_last()] if order else [])
        w = Window.partitionBy(*keys).orderBy(*by, F.col(ROW_HASH).desc())
        df = df.withColumn("__n", F.row_number().over(w)).where("__n = 1").drop("__n")
    return df.drop(*[c for c in INTERNAL if c in df.columns])


def current_arrow(table: pa.Table, keys: list[str], order: str | None = None) -> pa.Table:
    """:func:`current` for an Arrow table read in one process (same rows, same rule)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if keys and RUN in table.column_names:
        by = [(RUN, "descending")] + ([(order, "descending")] if order else [])
        idx = pc.sort_indices(table, sort_keys=[*by, (ROW_HASH, "descending")])
        t = table.take(idx)
        first = t.select(keys).append_column("__i", pa.array(range(t.num_rows)))
        keep = first.group_by(keys, use_threads=False).aggregate([("__i", "min")])
        rows = keep.column("__i_min").combine_chunks()
        table = t.take(pc.take(rows, pc.array_sort_indices(rows)))
    return table.drop_columns([c for c in INTERNAL if c in table.column_names])
