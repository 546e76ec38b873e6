"""Audit format 3 (engine.audit.columnar): Arrow record batches in hash-chained frames.
Every tamper the JSON-lines format is tested against is detected here too, and the record
is named by its seq; `insight audit verify` verifies both formats side by side."""

from __future__ import annotations

import json
import shutil
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from engine.audit import AuditWriter, read_records, verify
from engine.audit import columnar as col
from engine.audit.verify import segment_name


def _rec(i: int) -> dict[str, object]:
    return {
        "kind": "decision",
        "route": "predict",
        "request_id": f"r{i}",
        "time": 1_800_000_000.0 + i,
        "versions": ["1"],
        "scores": [i / 100],
        "decisions": [i % 2 == 0],
        "x": [[float(i), None]],
        "xc": [["a" if i % 3 else None]],
        "latency_ms": 1.0 + i,
        "note": {"free": i},  # a field outside the schema: kept in 'extra'
    }


def _log(tmp_path: Path, n: int = 30, per: int = 5, compact: bool = False) -> Path:
    """A closed segment of ``n`` records in groups of ``per`` (one frame per group: as
    written, before compaction unless ``compact``)."""
    w = AuditWriter(tmp_path / "audit", writer="t", anchor_every=5, columnar=True, compact=compact)
    for i in range(0, n, per):
        w.append([_rec(j) for j in range(i, min(n, i + per))])
    w.close()
    return w.path


def test_records_read_back_as_written(tmp_path: Path) -> None:
    p = _log(tmp_path)
    assert p.suffix == ".arrows"
    res = verify(p.parent)
    assert res.ok and res.records == 31, res.problems  # + the open record
    got = list(read_records(p.parent))
    assert [r["request_id"] for r in got] == [f"r{i}" for i in range(30)]
    r7 = got[7]
    assert r7["x"] == [[7.0, None]] and r7["xc"] == [["a"]] and r7["note"] == {"free": 7}
    assert r7["decisions"] == [False] and r7["seq"] == 8


def _rewrite(
    p: Path,
    change: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None,
    *,
    redigest: bool,
    lines: Callable[[list[bytes]], list[bytes]] | None = None,
) -> None:
    """Replace the frame holding seq 12: a batch by ``change(batch)``, a rows frame by
    ``lines(its lines)``; with ``redigest`` its digest is recomputed (what a forger who
    knows the format does), else kept."""
    buf = p.read_bytes()
    sc = col.scan(segment_name(p), buf, check=False)
    schemas = [f for f in sc.frames if f.kind == col.K_SCHEMA]
    out = bytearray(buf[: len(col.MAGIC)])
    prev = col.genesis_bytes(segment_name(p))
    for f in sc.frames:
        payload = buf[f.start : f.start + f.length]
        digest = f.digest
        if f.first <= 12 < f.first + f.count and f.kind in (col.K_BATCH, col.K_ROWS):
            if f.kind == col.K_BATCH:
                sf = schemas[0]
                schema = pa.ipc.read_schema(pa.py_buffer(buf[sf.start : sf.start + sf.length]))
                b = pa.ipc.read_record_batch(pa.py_buffer(payload), schema)
                assert change is not None
                payload = change(b).serialize().to_pybytes()
            else:
                assert lines is not None
                payload = b"".join(x + b"\n" for x in lines(payload.split(b"\n")[:-1]))
            if redigest:
                _, digest = col.frame(prev, f.kind, f.first, f.count, payload)
        out += col.HEADER.pack(f.kind, len(payload), f.first, f.count, digest) + payload
        prev = digest
    p.write_bytes(bytes(out))


def _set_score(b: pa.RecordBatch, seq: int, score: float, fix_rh: bool = False) -> pa.RecordBatch:
    rows = b.to_pylist()
    for r in rows:
        if r["seq"] == seq:
            r["scores"] = [score]
            if fix_rh:
                r["rh"] = col.row_hash(r)
    return pa.RecordBatch.from_pylist(rows, schema=b.schema)


