"""Audit format 3: columnar segments, Arrow record batches in a hash-chained frame file.

A segment ``<segment>.arrows`` is ``MAGIC`` followed by frames. A frame is a 64-byte header
(kind, payload length, first seq, record count, digest) and its payload:

- kind 1, *open*: the segment-open record as JSON (it names the segment; record seq 0);
- kind 2, *schema*: an Arrow IPC schema message (every batch after it uses it);
- kind 3, *batch*: an Arrow IPC record-batch message, one row per record, seq
  ``first_seq .. first_seq + count - 1`` (a ``seq`` column repeats them);
- kind 5, *rows*: the same records as JSON lines (each ends with its own SHA-256, as in
  format 2): what a served request's group commit writes, since building an Arrow batch
  costs ~130 us whatever its size and a request has 200 us in all; when the segment is
  closed, compaction rewrites its rows frames as batches (see :func:`compact`);
- kind 4, *seal*: ends a compacted segment, naming the head it had before.

``digest = SHA-256(previous frame's digest || kind, length, first_seq, count || payload)``;
the first frame follows the segment's genesis hash (engine.audit.chain.genesis). Verifying a
segment hashes each frame's bytes as they lie in the file (OpenSSL, which releases the GIL,
so segments verify in parallel threads): no decoding. A frame whose digest does not match
is then decoded, if it still decodes, and each row's ``rh`` (SHA-256 of the row's values as
canonical JSON, written with the row) is recomputed, so the record that was modified is
named by its seq; a removed or reordered record is named from the ``seq`` column. The
``.head`` file is the same as format 2's (its ``hash`` is the last frame's digest).

Inputs are typed columns: ``x`` holds each row's numeric features as float64, ``xc`` the
categorical ones as text, in the order of the request's layout (a ``layout`` row, once per
segment, names them), exactly as format 2 keeps them, so one window reader serves both.
Fields a record carries beyond the schema are kept as JSON text in ``extra``: nothing a
caller writes is dropped.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.audit.chain import genesis

FORMAT = 3
SUFFIX = ".arrows"
MAGIC = b"INSAUD3\n"
HEADER = struct.Struct("<B7xQQQ32s")  # kind, length, first seq, count, digest: 64 bytes
_LINK = struct.Struct("<BQQQ")
BATCH_ROWS = 65_536  # rows per batch frame: bulk writes and compaction (engine.audit.compact)
K_OPEN, K_SCHEMA, K_BATCH, K_SEAL, K_ROWS = 1, 2, 3, 4, 5

_S = pa.string()
COLUMNS: list[tuple[str, pa.DataType]] = [
    ("seq", pa.int64()),
    ("kind", _S),
    ("time", pa.float64()),
    ("route", _S),
    ("request_id", _S),
    ("model", _S),
    ("versions", pa.list_(_S)),
    ("generation", pa.int64()),
    ("ids", pa.list_(_S)),
    ("layout", _S),
    ("numeric", pa.list_(_S)),
    ("categorical", pa.list_(_S)),
    ("groups", pa.list_(_S)),
    ("x", pa.list_(pa.list_(pa.float64()))),
    ("xc", pa.list_(pa.list_(_S))),
    ("g", pa.list_(pa.list_(_S))),
    ("input_hashes", pa.list_(_S)),
    ("input_policy", _S),
    ("scores", pa.list_(pa.float64())),
    ("threshold", pa.float64()),
    ("decisions", pa.list_(pa.bool_())),
    ("latency_ms", pa.float64()),
    ("shadow", pa.struct([("version", _S), ("scores", pa.list_(pa.float64()))])),
    ("unseen_categories", pa.map_(_S, pa.int64())),
    ("kids", pa.list_(_S)),  # a sealed record's key id per row (engine.governance.seal)
    ("sealed", pa.list_(_S)),  # its rows' ciphertexts
    ("extra", _S),  # JSON of any other fields
]
SCHEMA_NO_HASH = pa.schema(COLUMNS)
SCHEMA = pa.schema([*COLUMNS, ("rh", pa.binary(32))])
_NAMES = {n for n, _ in COLUMNS} - {"extra"}


def _digest(prev: bytes, kind: int, first: int, count: int, payload: Any) -> bytes:
    h = hashlib.sha256(prev)
    h.update(_LINK.pack(kind, len(memoryview(payload)), first, count))
    h.update(payload)
    return h.digest()


def frame(prev: bytes, kind: int, first: int, count: int, payload: bytes) -> tuple[bytes, bytes]:
    """The bytes of one frame after ``prev`` and its digest."""
    d = _digest(prev, kind, first, count, payload)
    return HEADER.pack(kind, len(payload), first, count, d) + payload, d


def genesis_bytes(segment: str) -> bytes:
    return bytes.fromhex(genesis(segment))


# ---- rows ------------------------------------------------------------------------------


def _plain(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"an audit record cannot hold a {type(o).__name__}")


def _row(rec: dict[str, Any], seq: int) -> dict[str, Any]:
    row = {k: v for k, v in rec.items() if k in _NAMES}
    rest = {k: v for k, v in rec.items() if k not in _NAMES}
    if isinstance(row.get("unseen_categories"), dict):
        row["unseen_categories"] = list(row["unseen_categories"].items())
    row["seq"] = seq
    row["extra"] = (
        json.dumps(rest, sort_keys=True, separators=(",", ":"), default=_plain) if rest else None
    )
    return row


def row_hash(values: dict[str, Any]) -> bytes:
    """SHA-256 of a row's values (as Arrow gives them back, ``rh`` left out) as canonical
    JSON: what a row is checked against when its frame's digest does not match."""
    body = {k: v for k, v in values.items() if k != "rh"}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(blob.encode()).digest()


