"""Compacting a closed format-3 segment (engine.audit.columnar): its group-commit frames
rewritten as a few large Arrow batches, records, seq and row hashes unchanged, sealed.

A group commit writes as many frames as it had groups, and a reader pays per frame; a
closed segment is rewritten once, in the background (engine.audit.writer). The frames are
chained afresh from the genesis hash and end with a *seal* naming the head the segment had
before, so a reader that meets the new segment with the old head (the two files are
replaced one after the other) can tell compaction from tampering (engine.audit.verify).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.audit.columnar import (
    BATCH_ROWS,
    K_BATCH,
    K_OPEN,
    K_ROWS,
    K_SCHEMA,
    K_SEAL,
    MAGIC,
    SCHEMA,
    SUFFIX,
    frame,
    genesis_bytes,
    read_file,
    rows_records,
    scan,
    to_batch,
)


def compact(path: Path, head: dict[str, Any], *, rows: int = BATCH_ROWS) -> bool:
    """Rewrite a closed, intact segment as few large batch frames (group commit writes
    as many frames as it had groups; a reader pays per frame). The records, their seq and
    row hashes are unchanged; the frames are chained afresh from the genesis hash and end
    with a *seal* frame naming the head the segment had before (seq, digest, frames), so a
    reader that meets the old head with the new segment (the two files are replaced one
    after the other) can tell compaction from tampering. Returns whether it rewrote."""
    from engine.workspace import atomic_write_bytes

    segment = path.name.removesuffix(SUFFIX)
    buf = read_file(path)
    sc = scan(segment, buf)
    if sc.problems or sc.fragment or sc.seal is not None or sc.open_record is None:
        return False  # damaged, still written, or already compact: leave it as it is
    if sc.last_seq != int(head["seq"]) or sc.last_digest.hex() != head["hash"]:
        return False
    n_rows = sum(1 for f in sc.frames if f.kind == K_ROWS)
    n_batches = sum(1 for f in sc.frames if f.kind == K_BATCH)
    if not n_rows and n_batches <= max(1, -(-sc.records // rows)):
        return False  # already in as few frames as compaction would write
    schema: pa.Schema | None = None
    batches: list[pa.RecordBatch] = []
    mv = memoryview(buf)
    # Consecutive rows frames' records become one batch (up to ``rows``): building a batch
    # has a fixed cost (~130 us) that a group commit of a few records would pay each.
    pending: list[dict[str, Any]] = []
    pending_first = 0

    def flush() -> None:
        for i in range(0, len(pending), rows):
            batches.append(to_batch(pending[i : i + rows], pending_first + i))
        pending.clear()

    for f in sc.frames:
        body = mv[f.start : f.start + f.length]
        if f.kind == K_ROWS:
            if not pending:
                pending_first = f.first
            for r in rows_records(bytes(body)):
                r.pop("seq", None)
                pending.append(r)
            continue
        flush()
        if f.kind == K_SCHEMA:
            schema = pa.ipc.read_schema(pa.py_buffer(bytes(body)))
        elif f.kind == K_BATCH and schema is not None:
            batches.append(pa.ipc.read_record_batch(pa.py_buffer(bytes(body)), schema))
    flush()
    if not batches:
        return False
    table = pa.Table.from_batches(batches, schema=SCHEMA).combine_chunks()
    prev = genesis_bytes(segment)
    parts = [MAGIC]
    payload = json.dumps(sc.open_record, sort_keys=True, separators=(",", ":")).encode()
    blob, prev = frame(prev, K_OPEN, 0, 1, payload)
    parts.append(blob)
    first = 1
    blob, prev = frame(prev, K_SCHEMA, first, 0, SCHEMA.serialize().to_pybytes())
    parts.append(blob)
    for b in table.to_batches(max_chunksize=rows):
        blob, prev = frame(prev, K_BATCH, first, b.num_rows, b.serialize().to_pybytes())
        parts.append(blob)
        first += b.num_rows
    seal = {
        "compacted": True,
        "head_before": {"seq": head["seq"], "hash": head["hash"]},
        "frames_before": len(sc.frames),
    }
    blob, prev = frame(prev, K_SEAL, first, 0, json.dumps(seal, sort_keys=True).encode())
    parts.append(blob)
    tmp = path.with_name(f".{path.name}.compact")
    with tmp.open("wb") as fh:
        for p in parts:
            fh.write(p)
        fh.flush()
        os.fsync(fh.fileno())
    new_head = {**head, "hash": prev.hex(), "compacted": True}
    os.replace(tmp, path)  # the segment first, then its head (see the seal)
    atomic_write_bytes(path.with_suffix(".head"), json.dumps(new_head, sort_keys=True).encode())
    return True