def _edit_line(ls: list[bytes], rehash: bool = False) -> list[bytes]:
    out = []
    for line in ls:
        rec = json.loads(line)
        if rec["seq"] == 12:
            rec["scores"] = [0.99]
            h = rec.pop("hash")
            if rehash:
                line = col.encode_rows([{k: v for k, v in rec.items() if k != "seq"}], 12).rstrip()
            else:
                line = json.dumps({**rec, "hash": h}, separators=(",", ":")).encode()
        out.append(line)
    return out


def _drop_line(ls: list[bytes]) -> list[bytes]:
    return [x for x in ls if json.loads(x)["seq"] != 12]


def _swap_lines(ls: list[bytes]) -> list[bytes]:
    i = [json.loads(x)["seq"] for x in ls].index(12)
    ls = list(ls)
    ls[i], ls[i + 1] = ls[i + 1], ls[i]
    return ls


def _swap_rows(b: pa.RecordBatch) -> pa.RecordBatch:
    i = b.column("seq").to_pylist().index(12)
    order = list(range(b.num_rows))
    order[i], order[i + 1] = order[i + 1], order[i]
    return b.take(pa.array(order))


def _tamper(tmp_path: Path, frames: str, how: str) -> list[str]:
    p = _log(tmp_path, per=30 if frames == "batch" else 5, compact=frames == "batch")
    batch = frames == "batch"
    if how == "modify":
        _rewrite(p, lambda b: _set_score(b, 12, 0.99), lines=_edit_line, redigest=False)
    elif how == "modify_redigest":  # the frame re-digested, the row hash not: still named
        _rewrite(p, lambda b: _set_score(b, 12, 0.99), lines=_edit_line, redigest=True)
    elif how == "remove":
        keep = lambda b: b.filter(pa.array([s != 12 for s in b.column("seq").to_pylist()]))  # noqa: E731
        _rewrite(p, keep, lines=_drop_line, redigest=False)
    elif how == "reorder":
        _rewrite(p, _swap_rows, lines=_swap_lines, redigest=False)
    elif how == "rehash":  # row hash and frame digest recomputed: the next link breaks
        _rewrite(
            p,
            lambda b: _set_score(b, 12, 0.99, fix_rh=True),
            lines=lambda ls: _edit_line(ls, rehash=True),
            redigest=True,
        )
    elif how == "truncate":
        sc = col.scan(segment_name(p), p.read_bytes())
        cut = sc.frames[-2] if batch else sc.frames[-1]  # the seal and the batch / last frame
        p.write_bytes(p.read_bytes()[: cut.start - col.HEADER.size])
    elif how == "cut_mid_frame":
        p.write_bytes(p.read_bytes()[:-7])
    elif how == "delete_segment":
        p.unlink()
    elif how == "replace":  # another segment's bytes under this name
        other = _log(tmp_path / "other")
        shutil.copy(other, p)
    return verify(p.parent).problems


TAMPER = [
    ("modify", "record seq 12: content does not match its row hash"),
    ("modify_redigest", "record seq 12: content does not match its row hash"),
    ("remove", "record seq 12: missing"),
    ("reorder", "record seq 13 at the place of seq 12: reordered"),
    ("rehash", "'prev' does not match"),
    ("truncate", "removed from the end"),
    ("cut_mid_frame", "incomplete"),
    ("delete_segment", "segment file removed"),
    ("replace", "moved or replaced"),
]


@pytest.mark.parametrize("frames", ["rows", "batch"], ids=["rows-frames", "compacted"])
@pytest.mark.parametrize(("how", "words"), TAMPER, ids=[t[0] for t in TAMPER])
def test_verify_detects_and_names_tampering(
    tmp_path: Path, frames: str, how: str, words: str
) -> None:
    problems = _tamper(tmp_path, frames, how)
    assert problems and any(words in p for p in problems), problems


def test_a_frame_being_written_is_not_judged_until_the_segment_closes(tmp_path: Path) -> None:
    w = AuditWriter(tmp_path / "audit", writer="live", anchor_every=2, columnar=True)
    w.append([_rec(0), _rec(1)])
    with w.path.open("ab") as f:  # half a frame, as a live writer may leave it for a moment
        f.write(struct.pack("<B7xQ", col.K_BATCH, 1000))
    live = verify(w.path.parent)
    assert live.ok and live.segments[0].in_progress and live.records == 3
    assert [r["request_id"] for r in read_records(w.path.parent)] == ["r0", "r1"]


