"""Checking and reading the project's tables.

Checks run on file metadata (pyarrow) before any Spark session starts: a missing file or a
column of the wrong type is reported with the source, the column, what was found and a fix.

CSV files are read with the declared column types: every cell is read as text and cast
with ``try_cast``, so a blank or a word in a number column becomes null instead of failing
the read (or turning the whole column into text, as type inference does); how many cells
were blank or not numbers is counted per column (:func:`source_quality`) and lands in the
validation report and the snapshot manifest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.config.base import HasSources
from engine.config.project import ProjectConfig, SourceConfig
from engine.data.csvfile import Dialect
from engine.errors import DataError
from engine.ingest.store import INTERNAL, data_files, key_columns
from engine.timeformat import to_spark

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

_ACCEPT = {
    "int": (pa.types.is_integer,),
    "double": (pa.types.is_floating, pa.types.is_integer, pa.types.is_decimal),
    "string": (pa.types.is_string, pa.types.is_large_string),
    "timestamp": (pa.types.is_timestamp, pa.types.is_date),
    "bool": (pa.types.is_boolean,),
}


def source_path(cfg: HasSources, name: str, workspace: Path) -> Path:
    return cfg.resolve_path(cfg.sources[name].path, workspace)


def read_schema(src: SourceConfig, path: Path) -> pa.Schema:
    if src.format == "parquet":
        if path.is_dir():
            files = data_files(path)
            if not files:
                raise DataError(f"'{path}' is a folder with no .parquet files.")
            schema = pq.read_schema(files[0])
        else:
            schema = pq.read_schema(path)
        if src.is_database:  # the raw store's bookkeeping columns are not the source's
            schema = pa.schema([f for f in schema if f.name not in INTERNAL])
        return schema
    with pacsv.open_csv(path, **csv_options(src)) as reader:
        return reader.schema


def _other(src: SourceConfig) -> str:
    return "csv" if src.format == "parquet" else "parquet"


def _wrong_format(src: SourceConfig, path: Path) -> str | None:
    """What is wrong when a file's bytes are not its declared format, else None: a Parquet
    file begins and ends with 'PAR1'; a CSV file does not."""
    f = path
    if path.is_dir():
        files = data_files(path) or data_files(path, "")
        if not files:
            return None
        f = files[0]
    try:
        with f.open("rb") as fh:
            head = fh.read(64)
    except OSError:
        return None
    is_parquet = head[:4] == b"PAR1"
    if src.format == "parquet" and not is_parquet:
        start = head.decode("utf-8", "replace").splitlines()[0][:40] if head else ""
        return (
            f"'{f.name}' is read as Parquet (format: {src.format}), but it is not a Parquet "
            f"file (it begins {start!r}, like a CSV file)."
        )
    if src.format == "csv" and is_parquet:
        return f"'{f.name}' is declared format: csv, but it is a Parquet file."
    return None


def csv_options(src: SourceConfig) -> dict[str, Any]:
    """pyarrow's reader options for the source's CSV dialect (separator and encoding)."""
    return Dialect.of(src).arrow_options()


def check_sources(cfg: ProjectConfig, workspace: Path, names: list[str] | None = None) -> None:
    """Raise DataError naming every problem in the declared sources (no Spark): files,
    formats, columns and their types, the views' columns, then keys that must be unique."""
    problems: list[str] = []
    for name in names or list(cfg.sources):
        problems += _check_source(cfg, name, workspace)
    if not problems:
        from engine.data.keys import duplicate_keys

        problems += duplicate_keys(cfg, workspace, names or list(cfg.sources))
    if problems:
        raise DataError("\n".join(problems))


def _open_schema(
    cfg: ProjectConfig, name: str, workspace: Path
) -> tuple[Path, pa.Schema | None, str | None]:
    """The source's file and schema, or the problem that stops reading it."""
    src = cfg.sources[name]
    path = source_path(cfg, name, workspace)
    if src.is_database and not (path.is_dir() and data_files(path)):
        return (
            path,
            None,
            f"source '{name}' ({src.kind}) has not been ingested yet: its raw store '{path}' "
            f"holds no rows. Fix: run `insight ingest {name}` first.",
        )
    if not path.exists():
        hint = (
            "run `insight data generate` first"
            if cfg.sample and "{workspace}" in src.path
            else "fix sources." + name + ".path"
        )
        return path, None, f"source '{name}': file '{path}' does not exist. Fix: {hint}."
    wrong = _wrong_format(src, path)
    if wrong:
        return (
            path,
            None,
            f"source '{name}': {wrong} Fix: set sources.{name}.format: {_other(src)}.",
        )
    try:
        return path, read_schema(src, path), None
    except (pa.ArrowInvalid, OSError) as exc:
        return (
            path,
            None,
            (
                f"source '{name}': '{path.name}' could not be read as {src.format}: "
                f"{str(exc).splitlines()[0][:300]}. Fix: check the file, or sources.{name}.format."
            ),
        )


