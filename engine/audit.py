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

    def _anchor(self, closed: bool = False) -> None:
        head = {"segment": self.segment, "seq": self._seq - 1, "hash": self._prev}
        if closed:
            head["closed"] = True
        atomic_write_bytes(self.head_path, _canonical(head))
        self._since_anchor = 0

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._anchor(closed=True)
                self._f.close()


@dataclass
class SegmentCheck:
    path: str
    records: int
    problems: list[str] = field(default_factory=list)
    in_progress: bool = False  # a record was being written when the segment was read


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


def _complete_lines(data: bytes) -> tuple[list[bytes], bool]:
    """The newline-terminated lines of ``data`` and whether a fragment follows the last one
    (a record a live writer is still writing: its bytes may arrive in several pieces)."""
    lines = data.split(b"\n")
    fragment = lines.pop()  # b"" when data ends with a newline
    return lines, bool(fragment.strip())


def _read_head(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The head file (None if absent) or a problem if it is unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    try:
        head = json.loads(raw)
        int(head["seq"]), str(head["hash"])
    except (ValueError, KeyError, TypeError):
        return None, "head file is not a valid head record: modified"
    return dict(head), None


def verify_segment(path: Path) -> SegmentCheck:
    """Verify one segment as it is now, even while its writer appends to it.

    The head file is read *before* the records: a writer replaces its head only after the
    records the head names are written, so every record a head names is in the bytes read
    after it, and a live writer can never look like truncation. A trailing fragment with
    no newline is a record still being written: it is not judged (and not counted) unless
    the head says the segment was closed (tests/test_explain_audit.py, the concurrency test).
    """
    segment = path.name.removesuffix(".jsonl")
    chk = SegmentCheck(str(path), 0)
    head, head_problem = _read_head(path.with_suffix(".head"))
    if head_problem:
        chk.problems.append(head_problem)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        chk.problems.append("segment file removed while it was being verified")
        return chk
    lines, fragment = _complete_lines(data)
    if fragment:
        if head is not None and head.get("closed"):
            chk.problems.append("the last record is incomplete in a closed segment: truncated")
        else:
            chk.in_progress = True
    prev = genesis(segment)
    expect = 0
    head_seq = int(head["seq"]) if head else -1
    hash_at_head: str | None = None
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "bad UTF-8"
            chk.problems.append(f"line {lineno}: not JSON ({msg}): record modified")
            continue
        seq = rec.get("seq") if isinstance(rec, dict) else None
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
        if seq == head_seq:
            hash_at_head = prev
        expect = max(expect, seq + 1)
        chk.records += 1
    if head is not None:
        if expect - 1 < head_seq:
            chk.problems.append(
                f"ends at seq {expect - 1} but its head file says seq {head_seq}: "
                f"{head_seq - expect + 1} record(s) removed from the end"
            )
        elif hash_at_head != head["hash"]:
            chk.problems.append(
                f"record seq {head_seq}'s hash differs from the head file's: modified"
            )
    return chk


def _listing(root: Path) -> tuple[set[Path], set[Path]]:
    """Segment and head files under ``root``, from one walk of the folder."""
    segs: set[Path] = set()
    heads: set[Path] = set()
    for p in root.rglob("*"):
        if p.name.startswith("."):
            continue  # atomic-write temp files
        if p.suffix == ".jsonl":
            segs.add(p)
        elif p.suffix == ".head":
            heads.add(p)
    return segs, heads


def segments(root: Path) -> list[Path]:
    return sorted(_listing(root)[0])


def verify(root: Path) -> VerifyResult:
    """Check every segment under ``root``, correct while writers open, append to and close
    segments (tests/test_explain_audit.py::test_verify_is_correct_under_live_writers).

    A head file without its segment is a deleted segment, but only if the segment is still
    absent *after* the listing: a writer creates its segment before its first head, so a
    head whose segment the listing missed belongs to a segment created during the walk,
    and that segment is verified too.
    """
    segs, heads = _listing(root)
    for head in heads:
        seg = head.with_suffix(".jsonl")
        if seg not in segs and seg.exists():
            segs.add(seg)  # created while the folder was being listed
    checks = [verify_segment(p) for p in sorted(segs)]
    for head in sorted(heads):
        seg = head.with_suffix(".jsonl")
        if seg not in segs:
            checks.append(
                SegmentCheck(str(seg), 0, ["segment file removed (its head file remains)"])
            )
    return VerifyResult(checks)


def read_records(root: Path, kind: str | None = "decision") -> Iterator[dict[str, Any]]:
    """Records of every segment (``kind=None``: all, including segment-open markers).
    A record still being written (no newline yet) is not read."""
    for p in segments(root):
        lines, _ = _complete_lines(p.read_bytes())
        for line in lines:
            if not line.strip():
                continue
            rec = json.loads(line)
            if kind is None or rec.get("kind") == kind:
                yield rec


# ---- what a served decision records ---------------------------------------------------


def audit_inputs(x: Any, policy: str) -> list[Any]:
    """The inputs as the audit log keeps them, one list per row in the model's column order:
    the values (numbers, text; missing as null) or, with ``policy="hash"``, a SHA-256 per
    row of its canonical JSON."""
    rows = x.to_numpy(dtype=object).tolist() if hasattr(x, "to_numpy") else list(x)
    clean = [
        [
            None
            if v is None or (isinstance(v, float) and v != v)
            else (float(v) if isinstance(v, int | float) and not isinstance(v, bool) else str(v))
            for v in r
        ]
        for r in rows
    ]
    if policy == "hash":
        return [hashlib.sha256(_canonical({"row": r})).hexdigest() for r in clean]
    return clean


def decision_record(
    *,
    route: str,
    request_id: str,
    model: str,
    versions: list[str],
    generation: int,
    ids: list[str] | None,
    inputs: list[Any],
    input_policy: str,
    scores: list[float],
    threshold: float,
    latency_ms: float,
    shadow: dict[str, Any] | None = None,
    unseen: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One record per answered request: what was asked (entity ids, already hashed where
    they are PII; inputs or their hashes), what was answered (scores, the threshold and the
    decisions it gave), by which model versions and rollout generation, how fast."""
    rec: dict[str, Any] = {
        "kind": "decision",
        "route": route,
        "request_id": request_id,
        "time": time.time(),
        "model": model,
        "versions": versions,
        "generation": generation,
        "ids": ids,
        "inputs": inputs,
        "input_policy": input_policy,
        "scores": scores,
        "threshold": threshold,
        "decisions": [s >= threshold for s in scores],
        "latency_ms": round(latency_ms, 3),
    }
    if shadow is not None:
        rec["shadow"] = shadow
    if unseen:
        rec["unseen_categories"] = (
            unseen  # feature -> values the model never saw (scored as missing)
        )
    return rec
