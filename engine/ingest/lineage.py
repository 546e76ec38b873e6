"""Lineage: from a served decision (its request id) or a model version back to the
ingestion runs that brought its training rows.

decision (audit log: model, versions) -> model version (registry tag ``snapshot_id``) ->
snapshot manifest (``sources.NAME.ingest_runs``: run, watermark, the ledger record's hash)
-> ledger records (checked to exist with those hashes).
"""

from __future__ import annotations

from typing import Any

from engine.errors import DataError
from engine.features import snapshot as snap
from engine.ingest import ledger
from engine.workspace import Workspace


def find_decision(ws: Workspace, request_id: str) -> dict[str, Any]:
    from engine.audit.verify import read_records

    for app in sorted(p for p in ws.audit.iterdir() if p.is_dir()) if ws.audit.is_dir() else []:
        if app.name in (ledger.APP, "control"):
            continue
        for rec in read_records(app, kind="decision"):
            if rec.get("request_id") == request_id:
                return {**rec, "app": app.name}
    raise DataError(
        f"no decision with request id {request_id!r} in the audit log ({ws.audit}). Fix: "
        "copy the id from a /predict answer (request_id) or `insight audit` output."
    )


def trace_version(ws: Workspace, project: str, model: str, version: str) -> dict[str, Any]:
    """A model version's snapshot and, per source, the ingestion runs behind it."""
    from mlflow.tracking import MlflowClient

    from engine.tracking import use_workspace

    use_workspace(ws)
    mv = MlflowClient().get_model_version(model, version)
    sid = (mv.tags or {}).get("snapshot_id")
    if not sid:
        raise DataError(f"model {model} version {version} names no snapshot (tag snapshot_id).")
    s = snap.find(ws, project, sid)
    recorded = {(r["source"], int(r["run"])): r for r in ledger.runs(ws)}
    sources = {}
    for name, info in (s.manifest.get("sources") or {}).items():
        runs = []
        for r in info.get("ingest_runs") or []:
            rec = recorded.get((name, int(r["run"])))
            runs.append(
                {
                    **r,
                    "in_ledger": rec is not None and rec.get("hash") == r.get("record_hash"),
                    "since": rec.get("since") if rec else None,
                }
            )
        sources[name] = {
            "kind": info.get("kind", "file"),
            "fingerprint": info.get("fingerprint"),
            "ingest_runs": runs,
        }
    return {
        "model": model,
        "version": str(version),
        "snapshot_id": sid,
        "snapshot_created_at": s.manifest.get("created_at"),
        "sources": sources,
    }


def trace_request(ws: Workspace, project: str, request_id: str) -> dict[str, Any]:
    d = find_decision(ws, request_id)
    out = {
        "request_id": request_id,
        "app": d["app"],
        "time": d.get("time"),
        "model": d.get("model"),
        "versions": d.get("versions"),
    }
    out["lineage"] = [
        trace_version(ws, project, str(d["model"]), str(v)) for v in d.get("versions") or []
    ]
    return out
