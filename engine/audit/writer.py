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

from engine.audit.chain import FORMAT, encode, genesis
from engine.workspace import atomic_write_bytes


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
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.writer = writer
        self._lock = threading.Lock()
        self._anchor_every = anchor_every
        self._fsync = fsync
        self._max_records = max(2, max_records)
        self._layouts: dict[str, dict[str, Any]] = {}
        self._open_segment()

    def _open_segment(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in self.writer)[:60]
        self.segment = f"{stamp}-{safe or 'writer'}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = self.root / f"{self.segment}.jsonl"
        self.head_path = self.root / f"{self.segment}.head"
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
                    "format": FORMAT,
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
        """Chain and write ``records`` (one write, then flush). Returns how many."""
        with self._lock:
            recs = list(records)
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
            return self._write_locked(out) - (len(out) - len(recs))

    def _write_locked(self, recs: list[dict[str, Any]]) -> int:
        lines = []
        for rec in recs:
            line, self._prev = encode(rec, self._seq, self._prev)
            lines.append(line)
            self._seq += 1
            t = rec.get("time")
            if isinstance(t, int | float):
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
        if not self._f.closed:
            self._anchor(closed=True)
            self._f.close()

    def close(self) -> None:
        with self._lock:
            self._close_locked()