def to_batch(records: list[dict[str, Any]], first_seq: int) -> pa.RecordBatch:
    """Records (dicts, as engine.audit.records makes them) as one batch with ``rh``.

    A field whose value does not fit its column (a caller's record of another shape) moves
    the whole record's fields to ``extra``: what is written is always read back."""
    rows = [_row(r, first_seq + i) for i, r in enumerate(records)]
    try:
        b = pa.RecordBatch.from_pylist(rows, schema=SCHEMA_NO_HASH)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        rows = [_odd(r, first_seq + i) for i, r in enumerate(records)]
        b = pa.RecordBatch.from_pylist(rows, schema=SCHEMA_NO_HASH)
    back = b.to_pylist()
    rh = pa.array([row_hash(v) for v in back], pa.binary(32))
    return pa.RecordBatch.from_arrays([*b.columns, rh], schema=SCHEMA)


def table_batches(table: pa.Table, first_seq: int, rows: int = BATCH_ROWS) -> list[pa.RecordBatch]:
    """Records already in columns (any subset of the schema's columns, ``seq`` and ``rh``
    left out) as batches of at most ``rows`` rows, with ``seq`` from ``first_seq`` and each
    row's hash: the bulk path (batch scoring, benchmarks) of :func:`to_batch`."""
    n = table.num_rows
    cols = []
    for name, typ in COLUMNS:
        if name == "seq":
            cols.append(pa.array(range(first_seq, first_seq + n), pa.int64()))
        elif name in table.column_names:
            cols.append(table.column(name).cast(typ).combine_chunks())
        else:
            cols.append(pa.nulls(n, typ))
    full = pa.Table.from_arrays(cols, schema=SCHEMA_NO_HASH)
    out = []
    for b in full.to_batches(max_chunksize=rows):
        rh = pa.array([row_hash(v) for v in b.to_pylist()], pa.binary(32))
        out.append(pa.RecordBatch.from_arrays([*b.columns, rh], schema=SCHEMA))
    return out


def _odd(rec: dict[str, Any], seq: int) -> dict[str, Any]:
    keep = {"kind": str(rec.get("kind", "")), "seq": seq}
    t = rec.get("time")
    if isinstance(t, int | float):
        keep["time"] = float(t)
    rest = {k: v for k, v in rec.items() if k not in ("kind", "seq", "time")}
    keep["extra"] = json.dumps(rest, sort_keys=True, separators=(",", ":"), default=_plain)
    return keep


def conform(b: pa.RecordBatch) -> pa.RecordBatch:
    """A batch of a segment written before a column was added, with that column null:
    every batch a reader gets has :data:`SCHEMA`."""
    if b.schema.equals(SCHEMA):
        return b
    names = b.schema.names
    cols = [
        b.column(n).cast(t) if n in names else pa.nulls(b.num_rows, t)
        for n, t in zip(SCHEMA.names, SCHEMA.types, strict=True)
    ]
    return pa.RecordBatch.from_arrays(cols, schema=SCHEMA)


