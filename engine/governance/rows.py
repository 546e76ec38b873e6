"""Removing rows from files, each rewritten whole (temp file, then rename): what erasure
(engine.governance.erase) and retention (engine.governance.retention) do to Parquet, CSV
and JSON-lines stores. A subject is matched as text, the same whichever type a table read
its key as (engine.governance.consent.subject_keys: '7.0' is 7)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.workspace import atomic_write_bytes, atomic_write_text


def write_parquet(path: Path, table: pa.Table) -> None:
    """``table`` in place of the file at ``path`` (readers see the old file or the new)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def seconds(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A time column (a timestamp, or seconds since the epoch) as seconds (float)."""
    if str(col.type).startswith("timestamp"):
        return pc.divide(pc.cast(pc.cast(col, "timestamp[us]"), "int64"), 1e6)
    return pc.cast(col, "double")


def match(col: pa.ChunkedArray | pa.Array, keys: list[str]) -> pa.Array:
    """Rows whose key is one of ``keys`` (compared as text, '7.0' equal to '7')."""
    from engine.governance.consent import subject_keys

    vals = subject_keys(col.to_pandas() if hasattr(col, "to_pandas") else col)
    return pa.array(vals.isin(keys).to_numpy(dtype=bool))


def drop_rows(path: Path, columns: list[str], keys: list[str]) -> int:
    """Drop the rows whose ``columns`` (any present) hold one of ``keys``; the file rewritten
    whole (temp, then rename). Returns the rows removed."""
    t = pq.read_table(path)
    present = [c for c in columns if c in t.column_names]
    if not present or t.num_rows == 0:
        return 0
    hit = match(t.column(present[0]), keys)
    for c in present[1:]:
        hit = pc.or_(hit, match(t.column(c), keys))
    n = int(pc.sum(hit).as_py() or 0)
    if n:
        write_parquet(path, t.filter(pc.invert(hit)))
    return n


def _read_csv(path: Path) -> tuple[Any, Any]:
    """A CSV file as text cells, in its own dialect (engine.data.csvfile.sniff)."""
    import pandas as pd

    from engine.data.csvfile import sniff

    d = sniff(path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False, sep=d.delimiter, encoding=d.encoding)
    return df, d


def _csv_hits(df: Any, column: str, keys: list[str]) -> Any:
    from engine.governance.consent import subject_keys

    return subject_keys(df[column].replace("", None)).isin(keys).to_numpy(dtype=bool)


def csv_holds(path: Path, column: str, keys: list[str]) -> bool:
    df, _ = _read_csv(path)
    return column in df.columns and bool(_csv_hits(df, column, keys).any())


def drop_csv_rows(path: Path, column: str, keys: list[str]) -> int:
    """The same for a CSV file, in its own dialect (delimiter and encoding, as the engine
    reads it); the other rows are written back as they were read (as text: no number or
    date is reformatted)."""
    df, d = _read_csv(path)
    if column not in df.columns:
        return 0
    hit = _csv_hits(df, column, keys)
    n = int(hit.sum())
    if n:
        text = df[~hit].to_csv(index=False, sep=d.delimiter)
        atomic_write_bytes(path, text.encode(d.encoding))
    return n


def drop_lines(path: Path, fields: list[str], keys: list[str]) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    keep, n = [], 0
    for line in lines:
        if line.strip():
            try:
                rec = json.loads(line)
            except ValueError:
                keep.append(line)
                continue
            if any(str(rec.get(f)) in keys for f in fields if rec.get(f) is not None):
                n += 1
                continue
        keep.append(line)
    if n:
        atomic_write_text(path, "".join(x + "\n" for x in keep))
    return n


def files(path: Path, suffix: str) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(p for p in path.rglob(f"*{suffix}") if not p.name.startswith("."))
    elif path.is_file():
        yield path


def holds(path: Path, cols: list[str], keys: list[str]) -> bool:
    names = pq.read_schema(path).names
    present = [c for c in cols if c in names]
    if not present:
        return False
    t = pq.read_table(path, columns=present)
    return any(bool(pc.any(match(t.column(c), keys)).as_py()) for c in present)
