"""Verifying the audit log: every chain, every head, under live writers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.audit import columnar as col
from engine.audit.chain import genesis, split_line, split_line_v1
from engine.audit.fastcheck import check_clean

SUFFIXES = (".jsonl", col.SUFFIX)


def segment_name(path: Path) -> str:
    return path.name.removesuffix(col.SUFFIX).removesuffix(".jsonl")


def head_path(path: Path) -> Path:
    return path.with_name(segment_name(path) + ".head")


def _format(lines: list[bytes]) -> int:
    """The segment's format, from its first record (format 1 had no ``format`` field)."""
    for raw in lines:
        if raw.strip():
            try:
                return int(json.loads(raw).get("format", 1))
            except (ValueError, AttributeError, TypeError):
                return 2
    return 2


def _names(line: bytes) -> str | None:
    try:
        return str(json.loads(line).get("segment"))
    except (ValueError, AttributeError):
        return None


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
    if path.suffix == col.SUFFIX:
        return read_columnar(path)[0]
    return read_segment(path)[0]


def read_columnar(path: Path) -> tuple[SegmentCheck, list[pa.RecordBatch]]:
    """Verify a format-3 segment (every frame's digest, the seq ranges, the head) and return
    its record batches (zero-copy over the mapped file): what was verified."""
    chk = SegmentCheck(str(path), 0)
    head, head_problem = _read_head(head_path(path))  # before the records: see verify_segment
    if head_problem:
        chk.problems.append(head_problem)
    try:
        buf = col.read_file(path)
    except FileNotFoundError:
        chk.problems.append("segment file removed while it was being verified")
        return chk, []
    sc = col.scan(segment_name(path), buf)
    chk.records = sc.records
    if sc.problems:
        chk.problems += sc.problems + col.name_damage(buf, sc)
    _fragment(chk, sc.fragment, head)
    if head is not None:
        head_seq = int(head["seq"])
        if sc.last_seq < head_seq:
            chk.problems.append(
                f"ends at seq {sc.last_seq} but its head file says seq {head_seq}: "
                f"{head_seq - sc.last_seq} record(s) removed from the end"
            )
        else:
            at = [f for f in sc.frames if f.count and f.first + f.count - 1 == head_seq]
            last = sc.frames[-1].digest.hex() if sc.frames else ""
            sealed = (
                sc.seal is not None
                and head_seq == sc.last_seq
                and (
                    head["hash"] == last
                    or sc.seal.get("head_before") == {"seq": head_seq, "hash": head["hash"]}
                )
            )  # compacted: its head names the seal, or (for a moment) the head before
            if sealed:
                pass
            elif not at or at[0].digest.hex() != head["hash"]:
                chk.problems.append(
                    f"record seq {head_seq}'s hash differs from the head file's: modified"
                )
    batches, problems = col.decode(buf, sc.frames)
    for p in problems:
        if p not in chk.problems:
            chk.problems.append(p)
    return chk, batches


def read_segment(path: Path) -> tuple[SegmentCheck, bytes]:
    """Verify a segment and return the bytes of its complete records (what was verified):
    one read serves both the check and a reader."""
    chk = SegmentCheck(str(path), 0)
    head, head_problem = _read_head(path.with_suffix(".head"))
    if head_problem:
        chk.problems.append(head_problem)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        chk.problems.append("segment file removed while it was being verified")
        return chk, b""
    cut = data.rfind(b"\n") + 1
    complete, fragment = data[:cut], bool(data[cut:].strip())
    if complete[:2048].find(b'"format":2') >= 0:  # format 2 (first record): try the fast check
        segment = path.name.removesuffix(".jsonl")
        clean, n = check_clean(segment, complete, head)
        if clean:
            chk.records = n
            _fragment(chk, fragment, head)
            return chk, complete
    lines, _ = _complete_lines(complete)
    _check_lines(chk, path, lines, fragment, head)
    return chk, complete


def _fragment(chk: SegmentCheck, fragment: bool, head: dict[str, Any] | None) -> None:
    if fragment:
        if head is not None and head.get("closed"):
            chk.problems.append("the last record is incomplete in a closed segment: truncated")
        else:
            chk.in_progress = True