def to_records(table: pa.Table | pa.RecordBatch) -> Iterator[dict[str, Any]]:
    """Rows back as records (as format 2 reads them: fields present, ``seq`` included)."""
    for v in table.to_pylist():
        rec: dict[str, Any] = {k: x for k, x in v.items() if x is not None and k != "rh"}
        extra = rec.pop("extra", None)
        if extra:
            rec.update(json.loads(extra))
        if "unseen_categories" in rec:
            rec["unseen_categories"] = dict(rec["unseen_categories"])
        yield rec


# ---- rows frames (JSON lines) ----------------------------------------------------------

_JSON_FIELDS = (
    "kind", "route", "request_id", "time", "versions", "ids", "layout", "numeric",
    "categorical", "groups", "x", "xc", "g", "input_policy", "scores", "decisions",
    "latency_ms", "shadow", "kids", "sealed", "seq",
)  # fmt: skip
JSON_SCHEMA = pa.schema(
    [(n, t) for n, t in COLUMNS if n in _JSON_FIELDS] + [("hash", _S)]
)  # what the window reads of a JSON line (format 2 and rows frames): the same types
_HASH_KEY = b',"hash":"'


def encode_rows(records: list[dict[str, Any]], first_seq: int) -> bytes:
    """Records as the lines of a rows frame: compact JSON with ``seq`` last, then
    ``"hash"``: SHA-256 of the line up to it, closed with ``}``."""
    out = []
    for i, rec in enumerate(records):
        body = json.dumps(
            {**rec, "seq": first_seq + i}, separators=(",", ":"), ensure_ascii=False, default=_plain
        ).encode()
        out.append(body[:-1] + _HASH_KEY + hashlib.sha256(body).hexdigest().encode() + b'"}\n')
    return b"".join(out)


def _line_ok(line: bytes) -> bool:
    k = line.rfind(_HASH_KEY)
    return (
        k > 0
        and line.endswith(b'"}')
        and (hashlib.sha256(line[:k] + b"}").hexdigest().encode() == line[k + 9 : -2])
    )


def rows_records(payload: bytes) -> list[dict[str, Any]]:
    """The records of a rows frame (``hash`` dropped)."""
    out = []
    for line in bytes(payload).split(b"\n"):
        if line.strip():
            rec = json.loads(line)
            rec.pop("hash", None)
            out.append(rec)
    return out


def rows_batch(payload: Any) -> pa.RecordBatch:
    """A rows frame as a batch of :data:`SCHEMA` (what the window reads; ``extra`` and
    ``unseen_categories`` are left null: :func:`rows_records` has every field)."""
    import pyarrow.json as pj

    t = pj.read_json(
        pa.BufferReader(payload),
        parse_options=pj.ParseOptions(
            explicit_schema=JSON_SCHEMA, unexpected_field_behavior="ignore"
        ),
    )
    n = t.num_rows
    cols = []
    for name, typ in COLUMNS:
        cols.append(
            t.column(name).combine_chunks()
            if name in t.column_names and name != "hash"
            else pa.nulls(n, typ)
        )
    rh = pa.array(
        [bytes.fromhex(h) if h else None for h in t.column("hash").to_pylist()], pa.binary(32)
    )
    return pa.RecordBatch.from_arrays([*cols, rh], schema=SCHEMA)


def check_lines(payload: bytes, first: int, count: int) -> list[str]:
    """Each line of a rows frame against its hash, and the seq order: names the record."""
    problems: list[str] = []
    seqs: list[int | None] = []
    for line in bytes(payload).split(b"\n"):
        if not line.strip():
            continue
        try:
            seq = int(json.loads(line).get("seq"))
        except (ValueError, TypeError, AttributeError):
            seq = None
        seqs.append(seq)
        if not _line_ok(line):
            problems.append(f"record seq {seq}: content does not match its row hash: modified")
    return problems + _seq_problems(seqs, first, count)


