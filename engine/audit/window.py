"""Reading a time window of the audit log column-wise, verifying every chain it reads.

``read_window(root, t_from, t_to)`` lists the segments once, skips those that end before
the window or start after it (segment names carry their start time, heads their last
record's time), verifies each segment it reads (chain and head; a problem is reported, never
hidden), parses the verified bytes with Arrow's multithreaded JSON reader against a fixed
schema, keeps the decisions whose time is in ``[t_from, t_to)``, and returns one row per
scored row (a request may score many): version, score, decision, inputs (numeric as
float64, categorical as text), entity id, sensitive-attribute groups, request time; plus
per request: latency, request id, route. It cites exactly what it covered: per segment the
first and last seq in the window with their hashes.
"""

from __future__ import annotations

import calendar
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from engine.audit import columnar as col
from engine.audit.verify import _listing, _read_head, read_columnar, read_segment
from engine.kernels import cores

SCHEMA = col.JSON_SCHEMA


@dataclass
class Covered:
    segment: str
    first_seq: int
    last_seq: int
    first_hash: str
    last_hash: str
    requests: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Window:
    t_from: float
    t_to: float
    # one entry per scored row
    version: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    score: np.ndarray = field(default_factory=lambda: np.empty(0))
    decision: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    row_time: np.ndarray = field(default_factory=lambda: np.empty(0))
    request_of_row: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    categorical: dict[str, np.ndarray] = field(default_factory=dict)
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    shadow_version: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    shadow_score: np.ndarray = field(default_factory=lambda: np.empty(0))
    # one entry per request
    latency_ms: np.ndarray = field(default_factory=lambda: np.empty(0))
    request_time: np.ndarray = field(default_factory=lambda: np.empty(0))
    route: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    unseen: dict[str, int] = field(default_factory=dict)
    inputs_logged: bool = True
    covered: list[Covered] = field(default_factory=list)
    segments_read: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    _ids: tuple[pa.ChunkedArray, pa.ChunkedArray] | None = None
    _request_id: np.ndarray | None = None
    _entity: np.ndarray | None = None

    def lazy_ids(self, request_id: pa.ChunkedArray, ids: pa.ChunkedArray) -> None:
        self._ids, self._request_id, self._entity = (request_id, ids), None, None

    @property
    def request_id(self) -> np.ndarray:
        """Per request: its id (Python strings are made on first use: only labels need
        them)."""
        if self._request_id is None:
            self._request_id = (
                np.empty(0, dtype=object)
                if self._ids is None
                else _objects(self._ids[0], distinct=True)
            )
        return self._request_id

    @property
    def entity(self) -> np.ndarray:
        """Per row: its entity id, or None (made on first use, as request_id)."""
        if self._entity is None:
            self._entity = (
                np.empty(0, dtype=object)
                if self._ids is None
                else _per_row(
                    self._ids[1].combine_chunks(), self.request_of_row, self.requests, self.rows
                )
            )
        return self._entity

    @property
    def rows(self) -> int:
        return int(self.score.size)

    @property
    def requests(self) -> int:
        return int(self.latency_ms.size)


def _start_time(path: Path) -> float:
    """A segment's start, from its name (``YYYYmmddTHHMMSS-...``, UTC; second precision)."""
    try:
        return float(calendar.timegm(time.strptime(path.name[:15], "%Y%m%dT%H%M%S")))
    except ValueError:
        return 0.0


# A record's time is when it was answered; it is written (and its segment may be opened)
# later. Segments without a recorded span are chosen by name with this much slack.
_NAME_SLACK_S = 300.0


def _overlaps(path: Path, t_from: float, t_to: float) -> bool:
    head, _ = _read_head(path.with_suffix(".head"))
    if head and head.get("closed"):
        lo, hi = head.get("t_min"), head.get("t_max")
        if isinstance(lo, int | float) and isinstance(hi, int | float):
            return float(lo) < t_to and float(hi) >= t_from
        if head.get("time") is not None and float(head["time"]) < t_from:
            return False  # format-1 heads: the last record's time
    # Live (its span still grows), or no span: only the name's start time can exclude it.
    return _start_time(path) - _NAME_SLACK_S < t_to


@dataclass
class SegmentRead:
    """One segment, verified and decoded: its table (None if it held nothing), the problems
    its check found, the unseen-category counts of its decisions in the window."""

    path: Path
    table: pa.Table | None
    problems: list[str]
    unseen: dict[str, int]
    verify_s: float
    parse_s: float


