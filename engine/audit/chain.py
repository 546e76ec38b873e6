"""The hash chain: how a record becomes a line, and how a line is checked.

Format 2 (written now). A line is the record's JSON (keys in the order written, compact,
``seq`` and ``prev`` last) with ``"hash":"<hex>"`` appended as its final key, where
``hash = SHA-256(the line up to that key, closed with "}")``. ``prev`` (the previous line's
hash, or the segment's genesis hash) is inside what is hashed, so the lines form a chain.
A verifier checks a line with byte operations only (find the last ``,"hash":"``, hash what
precedes it): no JSON parsing, which is what lets ``insight monitor`` verify a million
records in seconds (benchmarks/bench_monitor.py).

Format 1 (segments written before) hashed ``prev + "\\n" +`` the key-sorted canonical JSON of
the record without ``hash``; it is still verified (record by record, slower).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FORMAT = 2
HASH_KEY = b',"hash":"'


def genesis(segment: str) -> str:
    return hashlib.sha256(b"insight-audit-genesis:" + segment.encode()).hexdigest()


def _plain(o: Any) -> Any:
    """NumPy scalars and arrays as JSON knows them (what a record may carry)."""
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"an audit record cannot hold a {type(o).__name__}")


def encode(rec: dict[str, Any], seq: int, prev: str) -> tuple[str, str]:
    """The line of ``rec`` at ``seq`` after ``prev`` (format 2), and its hash."""
    body = json.dumps(
        {**rec, "seq": seq, "prev": prev}, separators=(",", ":"), ensure_ascii=False, default=_plain
    )
    h = hashlib.sha256(body.encode()).hexdigest()
    return f'{body[:-1]},"hash":"{h}"}}', h


def split_line(line: bytes) -> tuple[int, str, str, bool] | None:
    """(seq, prev, hash, hash-matches-content) of a format-2 line, by byte operations; None
    when the line is not one (damaged)."""
    k = line.rfind(HASH_KEY)
    if k < 0 or len(line) < k + 11 or line[-2:] != b'"}':
        return None
    stored = line[k + 9 : -2]
    ok = hashlib.sha256(line[:k] + b"}").hexdigest().encode() == stored
    j = line.rfind(b',"seq":', 0, k)
    p = line.rfind(b',"prev":"', 0, k)
    if j < 0 or p < j:
        return None
    try:
        seq = int(line[j + 7 : p])
    except ValueError:
        return None
    return seq, line[p + 9 : k - 1].decode(), stored.decode(), ok


# ---- format 1 -------------------------------------------------------------------------


def _canonical(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(prev: str, rec: dict[str, Any]) -> str:
    """Format 1: SHA-256 of ``prev`` and the canonical JSON of the record without its hash."""
    body = {k: v for k, v in rec.items() if k != "hash"}
    return hashlib.sha256(prev.encode() + b"\n" + _canonical(body)).hexdigest()


def split_line_v1(line: bytes) -> tuple[int, str, str, bool] | None:
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    seq = rec.get("seq") if isinstance(rec, dict) else None
    if not isinstance(seq, int):
        return None
    prev = str(rec.get("prev", ""))
    h = str(rec.get("hash"))
    return seq, prev, h, h == record_hash(prev, rec)
