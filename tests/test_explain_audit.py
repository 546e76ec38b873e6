"""The hash-chained audit log (engine.audit): unit tier, no Ray. (SHAP per row is checked
per model family in tests/test_families.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.audit import AuditWriter, read_records, verify


def _log(tmp_path: Path, n: int = 30) -> Path:
    w = AuditWriter(tmp_path / "audit", writer="t", anchor_every=5)
    for i in range(n):
        w.append([{"kind": "decision", "request_id": f"r{i}", "scores": [i / n]}])
    w.close()
    return w.path


def test_audit_chain_verifies_and_keeps_every_record(tmp_path: Path) -> None:
    p = _log(tmp_path)
    res = verify(p.parent)
    assert res.ok, res.problems
    assert [r["request_id"] for r in read_records(p.parent)] == [f"r{i}" for i in range(30)]


def _tamper(tmp_path: Path, how: str) -> list[str]:
    p = _log(tmp_path)
    lines = p.read_text().splitlines()
    if how == "modify":
        rec = json.loads(lines[10])
        rec["scores"] = [0.99]
        lines[10] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
    elif how == "remove":
        del lines[10]
    elif how == "reorder":
        lines[10], lines[11] = lines[11], lines[10]
    elif how == "truncate":
        lines = lines[:-3]
    elif how == "rehash":  # edit and recompute this record's hash: the next link breaks
        from engine.audit import encode

        rec = json.loads(lines[10])
        rec["scores"] = [0.99]
        seq, prev = rec.pop("seq"), rec.pop("prev")
        rec.pop("hash")
        lines[10], _ = encode(rec, seq, prev)  # a valid line of its own
    elif how == "delete_segment":
        p.unlink()
        return verify(p.parent).problems
    p.write_text("\n".join(lines) + "\n")
    return verify(p.parent).problems


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("modify", "modified"),
        ("remove", "removed"),
        ("reorder", "reordered"),
        ("truncate", "removed from the end"),
        ("rehash", "'prev' does not match"),
        ("delete_segment", "segment file removed"),
    ],
)
def test_audit_verify_detects_tampering(tmp_path: Path, how: str, words: str) -> None:
    problems = _tamper(tmp_path, how)
    assert problems and any(words in p for p in problems), problems


def test_audit_cli_verify(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from engine.cli import app

    p = _log(tmp_path)
    ok = CliRunner().invoke(app, ["audit", "verify", "--path", str(p.parent)])
    assert ok.exit_code == 0 and "intact" in ok.output
    bad = tmp_path / "copy"
    shutil.copytree(p.parent, bad)
    f = next(bad.glob("*.jsonl"))
    lines = f.read_text().splitlines()
    del lines[5]
    f.write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(app, ["audit", "verify", "--path", str(bad)])
    assert r.exit_code == 1 and "removed" in r.output and "NOT intact" in r.output


def test_verify_is_correct_under_live_writers(tmp_path: Path) -> None:
    """Regression: `verify` listed the folder twice, so a segment opened and anchored
    between the two listings was reported as deleted, and a head replaced after its
    segment was read looked like truncation (91 of 120 false alarms before the fix)."""
    import threading
    import time

    root = tmp_path / "audit"
    root.mkdir()
    stop = threading.Event()
    written = [0] * 4

    def writer(k: int) -> None:
        while not stop.is_set():
            w = AuditWriter(root, writer=f"w{k}", anchor_every=3)
            for j in range(7):
                w.append([{"kind": "decision", "request_id": f"{k}-{j}", "scores": [0.5] * 8}])
                written[k] += 1
            w.close()

    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    results = []
    overlapped = 0  # verifies during which some writer appended
    # Stop on work done by *both* sides, not on the verifier's count alone: on a fast
    # machine 60 verifies could finish before the writers had written 100 records
    # (CI saw 77), which made the overlap check fail at random. Bounded by the deadline.
    deadline = time.monotonic() + 30.0
    try:
        while time.monotonic() < deadline and not (overlapped >= 30 and sum(written) >= 200):
            before = sum(written)
            results.append(verify(root))
            overlapped += sum(written) > before
            time.sleep(0.001)  # let the writer threads run between verifies
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert overlapped >= 30 and sum(written) >= 200, (overlapped, sum(written), len(results))
    false_alarms = [r.problems[:3] for r in results if not r.ok]
    assert not false_alarms, f"{len(false_alarms)} of {len(results)}: {false_alarms[:3]}"
    final = verify(root)
    assert final.ok and final.records == sum(written) + len(final.segments)  # + open markers


def test_a_head_replaced_right_after_its_records_were_read_is_no_alarm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving the live-writers test hits only now and then, made certain: just
    after the verifier has read a segment's records, its writer appends more and replaces
    the head. A verifier that read the head *after* the records would see a head naming
    records it never read and report them removed (fails with the head read second)."""
    w = AuditWriter(tmp_path / "audit", writer="live", anchor_every=2)
    w.append([{"kind": "decision", "request_id": f"r{i}"} for i in range(4)])
    seg, real = w.path, Path.read_bytes
    moved = []

    def read_then_write(self: Path) -> bytes:
        data = real(self)
        if self == seg and not moved:
            moved.append(w.append([{"kind": "decision", "request_id": f"x{i}"} for i in range(3)]))
        return data

    monkeypatch.setattr(Path, "read_bytes", read_then_write)
    live = verify(seg.parent)
    assert moved, "the writer did move between the reads"
    assert live.ok, live.problems
    monkeypatch.undo()
    w.close()
    final = verify(seg.parent)
    assert final.ok and final.records == 1 + 4 + 3  # the open marker and every record