def test_group_commit_writes_concurrent_appends_together(tmp_path: Path) -> None:
    """Threads appending at once are written in fewer frames than appends, every record
    once, in one unbroken chain."""
    w = AuditWriter(tmp_path / "audit", writer="g", columnar=True, compact=False)
    n_threads, per = 8, 200
    start = threading.Barrier(n_threads)

    def work(k: int) -> None:
        start.wait()
        for i in range(per):
            w.append([_rec(k * 10_000 + i)])

    ts = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    w.close()
    sc = col.scan(segment_name(w.path), w.path.read_bytes())
    batches = [f for f in sc.frames if f.kind == col.K_ROWS]
    assert not sc.problems and sc.records == 1 + n_threads * per
    assert len(batches) < n_threads * per  # grouped (typically far fewer)
    ids = [r["request_id"] for r in read_records(w.path.parent)]
    assert sorted(ids) == sorted(f"r{k * 10_000 + i}" for k in range(n_threads) for i in range(per))
    assert verify(w.path.parent).ok


def test_async_appends_of_one_loop_turn_are_one_frame(tmp_path: Path) -> None:
    import asyncio

    w = AuditWriter(tmp_path / "audit", writer="a", columnar=True, compact=False)

    async def many() -> list[int]:
        return await asyncio.gather(*(w.append_async([_rec(i)]) for i in range(50)))

    assert asyncio.run(many()) == [1] * 50
    w.close()
    sc = col.scan(segment_name(w.path), w.path.read_bytes())
    assert [f.count for f in sc.frames if f.kind == col.K_ROWS] == [50]
    assert verify(w.path.parent).ok


