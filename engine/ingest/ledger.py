"""The ingestion ledger: one record per run of ``insight ingest`` for a source, written to
the audit log (``<workspace>/audit/ingest/``, hash-chained like every audit segment and
fsynced: the ledger record is the run's commit point). Each record also names the hash of
the source's previous record (``prev_run``), so a source's runs form one chain across the
segments of the processes that wrote them; :func:`verify_ledger` checks it.

A run record: source, run number, status (``landed``, ``blocked``, ``failed``), the
watermark before and after, rows read / landed / already landed / quarantined, the checks'
results, and the landed files with their SHA-256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.audit import AuditWriter
from engine.audit.verify import read_records
from engine.config.base import HasSources
from engine.workspace import Workspace

APP = "ingest"


def ledger_dir(ws: Workspace) -> Path:
    return ws.audit / APP


def runs(ws: Workspace, source: str | None = None) -> list[dict[str, Any]]:
    """The ledger's run records (of one source, or all), in run order."""
    root = ledger_dir(ws)
    if not root.is_dir():
        return []
    recs = [
        r
        for r in read_records(root, kind="ingest_run")
        if source is None or r.get("source") == source
    ]
    return sorted(recs, key=lambda r: (str(r.get("source")), int(r["run"])))


def landed_runs(ws: Workspace, source: str) -> list[dict[str, Any]]:
    return [r for r in runs(ws, source) if r.get("status") == "landed"]


def next_run(ws: Workspace, source: str) -> int:
    return max((int(r["run"]) for r in runs(ws, source)), default=0) + 1


def last_watermark(ws: Workspace, source: str) -> dict[str, Any] | None:
    """The watermark after the last landed run: ``{column, value, kind}``, or None."""
    for r in reversed(landed_runs(ws, source)):
        wm = r.get("watermark_after")
        if wm:
            return dict(wm)
    return None


def ingested(ws: Workspace, cfg: HasSources, name: str) -> dict[str, Any]:
    """Lineage of a source read now: for a database source, its kind and the ingestion
    runs whose rows the read sees (every landed run so far: the raw store is append-only),
    with their watermarks and ledger record hashes; {} for a file."""
    if not cfg.sources[name].is_database:
        return {}
    return {
        "kind": cfg.sources[name].kind,
        "ingest_runs": [
            {
                "run": r["run"],
                "ingest_date": r.get("ingest_date"),
                "watermark_after": (r.get("watermark_after") or {}).get("value"),
                "rows_landed": r.get("rows_landed"),
                "record_hash": r.get("hash"),
            }
            for r in landed_runs(ws, name)
        ],
    }


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Ledger:
    """Appends run records for one process (a segment of its own under audit/ingest)."""

    ws: Workspace
    _writer: AuditWriter | None = None

    def append(self, rec: dict[str, Any]) -> dict[str, Any]:
        prev = runs(self.ws, str(rec["source"]))
        full = {"kind": "ingest_run", **rec, "prev_run": prev[-1]["hash"] if prev else None}
        if self._writer is None:
            self._writer = AuditWriter(ledger_dir(self.ws), writer="ingest", fsync=True)
        self._writer.append([full])
        return full

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def verify_ledger(ws: Workspace) -> list[str]:
    """Problems in the ledger's cross-run chain: per source, runs numbered 1, 2, ... each
    naming the previous record's hash; a landed run's files exist with their hashes."""
    problems: list[str] = []
    by_source: dict[str, list[dict[str, Any]]] = {}
    for r in runs(ws):
        by_source.setdefault(str(r["source"]), []).append(r)
    for src, recs in by_source.items():
        prev: str | None = None
        for i, r in enumerate(recs, start=1):
            if int(r["run"]) != i:
                problems.append(f"ingest ledger '{src}': run {r['run']} where run {i} was expected")
            if r.get("prev_run") != prev:
                problems.append(
                    f"ingest ledger '{src}': run {r['run']} does not name run {i - 1}'s record"
                )
            prev = r.get("hash")
            for f in r.get("files") or []:
                p = ws.root / f["path"]
                if not p.is_file():
                    problems.append(
                        f"ingest ledger '{src}': run {r['run']}'s file {f['path']} is missing"
                    )
                elif file_sha256(p) != f["sha256"]:
                    problems.append(
                        f"ingest ledger '{src}': run {r['run']}'s file {f['path']} was changed"
                    )
    return problems