def test_a_record_being_written_is_not_judged_until_the_segment_closes(tmp_path: Path) -> None:
    w = AuditWriter(tmp_path / "audit", writer="live", anchor_every=2)
    w.append([{"kind": "decision", "request_id": "r0"}, {"kind": "decision", "request_id": "r1"}])
    with w.path.open("a") as f:  # half a record, as a live writer may leave it for a moment
        f.write('{"kind":"decision","req')
    live = verify(w.path.parent)
    assert live.ok and live.segments[0].in_progress and live.records == 3
    assert [r["request_id"] for r in read_records(w.path.parent)] == ["r0", "r1"]
    w.close()  # the head now says closed: a fragment left in the file is truncation
    with w.path.open("a") as f:
        f.write('{"kind":"decision","req')
    closed = verify(w.path.parent)
    assert not closed.ok and any("incomplete" in p for p in closed.problems)


def test_head_hash_is_checked_even_when_records_follow_it(tmp_path: Path) -> None:
    w = AuditWriter(tmp_path / "audit", writer="t", anchor_every=4)
    for i in range(6):  # head anchored at seq 3; records 4..6 follow it
        w.append([{"kind": "decision", "request_id": f"r{i}"}])
    head = json.loads(w.head_path.read_text())
    assert head["seq"] < 6
    head["hash"] = "0" * 64
    w.head_path.write_text(json.dumps(head))
    assert any("head file" in p for p in verify(w.path.parent).problems)


def test_format_1_segments_still_verify(tmp_path: Path) -> None:
    """Segments written before format 2 (sorted canonical JSON, hash over prev + record)."""
    from engine.audit import genesis, record_hash

    root = tmp_path / "audit"
    root.mkdir()
    seg = "20260101T000000-old-1-abcdef01"
    prev, lines = genesis(seg), []
    for i, rec in enumerate(
        [{"kind": "segment-open", "segment": seg}]
        + [{"kind": "decision", "request_id": f"r{j}"} for j in range(5)]
    ):
        rec = {**rec, "seq": i, "prev": prev}
        rec["hash"] = record_hash(prev, rec)
        prev = rec["hash"]
        lines.append(json.dumps(rec, sort_keys=True, separators=(",", ":")))
    (root / f"{seg}.jsonl").write_text("\n".join(lines) + "\n")
    assert verify(root).ok and verify(root).records == 6
    bad = json.loads(lines[3])
    bad["request_id"] = "forged"
    lines[3] = json.dumps(bad, sort_keys=True, separators=(",", ":"))
    (root / f"{seg}.jsonl").write_text("\n".join(lines) + "\n")
    assert any("modified" in p for p in verify(root).problems)
