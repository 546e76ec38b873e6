"""Append-only, hash-chained audit log of served decisions, and its verifier.

Layout: ``<workspace>/audit/<app>/`` holds one *segment* per writer process (a Serve
replica), ``<segment>.jsonl``, one JSON record per line. Every record carries ``seq``
(0, 1, 2, ... within its segment), ``prev`` (the hash of the record before it; the segment's
genesis hash for seq 0) and ``hash`` = SHA-256 of ``prev`` and the canonical JSON of the
record without ``hash``. Any edit of a record breaks its hash; a removed record leaves a gap
in ``seq``; a moved record arrives with a lower ``seq`` than expected. Removing records from
the *end* of a segment leaves a valid chain, so each writer also keeps ``<segment>.head``
(last seq and hash, replaced atomically every ``anchor_every`` records and on close): a
segment shorter than its head was truncated. A segment's first record names the segment,
so a file renamed over another does not verify either.

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from engine.workspace import atomic_write_bytes


def _canonical(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(prev: str, rec: dict[str, Any]) -> str:
    body = {k: v for k, v in rec.items() if k != "hash"}
    return hashlib.sha256(prev.encode() + b"\n" + _canonical(body)).hexdigest()


def genesis(segment: str) -> str:
    return hashlib.sha256(b"insight-audit-genesis:" + segment.encode()).hexdigest()


class AuditWriter:
    """One hash chain in one segment file; thread-safe; ``append`` returns when written."""

    def __init__(
        self,
        root: Path,
        *,
        writer: str = "",
        anchor_every: int = 100,
        fsync: bool = False,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in writer)[:60]
        self.segment = f"{stamp}-{safe or 'writer'}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = root / f"{self.segment}.jsonl"
        self.head_path = root / f"{self.segment}.head"
        self._f: TextIO = self.path.open("x", encoding="utf-8")
        self._lock = threading.Lock()
        self._seq = 0
        self._prev = genesis(self.segment)
        self._anchor_every = anchor_every
        self._since_anchor = 0
        self._fsync = fsync
        self.append([{"kind": "segment-open", "segment": self.segment, "writer": writer}])

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Chain and write ``records`` (one write, then flush). Returns how many."""
        with self._lock:
            lines = []
            for rec in records:
                rec = {**rec, "seq": self._seq, "prev": self._prev}
                rec["hash"] = record_hash(self._prev, rec)
                lines.append(_canonical(rec).decode())
                self._prev = rec["hash"]
                self._seq += 1
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

    def _anchor(self) -> None:
        head = {"segment": self.segment, "seq": self._seq - 1, "hash": self._prev}
        atomic_write_bytes(self.head_path, _canonical(head))
        self._since_anchor = 0

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._anchor()
                self._f.close()


@dataclass
class SegmentCheck:
    path: str
    records: int
    problems: list[str] = field(default_factory=list)


@dataclass
class VerifyResult:
    segments: list[SegmentCheck]

    @property
    def ok(self) -> bool:
        return all(not s.problems for s in self.segments)

    @property
    def records(self) -> int:
        return sum(s.records for s in self.segments)

    @property
    def problems(self) -> list[str]:
        return [f"{s.path}: {p}" for s in self.segments for p in s.problems]


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if line.strip():
                yield i, line


def verify_segment(path: Path) -> SegmentCheck:
    segment = path.name.removesuffix(".jsonl")
    chk = SegmentCheck(str(path), 0)
    prev = genesis(segment)
    expect = 0
    last_hash = prev
    for lineno, line in _lines(path):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            chk.problems.append(f"line {lineno}: not JSON ({exc.msg}): record modified")
            continue
        seq = rec.get("seq")
        if not isinstance(seq, int):
            chk.problems.append(f"line {lineno}: no integer 'seq': record modified")
            continue
        if rec.get("hash") != record_hash(str(rec.get("prev", "")), rec):
            chk.problems.append(
                f"line {lineno} (seq {seq}): content does not match its hash: modified"
            )
        elif seq == 0 and (rec.get("segment") != segment or rec.get("prev") != genesis(segment)):
            chk.problems.append(
                f"line {lineno}: first record names another segment: moved or replaced"
            )
        if seq > expect:
            chk.problems.append(
                f"line {lineno}: seq {seq} follows seq {expect - 1}: "
                f"{seq - expect} record(s) removed (seq {expect}..{seq - 1})"
            )
        elif seq < expect:
            chk.problems.append(
                f"line {lineno}: seq {seq} after seq {expect - 1}: records reordered or duplicated"
            )
        elif rec.get("prev") != prev:
            chk.problems.append(
                f"line {lineno} (seq {seq}): 'prev' does not match the record before it"
            )
        prev = str(rec.get("hash"))
        expect = max(expect, seq + 1)
        last_hash = prev
        chk.records += 1
    head = path.with_suffix(".head")
    if head.is_file():
        h = json.loads(head.read_text())
        if expect - 1 < h["seq"]:
            chk.problems.append(
                f"ends at seq {expect - 1} but its head file says seq {h['seq']}: "
                f"{h['seq'] - expect + 1} record(s) removed from the end"
            )
        elif expect - 1 == h["seq"] and last_hash != h["hash"]:
            chk.problems.append("last record's hash differs from the head file's: modified")
    return chk


def segments(root: Path) -> list[Path]:
    return sorted(root.rglob("*.jsonl"))


def verify(root: Path) -> VerifyResult:
    """Check every segment under ``root``; a head file without its segment is a problem."""
    segs = segments(root)
    checks = [verify_segment(p) for p in segs]
    have = {p.with_suffix(".head") for p in segs}
    for head in sorted(root.rglob("*.head")):
        if head not in have:
            checks.append(
                SegmentCheck(
                    str(head.with_suffix(".jsonl")),
                    0,
                    ["segment file removed (its head file remains)"],
                )
            )
    return VerifyResult(checks)


def read_records(root: Path, kind: str | None = "decision") -> Iterator[dict[str, Any]]:
    """Records of every segment (``kind=None``: all, including segment-open markers)."""
    for p in segments(root):
        for _, line in _lines(p):
            rec = json.loads(line)
            if kind is None or rec.get("kind") == kind:
                yield rec
