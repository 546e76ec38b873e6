"""A subject's access request (GDPR art. 15): everything the engine holds about them.

``insight subject export --subject ID`` writes one JSON file: the subject's rows in every
source that carries the entity key (as stored), their rows in the newest snapshot (the
features a model saw; the key as stored there, its keyed hash where it is PII), every
served decision about them (time, app, model version, score, decision, the inputs as
logged and the explanation recomputed with that version's model), every request where no
automated decision was made and why, and the consents on record. The export is itself an
audit record naming the actor and the subject's keyed hash.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from engine.errors import DataError

if TYPE_CHECKING:
    from engine.config.project import ProjectConfig
    from engine.workspace import Workspace


def _plain(v: Any) -> Any:
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if hasattr(v, "item"):
        return v.item()
    return v


def _cell(v: Any) -> Any:
    if isinstance(v, list | tuple | dict):
        return v
    if hasattr(v, "tolist") and getattr(v, "ndim", 0) > 0:  # an array in a cell
        return v.tolist()
    return None if pd.isna(v) else _plain(v)


def _rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _cell(v) for k, v in r.items()} for r in df.to_dict(orient="records")]


def _source_rows(cfg: ProjectConfig, ws: Workspace, subject: str) -> dict[str, Any]:
    from engine.data.sources import read_frame, read_schema, source_path
    from engine.governance.consent import subject_keys

    out: dict[str, Any] = {}
    for name, src in cfg.sources.items():
        if src.entity is None or src.entity not in cfg.entities:
            continue
        key = cfg.entities[src.entity].key
        path = source_path(cfg, name, ws.root)
        if not path.exists():
            continue
        cols = [src.rename.get(c, c) for c in read_schema(src, path).names]
        df = read_frame(cfg, name, ws.root, cols)
        hit = df[subject_keys(df[key]).eq(subject).to_numpy()]
        out[name] = {"key": key, "rows": _rows(hit)}
    return out


def _snapshot_rows(cfg: ProjectConfig, ws: Workspace, subject: str) -> dict[str, Any] | None:
    from engine.features import snapshot as snap
    from engine.governance.consent import subject_keys
    from engine.governance.enforce import key_is_hashed
    from engine.pii import hmac_hex, load_key

    snaps = snap.list_snapshots(ws, cfg.name)
    if not snaps:
        return None
    s = snaps[-1]
    key = s.manifest.get("entity")
    if not key:
        return None
    stored = hmac_hex(load_key(ws.root), subject) if key_is_hashed(cfg, key) else subject
    df = s.read_pandas()
    hit = df[subject_keys(df[key]).eq(stored).to_numpy()]
    return {"snapshot_id": s.id, "key": key, "key_as_stored": stored, "rows": _rows(hit)}


def _decisions(ws: Workspace, subject: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every decision row and every withheld request about the subject, in every app's log
    (ids as logged: the key, or its keyed hash where the app hashes them)."""
    from engine.audit.verify import read_records
    from engine.pii import hmac_hex, load_key

    hashed = hmac_hex(load_key(ws.root), subject)
    decided: list[dict[str, Any]] = []
    withheld: list[dict[str, Any]] = []
    if not ws.audit.is_dir():
        return decided, withheld
    for app_dir in sorted(p for p in ws.audit.iterdir() if p.is_dir()):
        for rec in read_records(app_dir, kind=None):
            ids = rec.get("ids") or []
            rows = [i for i, x in enumerate(ids) if x in (subject, hashed)]
            if not rows:
                continue
            if rec.get("kind") == "withheld":
                for i in rows:
                    withheld.append(
                        {
                            "app": app_dir.name,
                            "time": rec.get("time"),
                            "request_id": rec.get("request_id"),
                            "reason": (rec.get("reasons") or [None] * len(ids))[i],
                            "policy_version": rec.get("policy_version"),
                        }
                    )
            elif rec.get("kind") == "decision":
                scores = rec.get("scores") or []
                versions = rec.get("versions") or []
                inputs = rec.get("inputs") or []
                for i in rows:
                    score = scores[i] if i < len(scores) else None
                    thr = rec.get("threshold")
                    decided.append(
                        {
                            "app": app_dir.name,
                            "time": rec.get("time"),
                            "request_id": rec.get("request_id"),
                            "route": rec.get("route"),
                            "model": rec.get("model"),
                            "version": versions[i] if i < len(versions) else None,
                            "score": score,
                            "threshold": thr,
                            "decision": None if score is None or thr is None else score >= thr,
                            "inputs": dict(
                                zip(rec.get("input_features") or [], inputs[i], strict=False)
                            )
                            if i < len(inputs)
                            else None,
                        }
                    )
    return decided, withheld