def _seq_problems(seqs: list[int | None], first: int, count: int) -> list[str]:
    """The records ``first .. first + count - 1`` against the seqs found, in order: the
    first missing or moved one, named."""
    want = list(range(first, first + count))
    have = {q for q in seqs if q is not None}
    gone = [q for q in want if q not in have]
    if gone:
        span = f"{gone[0]}" if len(gone) == 1 else f"{gone[0]}..{gone[-1]} ({len(gone)})"
        return [f"record seq {span}: missing: record(s) removed"]
    if seqs != want[: len(seqs)]:
        i = next(k for k, q in enumerate(seqs) if q != want[k])
        return [f"record seq {seqs[i]} at the place of seq {want[i]}: reordered"]
    return []


# ---- reading and verifying -------------------------------------------------------------


@dataclass
class Frame:
    kind: int
    first: int
    count: int
    start: int  # byte offset of the payload
    length: int
    digest: bytes


@dataclass
class Scan:
    """What a walk over a segment's frames found: the frames, the schema, problems."""

    frames: list[Frame] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fragment: bool = False  # a frame still being written (bytes after the last whole one)
    records: int = 0
    last_seq: int = -1
    last_digest: bytes = b""
    open_record: dict[str, Any] | None = None
    bad: list[Frame] = field(default_factory=list)  # frames whose digest did not match
    seal: dict[str, Any] | None = None  # a compacted segment's seal (see compact)


def _check_frame(out: Scan, fr: Frame, where: str, expect: int, segment: str, payload: Any) -> None:
    """A frame's place in the seq order, and what its open or seal payload says."""
    first = fr.first
    if first > expect:
        out.problems.append(
            f"{where}: seq {first} follows seq {expect - 1}: "
            f"{first - expect} record(s) removed (seq {expect}..{first - 1})"
        )
    elif first < expect:
        out.problems.append(f"{where}: seq {first} after seq {expect - 1}: reordered")
    if fr.kind not in (K_SEAL, K_OPEN):
        return
    try:
        rec = json.loads(bytes(payload))
    except ValueError:
        what = "compaction seal" if fr.kind == K_SEAL else "segment-open frame"
        out.problems.append(f"the {what} is not JSON: modified")
        return
    if fr.kind == K_SEAL:
        out.seal = rec
        return
    out.open_record = rec
    if rec.get("segment") != segment:
        out.problems.append("the first record names another segment: moved or replaced")


def scan(segment: str, buf: pa.Buffer | bytes, *, check: bool = True) -> Scan:
    """Walk the frames of a segment's bytes, checking every digest (``check``) and the seq
    ranges; the payloads are not decoded."""
    out = Scan()
    mv = memoryview(buf)
    if bytes(mv[: len(MAGIC)]) != MAGIC:
        if MAGIC.startswith(bytes(mv)):  # just created, its first frame not yet written
            out.fragment = True
            return out
        out.problems.append("not an audit segment of format 3 (its first bytes differ): modified")
        return out
    pos, end = len(MAGIC), len(mv)
    prev = genesis_bytes(segment)
    expect = 0
    while pos < end:
        if end - pos < HEADER.size:
            out.fragment = True
            break
        kind, length, first, count, digest = HEADER.unpack_from(mv, pos)
        start = pos + HEADER.size
        if kind not in (K_OPEN, K_SCHEMA, K_BATCH, K_SEAL, K_ROWS):
            out.problems.append(f"byte {pos}: not a frame header: modified")
            break
        if start + length > end:
            out.fragment = True
            break
        payload = mv[start : start + length]
        where = f"frame at byte {pos} (seq {first}..{first + count - 1})"
        fr = Frame(kind, first, count, start, length, digest)
        if check and _digest(prev, kind, first, count, payload) != digest:
            out.problems.append(f"{where}: content does not match its digest: modified")
            out.bad.append(fr)
        _check_frame(out, fr, where, expect, segment, payload)
        out.frames.append(fr)
        prev = digest
        expect = max(expect, first + count)
        out.records += count
        out.last_seq = first + count - 1 if count else out.last_seq
        out.last_digest = digest
        pos = start + length
    if (out.frames and out.frames[0].kind != K_OPEN) or (not out.frames and not out.fragment):
        out.problems.append("the segment does not start with its open record: modified")
    return out