def test_both_formats_in_one_folder_verify_and_read(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    old = AuditWriter(root, writer="old")
    old.append([_rec(i) for i in range(3)])
    old.close()
    new = AuditWriter(root, writer="new", columnar=True)
    new.append([_rec(i) for i in range(3, 6)])
    new.close()
    res = verify(root)
    assert res.ok and res.records == 8, res.problems
    assert sorted(r["request_id"] for r in read_records(root)) == [f"r{i}" for i in range(6)]


def test_cli_verify_names_the_damage_in_a_columnar_segment(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from engine.cli import app

    p = _log(tmp_path)
    ok = CliRunner().invoke(app, ["audit", "verify", "--path", str(p.parent)])
    assert ok.exit_code == 0 and "intact" in ok.output
    _rewrite(p, lines=_edit_line, redigest=False)
    bad = CliRunner().invoke(app, ["audit", "verify", "--path", str(p.parent)])
    assert bad.exit_code == 1 and "seq 12" in bad.output and "NOT intact" in bad.output


def test_the_head_names_the_last_frame(tmp_path: Path) -> None:
    p = _log(tmp_path)
    head = json.loads(p.with_suffix(".head").read_text())
    sc = col.scan(segment_name(p), p.read_bytes())
    assert head["closed"] and head["seq"] == sc.last_seq == 30
    assert head["hash"] == sc.last_digest.hex()
    head["hash"] = "0" * 64
    p.with_suffix(".head").write_text(json.dumps(head))
    assert any("head file" in x for x in verify(p.parent).problems)


def test_live_columnar_writers_never_look_tampered(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    root.mkdir()
    stop = threading.Event()
    written = [0] * 3

    def writer(k: int) -> None:
        while not stop.is_set():
            w = AuditWriter(root, writer=f"w{k}", anchor_every=3, columnar=True)
            for j in range(7):
                w.append([_rec(j)])
                written[k] += 1
                time.sleep(0.0005)
            w.close()

    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(3)]
    for t in threads:
        t.start()
    bad = []
    deadline = time.monotonic() + 20.0
    n = 0
    try:
        while time.monotonic() < deadline and (n < 40 or sum(written) < 150):
            r = verify(root)
            n += 1
            if not r.ok:
                bad.append(r.problems[:3])
            time.sleep(0.001)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert n >= 40 and sum(written) >= 150, (n, sum(written))
    assert not bad, bad[:3]
    final = verify(root)
    assert final.ok and final.records == sum(written) + len(final.segments)


def test_a_closed_segment_is_compacted_and_still_verifies(tmp_path: Path) -> None:
    """Compaction rewrites a closed segment's group-commit frames as one batch, records,
    seq and row hashes unchanged, sealed with the head it had before."""
    p = _log(tmp_path / "a", compact=True)
    q = _log(tmp_path / "b", compact=False)
    sp, sq = col.scan(segment_name(p), p.read_bytes()), col.scan(segment_name(q), q.read_bytes())
    assert sp.seal is not None and sq.seal is None
    assert [f.count for f in sp.frames if f.kind == col.K_BATCH] == [30]
    assert len([f for f in sq.frames if f.kind == col.K_ROWS]) == 6
    assert verify(p.parent).ok and verify(q.parent).ok
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    assert strip(read_records(p.parent)) == strip(read_records(q.parent))


def test_compaction_merges_rows_frames_around_bulk_batches_in_seq_order(tmp_path: Path) -> None:
    """Consecutive group commits are built as one batch, a bulk batch between them keeps
    its place, and the segment is rewritten in batches of the batch size: records and seq
    as written, the chain verifies."""
    from engine.audit.compact import compact

    w = AuditWriter(tmp_path / "audit", writer="t", columnar=True, compact=False)
    for i in range(0, 10, 3):
        w.append([_rec(j) for j in range(i, min(10, i + 3))])
    w.append_table(pa.table({"kind": ["bulk"] * 4, "request_id": [f"b{i}" for i in range(4)]}))
    for i in range(10, 17):
        w.append([_rec(i)])
    w.close()
    p = w.path
    before = list(read_records(p.parent, kind=None))[2:]  # after the open and layout records
    assert compact(p, json.loads(p.with_suffix(".head").read_text()), rows=4)
    sc = col.scan(segment_name(p), p.read_bytes())
    assert not sc.problems and sc.seal is not None
    counts = [f.count for f in sc.frames if f.kind == col.K_BATCH]
    assert counts == [4, 4, 4, 4, 4, 1], counts  # layout + 10 rows, the bulk 4, then 7 rows
    assert verify(p.parent).ok
    after = list(read_records(p.parent, kind=None))[2:]
    assert [r["seq"] for r in after] == [r["seq"] for r in before] == list(range(2, 22))
    assert [r.get("request_id") for r in after] == [r.get("request_id") for r in before]


def test_compaction_between_its_two_renames_is_no_alarm(tmp_path: Path) -> None:
    """The segment is replaced before its head: a reader may meet the new segment with the
    old head for a moment. The seal names that head, so it is not tampering."""
    p = _log(tmp_path, compact=False)
    old_head = p.with_suffix(".head").read_text()
    from engine.audit.compact import compact

    assert compact(p, json.loads(old_head))
    p.with_suffix(".head").write_text(old_head)  # as if the head were not yet replaced
    assert verify(p.parent).ok
    head = json.loads(old_head)
    head["hash"] = "1" * 64  # any other head is still an alarm
    p.with_suffix(".head").write_text(json.dumps(head))
    assert not verify(p.parent).ok


def test_tampering_with_a_compacted_segment_is_named(tmp_path: Path) -> None:
    p = _log(tmp_path, compact=True)
    _rewrite(p, lambda b: _set_score(b, 12, 0.77), redigest=True)  # the seal's link breaks
    problems = verify(p.parent).problems
    assert any("record seq 12: content does not match its row hash" in x for x in problems), (
        problems
    )
    q = _log(tmp_path / "seal", compact=True)  # the seal cut off
    sc = col.scan(segment_name(q), q.read_bytes())
    q.write_bytes(q.read_bytes()[: sc.frames[-1].start - col.HEADER.size])
    assert not verify(q.parent).ok
