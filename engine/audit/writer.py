"""The writer: one hash chain per segment file, segments rotated by size.

Layout: ``<workspace>/audit/<app>/`` holds *segments* written by one process each (a Serve
replica, the monitor's control log), ``<segment>.jsonl``, one record per line, chained
(engine.audit.chain). A segment is closed and a new one opened every ``max_records``
records, so a reader of a time window reads only the segments that overlap it. Removing
records from the *end* of a segment leaves a valid chain, so the writer also keeps
``<segment>.head`` (last seq, hash and record time; replaced atomically every
``anchor_every`` records and on close, ``closed: true`` then): a segment shorter than its
head was truncated. A segment's first record names the segment, so a file renamed over
another does not verify either.

Inputs are logged column-wise by *layout* (the feature names of the served model, numeric
and categorical): a ``layout`` record is written once per segment before the first
decision that uses it, and decision records carry only its id and the values.

Durability: each batch of records is one ``write`` followed by ``flush``, before the HTTP
answer is sent, so a killed process (SIGKILL) loses no answered record: the bytes are in the
OS. ``fsync=True`` also survives a machine crash, at ~1 ms per batch.

A closed columnar segment is compacted in the background (engine.audit.compact:
its group-commit frames rewritten as a few large ones, records unchanged, sealed), so the
monitor reads it at memory speed.

Group commit: callers that append while another caller's batch is being written wait, and
the next writer takes all of them in one write (one frame, one flush); ``append_async``
groups the requests of one event-loop turn the same way, without a thread per request.

``columnar=True`` writes format 3 (engine.audit.columnar: Arrow record batches in
hash-chained frames, ``<segment>.arrows``), what served apps write; format 2 (JSON lines) is
what the small control logs write, and what segments written before are.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.compute as pc

from engine.audit import columnar as col
from engine.audit.chain import FORMAT, encode, genesis
from engine.workspace import atomic_write_bytes


class _Slot:
    __slots__ = ("done", "error", "records", "written")

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.done = False
        self.written = 0
        self.error: BaseException | None = None


def layout_id(numeric: list[str], categorical: list[str], groups: list[str] | None = None) -> str:
    blob = json.dumps([numeric, categorical, groups or []]).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


class AuditWriter:
    """Hash-chained segments in one folder; thread-safe; ``append`` returns when written."""

    def __init__(
        self,
        root: Path,
        *,
        writer: str = "",
        anchor_every: int = 100,
        fsync: bool = False,
        max_records: int = 100_000,
        columnar: bool = False,
        compact: bool = True,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.writer = writer
        self.columnar = columnar
        self._compact = compact
        self._compactions: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._queue: list[_Slot] = []
        self._leader = False
        self._async_q: list[tuple[list[dict[str, Any]], Any]] = []
        self._async_scheduled = False
        self._anchor_every = anchor_every
        self._fsync = fsync
        self._max_records = max(2, max_records)
        self._layouts: dict[str, dict[str, Any]] = {}
        self._open_segment()

    def _open_segment(self) -> None:
        # Microseconds after the seconds: segments sort in the order they were opened, also
        # within one second (the folder's sorted listing is the reading order; two commands
        # in one second read back in a random order before). The first 15 characters stay
        # the second (engine.audit.window reads them).
        now = time.time_ns() // 1000
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now / 1e6)) + f"{now % 1_000_000:06d}"
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in self.writer)[:60]
        self.segment = f"{stamp}-{safe or 'writer'}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = self.root / f"{self.segment}{col.SUFFIX if self.columnar else '.jsonl'}"
        self.head_path = self.root / f"{self.segment}.head"
        if self.columnar:
            self._fb = self.path.open("xb")
            self._fb.write(col.MAGIC)
            self._schema_written = False
        else:
            self._f: TextIO = self.path.open("x", encoding="utf-8")
        self._seq = 0
        self._prev = genesis(self.segment)
        self._since_anchor = 0
        self._last_time: float | None = None
        self._t_min: float | None = None
        self._t_max: float | None = None
        self._emitted: set[str] = set()
        self._write_locked(
            [
                {
                    "kind": "segment-open",
                    "segment": self.segment,
                    "writer": self.writer,
                    "format": col.FORMAT if self.columnar else FORMAT,
                    "time": time.time(),
                }
            ]
        )

    def register_layout(
        self, numeric: list[str], categorical: list[str], groups: list[str] | None = None
    ) -> str:
        """The id of an input layout (numeric and categorical features, sensitive-attribute
        groups); its record is written once per segment, before the first use."""
        lid = layout_id(numeric, categorical, groups)
        if lid in self._layouts:
            return lid
        with self._lock:
            self._layouts[lid] = {
                "kind": "layout",
                "layout": lid,
                "numeric": list(numeric),
                "categorical": list(categorical),
                "groups": list(groups or []),
            }
        return lid

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Chain and write ``records``; returns when they are written (and flushed), with
        how many. Concurrent callers are grouped into one write (group commit)."""
        slot = _Slot(list(records))
        with self._cv:
            self._queue.append(slot)
            while not slot.done:
                if self._leader:
                    self._cv.wait()
                    continue
                self._leader = True
                group, self._queue = self._queue, []
                self._cv.release()  # others queue up while this group is written
                try:
                    self._write_group(group)
                finally:
                    self._cv.acquire()
                    self._leader = False
                    self._cv.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.written

    def append_table(self, table: pa.Table) -> int:
        """Write records already in columns (format 3 only; engine.audit.columnar
        ``table_batches``): the bulk path of batch scoring and the benchmarks. Rotates like
        ``append``; returns how many records."""
        if not self.columnar:
            raise ValueError(
                "append_table writes columnar segments: open the writer with columnar=True"
            )
        done = 0
        with self._cv:
            while self._leader:
                self._cv.wait()
            self._leader = True
        try:
            while done < table.num_rows:
                room = self._max_records - self._seq - 2
                if room <= 0:
                    self._close_locked()
                    self._open_segment()
                    continue
                part = table.slice(done, room)
                if "layout" in part.column_names:  # a segment names its layouts first
                    lids = [x for x in pc.unique(part.column("layout")).to_pylist() if x]
                    new = [
                        self._layouts[x]
                        for x in lids
                        if x in self._layouts and x not in self._emitted
                    ]
                    if new:
                        self._write_frame(new)
                        self._emitted.update(r["layout"] for r in new)
                        part = table.slice(done, self._max_records - self._seq - 2)
                self._write_batches(col.table_batches(part, self._seq))
                done += part.num_rows
        finally:
            with self._cv:
                self._leader = False
                self._cv.notify_all()
        return done

    def _write_batches(self, batches: list[pa.RecordBatch]) -> None:
        prev = bytes.fromhex(self._prev)
        blob = b""
        if not self._schema_written:
            part, prev = col.frame(
                prev, col.K_SCHEMA, self._seq, 0, col.SCHEMA.serialize().to_pybytes()
            )
            blob += part
            self._schema_written = True
        n = 0
        for b in batches:
            part, prev = col.frame(
                prev, col.K_BATCH, self._seq + n, b.num_rows, b.serialize().to_pybytes()
            )
            blob += part
            n += b.num_rows
        self._fb.write(blob)
        self._fb.flush()
        if self._fsync:
            os.fsync(self._fb.fileno())
        self._seq += n
        self._prev = prev.hex()
        for b in batches:
            tm = b.column("time")
            if tm.null_count < len(tm):
                lo, hi = pc.min(tm).as_py(), pc.max(tm).as_py()
                self._last_time = float(tm[len(tm) - 1].as_py() or hi)
                self._t_min = lo if self._t_min is None else min(self._t_min, lo)
                self._t_max = hi if self._t_max is None else max(self._t_max, hi)
        self._since_anchor += n
        if self._since_anchor >= self._anchor_every:
            self._anchor()

    async def append_async(self, records: Iterable[dict[str, Any]]) -> int:
        """``append`` from a coroutine: the records of every coroutine that appends in the
        same turn of the event loop are written together, once the turn ends."""
        import asyncio

        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._async_q.append((list(records), fut))
        if not self._async_scheduled:
            self._async_scheduled = True
            loop.call_soon(self._flush_async)
        return await fut

    def _flush_async(self) -> None:
        self._async_scheduled = False
        items, self._async_q = self._async_q, []
        try:
            self.append([r for recs, _ in items for r in recs])
        except BaseException as exc:  # every waiting request learns it was not written
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for recs, fut in items:
            if not fut.done():
                fut.set_result(len(recs))

    def _write_group(self, group: list[_Slot]) -> None:
        """Write the records of ``group`` (called by the leader, the lock held)."""
        recs = [r for s in group for r in s.records]
        try:
            if self._seq + len(recs) + 2 > self._max_records:
                self._close_locked()
                self._open_segment()
            out: list[dict[str, Any]] = []
            for rec in recs:
                lid = rec.get("layout")
                if lid is not None and lid not in self._emitted and lid in self._layouts:
                    out.append(self._layouts[lid])
                    self._emitted.add(lid)
                out.append(rec)
            self._write_locked(out)
        except BaseException as exc:
            for s in group:
                s.error, s.done = exc, True
            return
        for s in group:
            s.written, s.done = len(s.records), True

    def _write_locked(self, recs: list[dict[str, Any]]) -> int:
        if self.columnar:
            return self._write_frame(recs)
        lines = []
        for rec in recs:
            line, self._prev = encode(rec, self._seq, self._prev)
            lines.append(line)
            self._seq += 1
            t = rec.get("time")
            if isinstance(t, int | float) and rec.get("kind") != "segment-open":
                self._last_time = t = float(t)
                self._t_min = t if self._t_min is None else min(self._t_min, t)
                self._t_max = t if self._t_max is None else max(self._t_max, t)
        if not lines:
            return 0
        self._f.write("\n".join(lines) + "\n")
        self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())
        self._since_anchor += len(lines)
        if self._since_anchor >= self._anchor_every:
            self._anchor()
        return len(lines)

    def _write_frame(self, recs: list[dict[str, Any]]) -> int:
        if not recs:
            return 0
        first = self._seq
        blob = b""
        prev = bytes.fromhex(self._prev)
        if first == 0:  # the segment-open record: JSON, it names the segment
            payload = json.dumps(recs[0], sort_keys=True, separators=(",", ":")).encode()
            blob, prev = col.frame(prev, col.K_OPEN, 0, 1, payload)
            first, recs = 1, recs[1:]
        if recs:  # a rows frame: JSON lines, compacted into batches when the segment closes
            part, prev = col.frame(prev, col.K_ROWS, first, len(recs), col.encode_rows(recs, first))
            blob += part
        self._fb.write(blob)
        self._fb.flush()
        if self._fsync:
            os.fsync(self._fb.fileno())
        n = len(recs) + (1 if self._seq == 0 else 0)
        self._seq += n
        self._prev = prev.hex()
        for rec in recs:
            t = rec.get("time")
            if isinstance(t, int | float):
                self._last_time = t = float(t)
                self._t_min = t if self._t_min is None else min(self._t_min, t)
                self._t_max = t if self._t_max is None else max(self._t_max, t)
        self._since_anchor += n
        if self._since_anchor >= self._anchor_every:
            self._anchor()
        return n

    def _anchor(self, closed: bool = False) -> None:
        head: dict[str, Any] = {
            "segment": self.segment,
            "seq": self._seq - 1,
            "hash": self._prev,
            "time": self._last_time,
            # The span of record times so far: a record is stamped when it is answered,
            # which can be before its segment opened (rotation) and out of order across
            # threads, so readers choose segments by this span, not by the name.
            "t_min": self._t_min,
            "t_max": self._t_max,
        }
        if closed:
            head["closed"] = True
        atomic_write_bytes(self.head_path, json.dumps(head, sort_keys=True).encode())
        self._since_anchor = 0

    def _close_locked(self) -> None:
        f = self._fb if self.columnar else self._f
        if not f.closed:
            self._anchor(closed=True)
            f.close()
            if self.columnar and self._compact:
                t = threading.Thread(
                    target=_compact_quietly,
                    args=(self.path,),
                    name="audit-compact",
                    daemon=True,
                )
                t.start()
                self._compactions.append(t)

    def close(self) -> None:
        with self._cv:
            while self._leader:
                self._cv.wait()
            self._close_locked()
        for t in self._compactions:  # a closed writer leaves its segments compacted
            t.join(timeout=60)
        self._compactions = []


def _compact_quietly(path: Path) -> None:
    """Compact a closed columnar segment (engine.audit.compact); a failure leaves
    the segment as written, which reads the same, only slower."""
    from engine.audit.verify import _read_head

    try:
        head, problem = _read_head(path.with_suffix(".head"))
        if head is not None and not problem and head.get("closed"):
            from engine.audit.compact import compact

            compact(path, head)
    except Exception:
        import logging

        logging.getLogger(__name__).warning("could not compact %s", path.name, exc_info=True)