def decode(buf: pa.Buffer | bytes, frames: list[Frame]) -> tuple[list[pa.RecordBatch], list[str]]:
    """The record batches of a segment (zero-copy over ``buf``); problems for frames that
    do not decode."""
    schema: pa.Schema | None = None
    out: list[pa.RecordBatch] = []
    problems: list[str] = []
    base = buf if isinstance(buf, pa.Buffer) else pa.py_buffer(buf)
    for f in frames:
        if f.kind in (K_OPEN, K_SEAL):
            continue
        body = base.slice(f.start, f.length)
        try:
            if f.kind == K_SCHEMA:
                schema = pa.ipc.read_schema(body)
            elif f.kind == K_ROWS:
                out.append(rows_batch(body))
            elif schema is not None:
                out.append(pa.ipc.read_record_batch(body, schema))
        except (pa.ArrowInvalid, OSError) as exc:
            problems.append(
                f"seq {f.first}..{f.first + f.count - 1}: does not decode "
                f"({str(exc).splitlines()[0][:120]}): modified"
            )
    return out, problems


def name_damage(buf: pa.Buffer | bytes, sc: Scan) -> list[str]:
    """For each frame whose digest did not match: which of its records, by seq, no longer
    match their row hash, are missing or moved; or, when all its records are intact (or it
    holds none: a seal), that the chain broke before it, and which records of the frame
    before it were changed (a frame re-digested after an edit breaks the next link)."""
    schema = [f for f in sc.frames if f.kind == K_SCHEMA][:1]
    problems: list[str] = []
    for f in sc.bad:
        rows = _frame_rows(buf, schema, f) if f.kind in (K_ROWS, K_BATCH) else []
        if not rows:
            rows = [
                f"frame before seq {f.first}: the chain broke before it: a record before "
                "was modified and its frame's digest recomputed ('prev' does not match)"
            ]
            before = [g for g in sc.frames if g.kind in (K_BATCH, K_ROWS) and g.start < f.start]
            if before:
                rows += _frame_rows(buf, schema, before[-1])
        problems += rows
    return problems


def _frame_rows(buf: pa.Buffer | bytes, schema: list[Frame], f: Frame) -> list[str]:
    """What is wrong with the records of one frame (rows or batch), by seq."""
    if f.kind == K_ROWS:
        return check_lines(bytes(memoryview(buf)[f.start : f.start + f.length]), f.first, f.count)
    batches, out = decode(buf, [*schema, f])
    for b in batches:
        out += check_rows(b, f.first, f.count)
    return out


def check_rows(b: pa.RecordBatch, first: int | None = None, count: int | None = None) -> list[str]:
    """Each row's hash against its values, and the seq column's order (from ``first``,
    ``count`` rows, as the frame's header says)."""
    problems: list[str] = []
    if "rh" not in b.schema.names or "seq" not in b.schema.names:
        return ["a batch lacks its seq or row-hash column: modified"]
    rows = b.to_pylist()
    for v in rows:
        if v["rh"] != row_hash(v):
            problems.append(f"record seq {v['seq']}: content does not match its row hash: modified")
    seqs = [v["seq"] for v in rows]
    lo = (seqs[0] if seqs else 0) if first is None else first
    return problems + _seq_problems(seqs, lo, len(seqs) if count is None else count)


def records(buf: pa.Buffer | bytes, sc: Scan) -> Iterator[dict[str, Any]]:
    """Every record of a scanned segment as a dict, in seq order (the open record first)."""
    if sc.open_record is not None:
        yield {**sc.open_record, "seq": 0}
    mv = memoryview(buf)
    schema: pa.Schema | None = None
    for f in sc.frames:
        body = mv[f.start : f.start + f.length]
        if f.kind == K_SCHEMA:
            schema = pa.ipc.read_schema(pa.py_buffer(bytes(body)))
        elif f.kind == K_BATCH and schema is not None:
            yield from to_records(pa.ipc.read_record_batch(pa.py_buffer(bytes(body)), schema))
        elif f.kind == K_ROWS:
            yield from rows_records(bytes(body))


def read_file(path: Path) -> pa.Buffer:
    """The segment's bytes, memory-mapped (zero copy: batches point into the page cache)."""
    with pa.memory_map(str(path), "r") as mm:
        return mm.read_buffer()