def _check_source(cfg: ProjectConfig, name: str, workspace: Path) -> list[str]:
    src = cfg.sources[name]
    path, schema, stop = _open_schema(cfg, name, workspace)
    if schema is None:
        return [stop or f"source '{name}': unreadable"]
    problems: list[str] = []
    fields = {src.rename.get(f.name, f.name): f.type for f in schema}
    # a database source lands under the project's names (engine.ingest.run renames)
    gone = [] if src.is_database else sorted(set(src.rename) - {f.name for f in schema})
    if gone:
        problems.append(
            f"source '{name}': rename names column(s) {gone} that '{path.name}' does not "
            f"have (columns: {', '.join(f.name for f in schema)}). Fix: correct "
            f"sources.{name}.rename."
        )
    if src.row_id is not None:
        if src.row_id in fields:
            return [
                *problems,
                f"source '{name}': row_id '{src.row_id}' is already a column of "
                f"'{path.name}'. Fix: use that column as the key, or another row_id name.",
            ]
        fields[src.row_id] = pa.string()
    problems += _check_types(cfg, name, fields, path)
    return problems + _check_views(cfg, name, fields, path)


def _check_types(
    cfg: ProjectConfig, name: str, fields: dict[str, pa.DataType], path: Path
) -> list[str]:
    """Declared, event-time and key columns exist with a usable type."""
    src = cfg.sources[name]
    needed = dict(src.columns)
    if src.event_time and src.event_time not in needed:
        needed[src.event_time] = "timestamp"
    if src.entity:
        key = cfg.entity_key(src.entity)
        if key != src.row_id:
            needed.setdefault(key, "int")
    out = []
    for col, want in needed.items():
        if src.format == "csv" and col in fields and col in src.columns:
            continue  # a CSV cell is cast to its declared type; failures are counted
        if col not in fields:
            out.append(
                f"source '{name}': column '{col}' is missing from '{path.name}' "
                f"(found: {', '.join(fields)}). Fix: add it or correct sources.{name}."
            )
        elif not any(check(_base(fields[col])) for check in _ACCEPT[want]):
            out.append(
                f"source '{name}': column '{col}' is {fields[col]} in '{path.name}', "
                f"expected {want}. Fix: {_declare_as(col, fields[col])}."
            )
    return out


def _check_views(
    cfg: ProjectConfig, name: str, fields: dict[str, pa.DataType], path: Path
) -> list[str]:
    """Columns each view reads from this source exist and have a usable type."""
    out = []
    for i, view in enumerate(cfg.features.views):
        if view.source != name:
            continue
        for col, role in view.source_columns().items():
            where = f"feature view '{view.name}' (features.views.{i})"
            if col not in fields:
                out.append(
                    f"{where}: column '{col}' is not in source '{name}' ({path.name}; columns: "
                    f"{', '.join(fields)}). Fix: correct the column name in the view."
                )
                continue
            t = fields[col]
            numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
            if role == "numeric" and not numeric:
                out.append(
                    f"{where}: column '{col}' is {t} in source '{name}', but sum/mean need a "
                    f"number. Fix: cast it in the source, or use count/count_distinct."
                )
            if role == "orderable" and not (
                numeric or pa.types.is_timestamp(t) or pa.types.is_string(t)
            ):
                out.append(f"{where}: column '{col}' is {t}; min/max need numbers, text or times.")
    return out


def _base(t: pa.DataType) -> pa.DataType:
    """A dictionary-encoded column (pandas' ``category``) is its values' type to Spark."""
    return t.value_type if pa.types.is_dictionary(t) else t


def _declare_as(col: str, t: pa.DataType) -> str:
    base = _base(t)
    for name, checks in _ACCEPT.items():
        if name != "double" and any(c(base) for c in checks):
            return f"cast it in the source or declare `{col}: {name}`"
    if pa.types.is_floating(base):
        return f"cast it in the source or declare `{col}: double`"
    return f"cast it in the source to a number, text, a time or a boolean ({t} is none)"


def _nanos(src: SourceConfig, path: Path) -> dict[str, bool]:
    """Parquet columns stored as nanosecond timestamps (pandas' default), by the project's
    name: whether each is naive (no time zone)."""
    if src.format != "parquet":
        return {}
    out = {}
    for f in read_schema(src, path):
        if pa.types.is_timestamp(f.type) and f.type.unit == "ns":
            out[src.rename.get(f.name, f.name)] = f.type.tz is None
    return out


def fingerprint(path: Path) -> str:
    """Content hash of a file or folder of files (sha256 over names and bytes)."""
    h = hashlib.sha256()
    for f in data_files(path, ""):
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