def read_segment_table(
    path: Path, t_from: float, t_to: float, *, block_size: int = 1 << 24, unseal: bool = True
) -> SegmentRead:
    """Verify and decode one segment of either format (thread-safe: OpenSSL's hashing and
    Arrow's decoding release the GIL, so segments are read in parallel)."""
    a = time.perf_counter()
    unseen: dict[str, int] = {}
    if path.suffix == col.SUFFIX:
        chk, batches = read_columnar(path)
        b = time.perf_counter()
        table = (
            pa.Table.from_batches([col.conform(b) for b in batches], schema=col.SCHEMA)
            if batches
            else None
        )
        if table is not None and table.column("unseen_categories").null_count < table.num_rows:
            _unseen_columnar(table, t_from, t_to, unseen)
        if unseal and table is not None and table.column("sealed").null_count < table.num_rows:
            table = _unseal(path, table)
        return SegmentRead(path, table, chk.problems, unseen, b - a, time.perf_counter() - b)
    chk, data = read_segment(path)
    b = time.perf_counter()
    table = None
    if data:
        table = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(block_size=block_size),
            parse_options=pj.ParseOptions(
                explicit_schema=SCHEMA, unexpected_field_behavior="ignore"
            ),
        )
        if b'"unseen_categories"' in data:  # rare: only requests with values never seen
            for line in data.split(b"\n"):
                if b'"unseen_categories"' in line:
                    rec = json.loads(line)
                    if t_from <= float(rec.get("time", -1)) < t_to:
                        for k, v in rec["unseen_categories"].items():
                            unseen[k] = unseen.get(k, 0) + int(v)
        if unseal and b'"sealed"' in data:
            table = _unseal(path, table)
    return SegmentRead(path, table, chk.problems, unseen, b - a, time.perf_counter() - b)


def _unseal(path: Path, table: pa.Table) -> pa.Table:
    """Sealed records opened with the workspace's key store (engine.governance.seal); rows
    of erased subjects are left out. Format 2's table gets the columns it lacks first."""
    from engine.governance.keys import for_audit
    from engine.governance.seal import unseal_table

    if "rh" not in table.column_names:  # format 2 / rows: the JSON reader's table
        missing = [(n, t) for n, t in zip(col.SCHEMA.names, col.SCHEMA.types, strict=True)
                   if n not in table.column_names]  # fmt: skip
        for n, t in missing:
            table = table.append_column(pa.field(n, t), pa.nulls(table.num_rows, t))
        out = unseal_table(table, for_audit(path.parent))
        return out.drop_columns([n for n, _ in missing])
    return unseal_table(table, for_audit(path.parent))


def _unseen_columnar(table: pa.Table, t_from: float, t_to: float, out: dict[str, int]) -> None:
    tm = table.column("time").to_numpy(zero_copy_only=False)
    uc = table.column("unseen_categories")
    for i in np.flatnonzero(~np.asarray(uc.is_null().to_numpy(zero_copy_only=False), bool)):
        if t_from <= tm[i] < t_to:
            for k, v in uc[int(i)].as_py() or []:
                out[k] = out.get(k, 0) + int(v)


def chosen_segments(root: Path, t_from: float, t_to: float) -> list[Path]:
    """The segments (either format) whose records may fall in ``[t_from, t_to)``."""
    segs, _ = _listing(root)
    return sorted(p for p in segs if _overlaps(p, t_from, t_to))


def read_window(
    root: Path,
    t_from: float,
    t_to: float,
    *,
    block_size: int = 1 << 24,
    threads: int | None = None,
) -> Window:
    """The decisions answered in ``[t_from, t_to)`` (seconds since the epoch), verified.
    Segments are verified and decoded on ``threads`` threads (default: the cores this
    process is given, engine.kernels.cores)."""
    w = Window(t_from, t_to)
    t0 = time.perf_counter()
    chosen = chosen_segments(root, t_from, t_to)
    n = max(1, min(threads or cores.allowed(), len(chosen) or 1))
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="audit-read") as pool:
        reads = list(
            pool.map(lambda p: read_segment_table(p, t_from, t_to, block_size=block_size), chosen)
        )
    tables: list[tuple[Path, pa.Table]] = []
    for r in reads:
        w.problems += [f"{r.path.name}: {p}" for p in r.problems]
        for k, v in r.unseen.items():
            w.unseen[k] = w.unseen.get(k, 0) + v
        if r.table is not None:
            tables.append((r.path, r.table))
    w.segments_read = len(chosen)
    read_s = time.perf_counter() - t0
    a = time.perf_counter()
    _assemble(w, tables)
    w.seconds = {
        "verify": sum(r.verify_s for r in reads),  # CPU seconds, over the threads
        "parse": sum(r.parse_s for r in reads),
        "read": read_s,  # wall: listing, verifying and decoding on the threads
        "assemble": time.perf_counter() - a,
        "total": time.perf_counter() - t0,
        "threads": float(n),
    }
    return w