def _explain(decided: list[dict[str, Any]]) -> None:
    """Each decision's explanation, recomputed with its version's model on the inputs as
    logged (SHAP values in the family's output space; the score recomputed beside it)."""
    from engine.registry.models import get_version, load_scorer
    from engine.train.families import explainer_for

    cache: dict[tuple[str, str], Any] = {}
    for d in decided:
        if not d["inputs"] or d["model"] is None or d["version"] is None:
            d["explanation"] = None
            continue
        k = (str(d["model"]), str(d["version"]))
        if k not in cache:
            scorer = load_scorer(get_version(*k))
            cache[k] = (scorer, explainer_for(scorer))
        scorer, ex = cache[k]
        x = scorer.schema.frame(pd.DataFrame([d["inputs"]])[list(scorer.features)])
        e = ex.explain(x)
        d["explanation"] = {
            "base_value": float(e.base_value),
            "shap": {f: float(v) for f, v in zip(scorer.features, e.values[0], strict=True)},
            "score_recomputed": float(scorer.proba(x)[0]),
        }


def export_subject(
    cfg: ProjectConfig, ws: Workspace, subject: str, out: Path, *, actor: str
) -> dict[str, Any]:
    """Write the subject's export to ``out`` (whole or not at all); returns its summary.
    A subject the engine holds nothing about is a :class:`DataError` saying so."""
    from engine.audit import AuditWriter
    from engine.governance.enforce import decide, load_ledger
    from engine.governance.live import read_log
    from engine.governance.seal import seal_subject
    from engine.pii import hmac_hex, load_key
    from engine.tracking import use_workspace
    from engine.workspace import atomic_write_bytes

    decide(cfg, "export", cfg.governance.purposes.access, root=ws.root)  # default deny
    subject = subject.strip()
    use_workspace(ws)
    sources = _source_rows(cfg, ws, subject)
    snapshot = _snapshot_rows(cfg, ws, subject)
    decided, withheld = _decisions(ws, subject)
    _explain(decided)
    consents: list[dict[str, Any]] = []
    led = load_ledger(cfg, ws.root)
    if led is not None:
        ev = led.events[led.events["subject"] == subject]
        consents += [{**r, "recorded_in": "consent source"} for r in _rows(ev)]
    log = read_log(ws.root)
    if not log.empty:
        mine = log[log["subject"].astype(str) == subject]
        consents += [{**r, "recorded_in": "workspace consent log"} for r in _rows(mine)]
    n_rows = sum(len(v["rows"]) for v in sources.values())
    held = n_rows + len(decided) + len(withheld) + len(consents)
    held += len(snapshot["rows"]) if snapshot else 0
    if held == 0:
        raise DataError(
            f"the engine holds nothing about subject '{subject}' (no source row, snapshot "
            "row, decision or consent). Fix: check the key (as the sources spell it)."
        )
    doc = {
        "subject": subject,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "project": cfg.name,
        "sources": sources,
        "snapshot": snapshot,
        "decisions": decided,
        "no_automated_decision": withheld,
        "consents": consents,
    }
    atomic_write_bytes(out, json.dumps(doc, indent=2, default=str).encode())
    summary = {
        "source_rows": n_rows,
        "snapshot_rows": len(snapshot["rows"]) if snapshot else 0,
        "decisions": len(decided),
        "withheld": len(withheld),
        "consents": len(consents),
        "output": str(out),
    }
    w = AuditWriter(ws.audit / "control", writer="governance")
    try:
        w.append(
            [
                seal_subject(
                    {
                        "kind": "subject_export",
                        "subject_hash": hmac_hex(load_key(ws.root), subject),
                        "by": actor,
                        "counts": {k: v for k, v in summary.items() if k != "output"},
                        "time": time.time(),
                    },
                    ws.root,
                )
            ]
        )
    finally:
        w.close()
    return summary