_SPARK_TYPES = {
    "int": "bigint",
    "double": "double",
    "string": "string",
    "timestamp": "timestamp_ntz",
    "bool": "boolean",
}


def _typed(src: SourceConfig, col: str, kind: str) -> str:
    """The SQL that reads a CSV cell as its declared type (null where it does not parse):
    a timestamp with a declared format by that format, anything else by a cast."""
    fmt = src.time_formats.get(col)
    if kind == "timestamp" and fmt:
        return f"CAST(try_to_timestamp(trim(`{col}`), '{to_spark(fmt)}') AS timestamp_ntz)"
    cell = f"trim(`{col}`)"
    if src.decimal == "," and kind in ("int", "double"):
        # ',' is the decimal mark; a '.' (a thousands separator in such files) is not read
        cell = f"translate({cell}, ',.', '.x')"
    return f"try_cast({cell} AS {_SPARK_TYPES[kind]})"


def _raw(spark: SparkSession, cfg: HasSources, name: str, path: str) -> DataFrame:
    """The file as Spark reads it, columns renamed as the source says. Nanosecond timestamps
    (read as longs, see engine.features.spark) become times, truncated to microseconds."""
    from pyspark.sql import functions as F

    src = cfg.sources[name]
    if src.is_database:
        from engine.ingest.store import current

        # landed under the project's names: engine.ingest.run applied the renames
        return current(spark.read.parquet(path), key_columns(cfg, name), src.ingest.watermark)
    if src.format == "parquet":
        df = spark.read.parquet(path)
        nanos = _nanos(src, Path(path))
        df = df.withColumnsRenamed(src.rename) if src.rename else df
        for col, naive in nanos.items():
            # integer floor division: a double would round away the last microseconds
            t = F.expr(f"timestamp_micros((`{col}` - pmod(`{col}`, 1000)) div 1000)")
            df = df.withColumn(col, t.cast("timestamp_ntz") if naive else t)
        return df
    reader = (
        spark.read.option("header", True)
        .option("sep", src.delimiter)
        .option("encoding", src.encoding)
    )
    # declared columns: every cell as text, typed by try_cast in read_source
    df = (reader if src.columns else reader.option("inferSchema", True)).csv(path)
    # Names by position, from the header as the file has it: Spark's CSV reader renames
    # headers that differ only in case ("Plan", "plan" -> "Plan0", "plan1").
    header = read_schema(src, Path(path)).names
    if len(header) == len(df.columns):
        return df.toDF(*[src.rename.get(n, n) for n in header])
    return df.withColumnsRenamed(src.rename) if src.rename else df