def _assemble(w: Window, tables: list[tuple[Path, pa.Table]]) -> None:
    """The decision records of the window as per-row and per-request arrays.

    Fresh memory is what costs most here (first touch of a page), so the big columns are
    never copied whole: a window's records are sliced (not filtered) out of each segment
    when they are contiguous, inputs go chunk by chunk straight into their per-feature
    arrays, and request ids and entity ids become Python strings only when labels ask."""
    layouts: dict[str, tuple[list[str], list[str], list[str]]] = {}
    parts: list[pa.Table] = []
    for path, t in tables:
        kind = t.column("kind")
        lay = t.filter(pc.equal(kind, "layout"))
        for r in lay.select(["layout", "numeric", "categorical", "groups"]).to_pylist():
            layouts[r["layout"]] = (r["numeric"] or [], r["categorical"] or [], r["groups"] or [])
        tm = t.column("time")
        keep = pc.and_(
            pc.equal(kind, "decision"),
            pc.and_(pc.greater_equal(tm, w.t_from), pc.less(tm, w.t_to)),
        )
        idx = np.flatnonzero(keep.to_numpy(zero_copy_only=False))
        if idx.size == 0:
            continue
        lo_i, hi_i = int(idx[0]), int(idx[-1])
        d = (
            t.slice(lo_i, hi_i - lo_i + 1)
            if hi_i - lo_i + 1 == idx.size
            else t.filter(keep)  # records out of time order at the window's edges
        )
        seq = d.column("seq").to_numpy()
        lo, hi = int(np.argmin(seq)), int(np.argmax(seq))
        w.covered.append(
            Covered(path.name, int(seq[lo]), int(seq[hi]), _hash(d, lo), _hash(d, hi), d.num_rows)
        )
        parts.append(d.select(_WANTED))
    if not parts:
        return
    d = pa.concat_tables(parts)
    n_req = d.num_rows
    w.latency_ms = d.column("latency_ms").to_numpy()
    w.request_time = d.column("time").to_numpy()
    w.route = _objects(d.column("route"))
    scores = d.column("scores").combine_chunks()
    parent = pc.list_parent_indices(scores).to_numpy().astype(np.int64)
    w.request_of_row = parent
    w.score = pc.list_flatten(scores).to_numpy(zero_copy_only=False)
    w.decision = pc.list_flatten(d.column("decisions").combine_chunks()).to_numpy(
        zero_copy_only=False
    )
    w.version = _objects(pc.list_flatten(d.column("versions").combine_chunks()))
    w.row_time = w.request_time[parent]
    w.lazy_ids(d.column("request_id"), d.column("ids"))
    shadow = d.column("shadow").combine_chunks()
    w.shadow_version = np.full(w.rows, None, dtype=object)
    w.shadow_score = np.full(w.rows, np.nan)
    if shadow.null_count < n_req:
        has = ~np.asarray(shadow.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        sv = _objects(pc.struct_field(shadow, "version"))
        w.shadow_version = np.asarray(np.where(has[parent], sv[parent], None), dtype=object)
        w.shadow_score = _per_row(
            pc.struct_field(shadow, "scores"), parent, n_req, w.rows, numeric=True
        )
    _inputs(w, d, layouts, parent)


def _hash(d: pa.Table, i: int) -> str:
    """A record's hash as the citation names it: format 2's line hash, format 3's row
    hash (engine.audit.columnar), hex."""
    if "hash" in d.schema.names:
        return str(d.column("hash")[i].as_py())
    return bytes(d.column("rh")[i].as_py()).hex()


_WANTED = [
    "time", "route", "request_id", "versions", "ids", "layout", "x", "xc", "g",
    "scores", "decisions", "latency_ms", "shadow",
]  # fmt: skip


def _objects(a: pa.Array | pa.ChunkedArray, *, distinct: bool = False) -> np.ndarray:
    """Strings (None for null) as an object array; few distinct values go through a
    dictionary, so each distinct string becomes one Python object."""
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    if distinct or len(a) == 0:
        return np.asarray(a.to_numpy(zero_copy_only=False), dtype=object)
    enc = pc.dictionary_encode(a)
    cats = np.asarray([*enc.dictionary.to_pylist(), None], dtype=object)
    return cats[enc.indices.fill_null(len(enc.dictionary)).to_numpy()]


def _per_row(
    lists: pa.Array, parent: np.ndarray, n_req: int, n_rows: int, *, numeric: bool = False
) -> np.ndarray:
    """A per-request list column (one value per scored row, or null) spread over the rows;
    rows of requests without it get None (NaN when ``numeric``)."""
    out = np.full(n_rows, np.nan) if numeric else np.full(n_rows, None, dtype=object)
    if lists.null_count == n_req:
        return out
    lens = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(lists)
    vals = flat.to_numpy(zero_copy_only=False) if numeric else _objects(flat, distinct=True)
    rows_per_req = np.bincount(parent, minlength=n_req)
    has = lens > 0
    if np.array_equal(lens[has], rows_per_req[has]):
        out[has[parent]] = vals  # rows are in request order
        return out
    row_start = np.concatenate([[0], np.cumsum(rows_per_req)])[:-1]
    val_start = np.concatenate([[0], np.cumsum(lens)])[:-1]
    for i in np.flatnonzero(has):  # a request whose list does not match its rows: rare
        k = int(min(lens[i], rows_per_req[i]))
        out[row_start[i] : row_start[i] + k] = vals[val_start[i] : val_start[i] + k]
    return out


def _inputs(
    w: Window,
    d: pa.Table,
    layouts: dict[str, tuple[list[str], list[str], list[str]]],
    parent: np.ndarray,
) -> None:
    """Numeric and categorical inputs (and groups) per row, across layouts, chunk by chunk
    straight into their per-feature arrays (the matrix is never copied whole). A request
    whose inputs do not fit its layout (or its rows) leaves its rows missing; the rest of
    its layout is read."""
    n_req = d.num_rows
    enc = pc.dictionary_encode(d.column("layout").combine_chunks())
    lids = enc.dictionary.to_pylist()
    lay = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    w.inputs_logged = bool(d.column("x").null_count < n_req or d.column("xc").null_count < n_req)
    rows_per_req = np.bincount(parent, minlength=n_req)
    row_start = np.zeros(n_req, np.int64)
    np.cumsum(rows_per_req[:-1], out=row_start[1:])
    for name, part, store, kind in (
        ("x", 0, w.numeric, "num"),
        ("xc", 1, w.categorical, "cat"),
        ("g", 2, w.groups, "cat"),
    ):
        column = d.column(name)
        if column.null_count == n_req:
            continue
        at = 0
        for chunk in column.chunks:
            m = len(chunk)
            if m and chunk.null_count < m:
                sizes = (rows_per_req[at : at + m], row_start)
                _chunk_inputs(w, chunk, at, (lay, lids, layouts), part, store, kind, sizes)
            at += m


def _chunk_inputs(
    w: Window,
    chunk: pa.Array,
    at: int,
    lay_info: tuple[np.ndarray, list[str], dict[str, tuple[list[str], list[str], list[str]]]],
    part: int,
    store: dict[str, np.ndarray],
    kind: str,
    sizes: tuple[np.ndarray, np.ndarray],
) -> None:
    """One chunk of requests (``at``.. in the window) of one input column."""
    lay, lids, layouts = lay_info
    rows_here, row_start = sizes
    m = len(chunk)
    lens = pc.list_value_length(chunk).fill_null(0).to_numpy(zero_copy_only=False)
    inner = pc.list_flatten(chunk)  # one entry per logged row
    local = pc.list_parent_indices(chunk).to_numpy().astype(np.int64)
    first = np.zeros(m, np.int64)
    np.cumsum(lens[:-1], out=first[1:])
    pos = np.arange(len(inner)) - first[local]  # the row's place within its request
    inner_lens = pc.list_value_length(inner).fill_null(0).to_numpy(zero_copy_only=False)
    fits = (lens == rows_here)[local]
    req = at + local
    for code, lid in enumerate(lids):
        names = layouts.get(lid, ([], [], []))[part]
        k = len(names)
        if not k:
            continue
        good = fits & (lay[req] == code) & (inner_lens == k)
        if not good.any():
            continue
        kept = inner if good.all() else inner.filter(pa.array(good))
        vals = _flat_values(pc.list_flatten(kept), kind).reshape(-1, k)
        rows = row_start[req[good]] + pos[good]
        dense = int(rows[-1] - rows[0]) + 1 == rows.size and bool((np.diff(rows) == 1).all())
        where = slice(int(rows[0]), int(rows[-1]) + 1) if dense else rows
        for j, name in enumerate(names):
            if name not in store:
                store[name] = (
                    np.full(w.rows, np.nan)
                    if kind == "num"
                    else np.full(w.rows, None, dtype=object)
                )
            store[name][where] = vals[:, j]


def _flat_values(flat: pa.Array, kind: str) -> np.ndarray:
    if kind == "num":
        return np.asarray(flat.to_numpy(zero_copy_only=False), dtype=float)
    return _objects(flat)