def _check_lines(
    chk: SegmentCheck,
    path: Path,
    lines: list[bytes],
    fragment: bool,
    head: dict[str, Any] | None,
) -> None:
    segment = path.name.removesuffix(".jsonl")
    _fragment(chk, fragment, head)
    prev = genesis(segment)
    expect = 0
    head_seq = int(head["seq"]) if head else -1
    hash_at_head: str | None = None
    split = split_line if _format(lines) >= 2 else split_line_v1
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        parts = split(raw)
        if parts is None:
            chk.problems.append(f"line {lineno}: not a chained record: record modified")
            continue
        seq, rec_prev, rec_hash, matches = parts
        if not matches:
            chk.problems.append(
                f"line {lineno} (seq {seq}): content does not match its hash: modified"
            )
        elif seq == 0 and (_names(raw) != segment or rec_prev != genesis(segment)):
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
        elif rec_prev != prev:
            chk.problems.append(
                f"line {lineno} (seq {seq}): 'prev' does not match the record before it"
            )
        prev = rec_hash
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


def _listing(root: Path) -> tuple[set[Path], set[Path]]:
    """Segment and head files under ``root``, from one walk of the folder."""
    segs: set[Path] = set()
    heads: set[Path] = set()
    for p in root.rglob("*"):
        if p.name.startswith("."):
            continue  # atomic-write temp files
        if p.suffix in SUFFIXES:
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
    named = {head_path(p) for p in segs}
    for head in heads:
        for suffix in SUFFIXES:
            seg = head.with_suffix(suffix)
            if seg not in segs and seg.exists():
                segs.add(seg)  # created while the folder was being listed
                named.add(head)
    checks = [verify_segment(p) for p in sorted(segs)]
    for head in sorted(heads - named):
        checks.append(
            SegmentCheck(
                str(head.with_suffix(".jsonl")), 0, ["segment file removed (its head file remains)"]
            )
        )
    return VerifyResult(checks)


def _records_of(p: Path) -> Iterator[dict[str, Any]]:
    """A segment's records; sealed ones opened (engine.governance.seal: rows of erased
    subjects left out)."""
    for rec in _raw_records_of(p):
        if rec.get("sealed") is not None:
            from engine.governance.keys import for_audit
            from engine.governance.seal import unseal_record

            rec = unseal_record(rec, for_audit(p.parent))
        yield rec


def _raw_records_of(p: Path) -> Iterator[dict[str, Any]]:
    if p.suffix == col.SUFFIX:
        buf = col.read_file(p)
        yield from col.records(buf, col.scan(segment_name(p), buf, check=False))
        return
    lines, _ = _complete_lines(p.read_bytes())
    for line in lines:
        if line.strip():
            yield json.loads(line)


def read_records(root: Path, kind: str | None = "decision") -> Iterator[dict[str, Any]]:
    """Records of every segment (``kind=None``: all, including segment-open and layout
    records), as dicts; a decision's inputs are expanded to ``inputs`` (one list per row, in
    the layout's feature order: numeric, then categorical). A record still being written
    (no newline yet) is not read. Sealed records are read opened, less the rows of erased
    subjects (engine.governance.seal). For analysis of large windows use
    :func:`engine.audit.window.read_window` (columnar)."""
    for p in segments(root):
        layouts: dict[str, dict[str, Any]] = {}
        for rec in _records_of(p):
            if rec.get("kind") == "layout":
                layouts[rec["layout"]] = rec
            if kind is not None and rec.get("kind") != kind:
                continue
            if "x" in rec or "xc" in rec:
                x, xc = rec.get("x") or [], rec.get("xc") or []
                n = max(len(x), len(xc))
                rec["inputs"] = [[*(x[i] if x else []), *(xc[i] if xc else [])] for i in range(n)]
                lay = layouts.get(str(rec.get("layout")))
                if lay is not None:
                    rec["input_features"] = [*lay["numeric"], *lay["categorical"]]
            if "g" in rec and str(rec.get("layout")) in layouts:
                names = layouts[str(rec["layout"])].get("groups") or []
                rec["groups"] = {a: [row[j] for row in rec["g"]] for j, a in enumerate(names)}
            yield rec