def with_row_id(df: DataFrame, name: str) -> DataFrame:
    """A unique key for a table without one: a hash of the row's values (before PII
    hashing) and, after a '-', the row's occurrence among rows with the same values
    (0, 1, ...). Identical rows are interchangeable, so the ids are the same on every read
    of the same file, in any order or partitioning; and no two rows share one, so a join on
    the key never multiplies rows (a hash alone gave k identical rows one id, and the
    label-feature join then made k*k rows: test_identical_rows_get_their_own_ids)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from engine.features.asof import ROW_ORDER

    values = [c for c in df.columns if c != ROW_ORDER]  # the row's values, not its place
    cols = [F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in values]
    h = "__row_hash"
    df = df.withColumn(h, F.sha2(F.concat_ws("\u001f", *cols), 256).substr(1, 20))
    nth = F.row_number().over(Window.partitionBy(h).orderBy(h)) - 1
    return df.withColumn(name, F.concat(F.col(h), F.lit("-"), nth.cast("string"))).drop(h)


def read_source(
    spark: SparkSession, cfg: ProjectConfig, name: str, workspace: Path, pii_key: bytes
) -> DataFrame:
    """Read a source as a Spark DataFrame: declared CSV types applied (a cell that does not
    parse is null), the generated row id added, PII columns replaced by their keyed hash."""
    from pyspark.sql import functions as F

    from engine.pii import spark_hmac

    src = cfg.sources[name]
    df = _raw(spark, cfg, name, str(source_path(cfg, name, workspace)))
    if src.event_time:
        from engine.features.asof import ROW_ORDER

        # Each event's place in the source, for a view's `ties: last_row`, taken right at
        # the scan (before any shuffle): files in path order, rows in file order
        # (monotonically_increasing_id grows with the offset within a file: its splits are
        # partitions in file order). test_ties_follow_the_declared_rule pins it to pandas.
        place = F.struct(F.col("_metadata.file_path"), F.monotonically_increasing_id())
        df = df.withColumn(ROW_ORDER, place)
    if src.format == "csv" and src.columns:
        for col, kind in src.columns.items():
            if col in df.columns and kind != "string":
                df = df.withColumn(col, F.expr(_typed(src, col, kind)))
    if src.row_id is not None:
        df = with_row_id(df, src.row_id)
    for col in cfg.pii_columns(name):
        df = df.withColumn(col, spark_hmac(df[col], pii_key))
    if src.event_time:
        df = df.withColumn(src.event_time, df[src.event_time].cast("timestamp_ntz"))
    return df


def source_quality(
    spark: SparkSession, cfg: ProjectConfig, name: str, workspace: Path
) -> dict[str, dict[str, int]]:
    """Per declared non-text CSV column: cells that were blank, and cells that held text
    that does not parse as the declared type (both become null). Parquet: {}."""
    from pyspark.sql import functions as F

    src = cfg.sources[name]
    if src.format != "csv" or not src.columns:
        return {}
    raw = _raw(spark, cfg, name, str(source_path(cfg, name, workspace)))
    typed = [(c, k) for c, k in src.columns.items() if c in raw.columns and k != "string"]
    if not typed:
        return {}
    aggs = []
    for c, k in typed:
        t = F.trim(F.col(c))
        blank = F.col(c).isNull() | (t == "")
        bad = ~blank & F.expr(_typed(src, c, k)).isNull()
        aggs += [
            F.sum(F.when(blank, 1).otherwise(0)).alias(f"blank|{c}"),
            F.sum(F.when(bad, 1).otherwise(0)).alias(f"text|{c}"),
        ]
    row = raw.agg(*aggs).first()
    assert row is not None
    out: dict[str, dict[str, int]] = {}
    for c, k in typed:
        n_blank, n_text = int(row[f"blank|{c}"] or 0), int(row[f"text|{c}"] or 0)
        if n_blank or n_text:
            out[c] = {"blank": n_blank, f"not_{k}": n_text}
    return out


def read_columns(
    cfg: HasSources, name: str, workspace: Path, columns: list[str]
) -> dict[str, pa.ChunkedArray]:
    """Some columns of a source as Arrow arrays (no Spark): for checks before a build."""
    src = cfg.sources[name]
    path = source_path(cfg, name, workspace)
    back = {} if src.is_database else {new: old for old, new in src.rename.items()}
    raw = [back.get(c, c) for c in columns]
    if src.is_database:
        from engine.ingest.store import INTERNAL, current_arrow

        keys = key_columns(cfg, name)
        order = [src.ingest.watermark] if src.ingest.watermark else []
        cols = list(dict.fromkeys([*raw, *keys, *order, *INTERNAL]))
        tables = [pq.read_table(f, columns=cols) for f in data_files(path)]
        table = current_arrow(pa.concat_tables(tables), keys, src.ingest.watermark)
    elif src.format == "parquet":
        tables = [pq.read_table(f, columns=raw) for f in data_files(path)]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    else:
        opts = pacsv.ConvertOptions(
            include_columns=raw, column_types=dict.fromkeys(raw, pa.string())
        )
        table = pacsv.read_csv(path, convert_options=opts, **csv_options(src))
    return {c: table.column(r) for c, r in zip(columns, raw, strict=True)}


def read_frame(cfg: HasSources, name: str, workspace: Path, columns: list[str]) -> pd.DataFrame:
    """Some columns of a source as pandas, read as the build reads them (no Spark): the
    source's format, CSV dialect (separator, decimal mark, encoding), renames, declared
    types (a cell that does not parse is missing) and time formats; Parquet times of any
    unit as naive nanoseconds. Every reader that needs a source in one process uses this,
    not its own ``pd.read_parquet`` (the treatment source was read as Parquet whatever its
    format: test_a_csv_treatment_table_is_read_as_its_source_says)."""
    import pandas as pd

    from engine.timeformat import to_strptime

    src = cfg.sources[name]
    arrays = read_columns(cfg, name, workspace, columns)
    out = {}
    for c in columns:
        v = arrays[c].to_pandas()
        kind = src.columns.get(c) or ("timestamp" if c == src.event_time else None)
        if src.format == "csv" and kind is not None and kind != "string":
            text = v.astype("string").str.strip().replace("", pd.NA)
            if kind in ("int", "double"):
                if src.decimal == ",":
                    text = text.str.translate(str.maketrans(",.", ".x"))
                v = pd.to_numeric(text, errors="coerce")
            elif kind == "timestamp":
                fmt = src.time_formats.get(c)
                v = pd.to_datetime(
                    text, format=to_strptime(fmt, c) if fmt else "ISO8601", errors="coerce"
                )
            elif kind == "bool":
                v = text.str.lower().map({"true": True, "false": False})
        if pd.api.types.is_datetime64_any_dtype(v.dtype):
            if getattr(v.dt, "tz", None) is not None:
                v = v.dt.tz_convert("UTC").dt.tz_localize(None)
            v = v.astype("datetime64[ns]")
        out[c] = v
    return pd.DataFrame(out)
