"""Erasure (GDPR art. 17, CCPA 1798.105): a subject removed from every copy the engine keeps.

``insight erase --subject ID --reason TEXT`` (or ``--from requests.csv``, a queue) runs one
request through every store, each step idempotent:

1. a *pending* file (``governance/erasure/pending/<request>.json``) says what is being
   erased; it is the only place the subject's id is written, and it is removed at the end;
2. the rows of the subject are removed, each file rewritten whole (temp file, then rename),
   from: the file sources inside the workspace (generated data, raw stores that
   ``insight ingest`` lands; others with ``governance.erasure.rewrite_sources``), the consent
   log, every feature snapshot (its manifest records the erasure; a snapshot under a
   declared legal hold is kept as it is, and the receipt says so), the online tables, batch
   outputs, labels, the review queue and its verdicts, and the training scratch (Ray
   Tune's trial checkpoints: models of the data);
3. the subject's keys are deleted from the key store (engine.governance.keys): every sealed
   audit record about them stays, chained and verifiable, and can no longer be read.
   Records written in the clear (before sealing, or with ``seal_audit: false``) are counted
   and named in the receipt: they cannot be changed without breaking the chain;
4. the registered model versions trained on a snapshot that held the subject are listed
   with the decision the policy takes (``erasure`` rule; ``governance.erasure.retrain``):
   ``now`` asks the monitor loop for a retrain (run exactly once), ``next_training`` leaves
   it to the next scheduled training;
5. the *receipt*, an audit record in the control log: the request id, reason, actor, each
   store touched (path, rows removed), the models and decisions, the times requested and
   done against the GDPR (30 days) and CCPA (45 days) clocks. It holds no identifier of the
   subject. It is written once: a resumed request finds it and does not write it again.

A crash anywhere resumes with ``insight erase --resume`` (or the same ``--subject`` again):
the pending file names the steps done; a step run twice removes nothing the second time.
A subject the engine holds nothing about is an error saying so, and nothing is written.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import DataError
from engine.governance.rows import (
    csv_holds,
    drop_csv_rows,
    drop_lines,
    drop_rows,
    files,
    holds,
)
from engine.workspace import atomic_write_text

if TYPE_CHECKING:
    from engine.config.project import ProjectConfig
    from engine.workspace import Workspace

GDPR_DAYS, CCPA_DAYS = 30, 45
STEPS = ("sources", "consents", "snapshots", "online", "batch_outputs", "labels", "review",
         "scratch", "keys", "models", "receipt")  # fmt: skip


@dataclass
class Erasure:
    """One request as it runs (and as its pending file keeps it)."""

    request_id: str
    subject: str
    reason: str
    actor: str
    requested_at: float
    done: list[str] = field(default_factory=list)
    touched: list[dict[str, Any]] = field(default_factory=list)
    snapshots_held: list[str] = field(default_factory=list)  # snapshots that had the subject
    models: list[dict[str, Any]] = field(default_factory=list)
    receipt: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1, default=str)


def erasure_dir(ws: Workspace) -> Path:
    return ws.root / "governance" / "erasure"


def _pending(ws: Workspace, rid: str) -> Path:
    return erasure_dir(ws) / "pending" / f"{rid}.json"


def _save(ws: Workspace, e: Erasure) -> None:
    p = _pending(ws, e.request_id)
    atomic_write_text(p, e.to_json())
    p.chmod(0o600)


def pending(ws: Workspace) -> list[Erasure]:
    d = erasure_dir(ws) / "pending"
    out = []
    for p in sorted(d.glob("*.json")) if d.is_dir() else []:
        out.append(Erasure(**json.loads(p.read_text(encoding="utf-8"))))
    return out


# ---- matching the subject in a table --------------------------------------------------


def forms(cfg: ProjectConfig, ws: Workspace, subject: str) -> list[str]:
    """The subject as the stores hold them: the id, and its keyed hash (PII columns)."""
    from engine.governance.consent import subject_keys
    from engine.pii import hmac_hex, load_key

    s = str(subject_keys([subject]).iloc[0] or "")  # "233.0" is subject 233, as tables say
    return [s, hmac_hex(load_key(ws.root), s)]


# ---- the stores -----------------------------------------------------------------------


def _sources(cfg: ProjectConfig, ws: Workspace, e: Erasure, keys: list[str]) -> None:
    from engine.data.sources import source_path

    root = ws.root.resolve()
    c = cfg.governance.consent
    for name, src in cfg.sources.items():
        cols = []
        if src.entity is not None and src.entity in cfg.entities:
            cols.append(cfg.entities[src.entity].key)
        if c is not None and c.source == name:
            cols.append(c.subject)
        if not cols:
            continue
        raw = {v: k for k, v in src.rename.items()}
        cols = [raw.get(x, x) for x in cols]
        path = source_path(cfg, name, ws.root).resolve()
        inside = path.is_relative_to(root)
        if not (inside or cfg.governance.erasure.rewrite_sources):
            e.touched.append(
                {"store": "source", "name": name, "path": str(path), "action": "not managed",
                 "note": f"{path} is outside the workspace: erase the subject there, or set "
                 "governance.erasure.rewrite_sources: true to let the engine rewrite it"}
            )  # fmt: skip
            continue
        n = 0
        if src.format == "csv" or path.suffix.lower() in (".csv", ".tsv", ".txt"):
            for f in files(path, path.suffix or ".csv"):
                n += drop_csv_rows(f, cols[0], keys)
        else:
            for f in files(path, ".parquet"):
                n += drop_rows(f, cols, keys)
        if n:
            e.touched.append({"store": "source", "name": name, "path": str(path), "rows": n})


def _consents(cfg: ProjectConfig, ws: Workspace, e: Erasure, keys: list[str]) -> None:
    from engine.governance.live import log_dir

    n = sum(drop_lines(p, ["subject"], keys) for p in files(log_dir(ws.root), ".jsonl"))
    if n:
        e.touched.append({"store": "consent log", "path": str(log_dir(ws.root)), "rows": n})


def _snapshots(cfg: ProjectConfig, ws: Workspace, e: Erasure, keys: list[str]) -> None:
    hold = set(_policy(cfg).get("legal_hold") or cfg.governance.erasure.legal_hold)
    for proj in (
        sorted(p for p in ws.features.iterdir() if p.is_dir()) if ws.features.is_dir() else []
    ):
        for snap in sorted(p for p in proj.iterdir() if (p / "manifest.json").is_file()):
            man = json.loads((snap / "manifest.json").read_text(encoding="utf-8"))
            ent = str(man.get("entity") or "")
            cols = [x for x in (ent, "subject", "id") if x]
            had = any(holds(f, cols, keys) for f in files(snap / "data", ".parquet"))
            if not had:
                continue
            if snap.name not in e.snapshots_held:
                e.snapshots_held.append(snap.name)
            if snap.name in hold:
                e.touched.append(
                    {"store": "snapshot", "id": snap.name, "path": str(snap),
                     "action": "kept: legal hold (governance.erasure.legal_hold)"}
                )  # fmt: skip
                continue
            n = sum(drop_rows(f, cols, keys) for f in files(snap / "data", ".parquet"))
            done = [x for x in man.setdefault("erasures", []) if x["request"] == e.request_id]
            if done:  # a resumed request: one entry, its rows summed
                done[0]["rows_removed"] += n
            else:
                man["erasures"].append(
                    {"request": e.request_id, "rows_removed": n, "at": time.time()}
                )
            atomic_write_text(snap / "manifest.json", json.dumps(man, indent=2, default=str))
            e.touched.append({"store": "snapshot", "id": snap.name, "path": str(snap), "rows": n})


def _online(cfg: ProjectConfig, ws: Workspace, e: Erasure, keys: list[str]) -> None:
    cols = sorted({ent.key for ent in cfg.entities.values()})
    for f in files(ws.online, ".parquet"):
        n = drop_rows(f, cols, keys)
        if n:
            e.touched.append({"store": "online table", "path": str(f.parent), "rows": n})


def _batch_outputs(cfg: ProjectConfig, ws: Workspace, e: Erasure, keys: list[str]) -> None:
    from engine.audit.verify import read_records

    if not (ws.audit / "batch").is_dir():
        return
    cols = [*sorted({ent.key for ent in cfg.entities.values()}), "id", "subject"]
    seen: set[str] = set()
    for r in read_records(ws.audit / "batch", kind="batch"):
        out = Path(str(r.get("output", "")))
        if not str(r.get("output", "")) or str(out) in seen or not out.exists():
            continue
        seen.add(str(out))
        n = 0
        if out.suffix.lower() == ".csv":
            n = sum(drop_csv_rows(out, c, keys) for c in cols)
        else:
            n = sum(drop_rows(f, cols, keys) for f in files(out, ".parquet"))
        if n:
            e.touched.append({"store": "batch output", "path": str(out), "rows": n})


def _labels(cfg: ProjectConfig, ws: Workspace, e: Erasure, keys: list[str]) -> None:
    cols = ["id", "subject", *sorted({ent.key for ent in cfg.entities.values()})]
    for f in files(ws.labels, ".parquet"):
        n = drop_rows(f, cols, keys)
        if n:
            e.touched.append({"store": "labels", "path": str(f), "rows": n})


def _review(cfg: ProjectConfig, ws: Workspace, e: Erasure, keys: list[str]) -> None:
    from engine.governance.review import review_dir

    d = review_dir(ws)
    for f in files(d, ".jsonl"):
        n = drop_lines(f, ["subject_hash", "subject", "id"], keys)
        if n:
            e.touched.append({"store": "review queue", "path": str(f), "rows": n})


def _scratch(cfg: ProjectConfig, ws: Workspace, e: Erasure, keys: list[str]) -> None:
    """Models of the data in scratch folders: Ray Tune's trial checkpoints (kept to resume
    an interrupted search; a search resumed after an erasure restarts its trials) and
    leftover best-trial copies. The registered models are listed by the models step."""
    import shutil

    gone = 0
    found = [*ws.tune.glob("*/*/checkpoint_*")] if ws.tune.is_dir() else []
    found += [*ws.scratch.glob("best-*")] if ws.scratch.is_dir() else []
    for d in found:
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
            gone += 1
    if gone:
        e.touched.append(
            {"store": "training scratch", "path": str(ws.tune), "checkpoints_removed": gone,
             "action": f"{gone} trial checkpoint(s) removed"}
        )  # fmt: skip


def _keys(cfg: ProjectConfig, ws: Workspace, e: Erasure, keys: list[str]) -> None:
    from engine.governance.keys import KeyStore, store_root

    root = store_root(ws.root)
    gone = 0
    if (root / "subjects.db").is_file():
        ks = KeyStore(root, create=False)
        try:
            gone = sum(1 for k in keys if ks.erase(k) is not None)
        finally:
            ks.close()
    clear = clear_records(ws, keys)
    e.touched.append(
        {"store": "audit log", "path": str(ws.audit), "keys_deleted": gone,
         "action": "sealed records unreadable (their key deleted); chain unchanged",
         "records_in_clear": clear}
    )  # fmt: skip


def clear_records(ws: Workspace, keys: list[str]) -> int:
    """Served records that name the subject in the clear (not sealed): written before
    sealing or with it off. They stay (the chain would break); the receipt counts them."""
    from engine.audit.verify import segments
    from engine.audit.window import read_segment_table

    n = 0
    want = pa.array(keys, pa.string())
    for app in sorted(d for d in ws.audit.iterdir() if d.is_dir()) if ws.audit.is_dir() else []:
        for seg in segments(app):
            t = read_segment_table(seg, float("-inf"), float("inf"), unseal=False).table
            if t is None or "ids" not in t.column_names:
                continue
            ids = t.column("ids").combine_chunks()
            if ids.null_count == len(ids):
                continue
            flat = pc.list_flatten(ids)
            n += int(pc.sum(pc.is_in(flat, value_set=want)).as_py() or 0)
    return n


def _models(cfg: ProjectConfig, ws: Workspace, e: Erasure, keys: list[str]) -> None:
    """Model versions trained on a snapshot that held the subject, with the decision."""
    from mlflow.tracking import MlflowClient

    from engine.tracking import use_workspace

    decision = str(_policy(cfg).get("retrain") or cfg.governance.erasure.retrain)
    held = set(e.snapshots_held)
    if not held:
        return
    use_workspace(ws)
    client = MlflowClient()
    for mv in client.search_model_versions():
        sid = (mv.tags or {}).get("snapshot_id")
        if sid in held:
            e.models.append(
                {"model": mv.name, "version": str(mv.version), "snapshot": sid,
                 "decision": decision}
            )  # fmt: skip
            client.set_model_version_tag(
                mv.name, str(mv.version), "erasure.retrain", f"{decision} ({e.request_id})"
            )
    if decision == "now" and e.models:
        from engine.monitor.alerting import AlertState
        from engine.monitor.store import state_path

        state = AlertState.load(state_path(ws))
        if not any(r.get("incident") == e.request_id for r in state.retrains):
            state.retrains.append(
                {"rule": "erasure", "incident": e.request_id, "at": time.time(),
                 "status": "requested", "app": "insight"}
            )  # fmt: skip
            state.save()


def _policy(cfg: ProjectConfig) -> dict[str, Any]:
    from engine.governance.enforce import policy_of

    doc = policy_of(cfg).document("erase", cfg.governance.purposes.training)
    got = doc.get("erasure")
    return got if isinstance(got, dict) else {}


def _receipt(cfg: ProjectConfig, ws: Workspace, e: Erasure, keys: list[str]) -> None:
    from engine.audit import AuditWriter
    from engine.audit.verify import read_records

    ctl = ws.audit / "control"
    if ctl.is_dir():
        for r in read_records(ctl, kind="erasure"):
            if r.get("request_id") == e.request_id:
                e.receipt = r
                return
    now = time.time()
    days = (now - e.requested_at) / 86400
    rec = {
        "kind": "erasure",
        "request_id": e.request_id,
        "reason": e.reason,
        "actor": e.actor,
        "requested_at": e.requested_at,
        "done_at": now,
        "days": round(days, 6),
        "within": {"gdpr_30d": days <= GDPR_DAYS, "ccpa_45d": days <= CCPA_DAYS},
        "touched": e.touched,
        "models": e.models,
    }
    w = AuditWriter(ctl, writer="erasure")
    try:
        w.append([rec])
    finally:
        w.close()
    e.receipt = rec


_STEP: dict[str, Callable[[ProjectConfig, Workspace, Erasure, list[str]], None]] = {
    "sources": _sources, "consents": _consents, "snapshots": _snapshots, "online": _online,
    "batch_outputs": _batch_outputs, "labels": _labels, "review": _review,
    "scratch": _scratch, "keys": _keys,
    "models": _models, "receipt": _receipt,
}  # fmt: skip


def known(cfg: ProjectConfig, ws: Workspace, subject: str) -> bool:
    """Whether the engine holds anything about the subject (a row of a source, a snapshot,
    an online table, a label, a consent, or a key in the key store)."""
    from engine.data.sources import source_path
    from engine.governance.keys import KeyStore, store_root

    keys = forms(cfg, ws, subject)
    root = store_root(ws.root)
    if (root / "subjects.db").is_file():
        ks = KeyStore(root, create=False)
        try:
            if any(ks.kid_of(k) for k in keys):
                return True
        finally:
            ks.close()
    ent_cols = [*sorted({x.key for x in cfg.entities.values()}), "id", "subject"]
    for name, src in cfg.sources.items():
        path = source_path(cfg, name, ws.root)
        if src.entity is None or not path.exists():
            continue
        raw = {v: k for k, v in src.rename.items()}
        col = raw.get(cfg.entities[src.entity].key, cfg.entities[src.entity].key)
        if path.suffix.lower() in (".csv", ".tsv", ".txt"):
            if csv_holds(path, col, keys):
                return True
        elif any(holds(f, [col], keys) for f in files(path, ".parquet")):
            return True
    for base in (ws.features, ws.online, ws.labels):
        if any(holds(f, ent_cols, keys) for f in files(base, ".parquet")):
            return True
    from engine.governance.live import log_dir

    for f in files(log_dir(ws.root), ".jsonl"):
        if any(f'"{k}"' in line for line in f.read_text().splitlines() for k in keys):
            return True
    return clear_records(ws, keys) > 0  # served records in the clear (seal_audit: false)


def erase(
    cfg: ProjectConfig,
    ws: Workspace,
    subject: str,
    reason: str,
    *,
    actor: str,
    request_id: str | None = None,
    requested_at: float | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Erasure:
    """Run (or resume) one erasure request; returns it with its receipt."""
    subject = subject.strip()
    if not subject:
        raise DataError("erase: the subject is blank. Fix: --subject ID (the entity key).")
    if not reason.strip():
        raise DataError("erase: no reason given. Fix: --reason 'what the request was'.")
    mine = [p for p in pending(ws) if p.subject == subject]
    if mine:
        e = mine[0]
        progress(f"resuming request {e.request_id} (done: {', '.join(e.done) or 'nothing'})")
    else:
        if not known(cfg, ws, subject):
            raise DataError(
                f"erase: the engine holds nothing about subject '{subject}' (no source row, "
                "snapshot, online row, label, consent or key). Nothing was written. Fix: "
                "check the id (the entity key as the sources hold it)."
            )
        e = Erasure(
            request_id=request_id or f"erase-{time.strftime('%Y%m%d')}-{uuid.uuid4().hex[:8]}",
            subject=subject,
            reason=reason.strip(),
            actor=actor,
            requested_at=requested_at or time.time(),
        )
        _save(ws, e)
    return _run(cfg, ws, e, progress)


def _run(cfg: ProjectConfig, ws: Workspace, e: Erasure, progress: Callable[[str], None]) -> Erasure:
    keys = forms(cfg, ws, e.subject)
    crash = os.environ.get("INSIGHT_FAULT_ERASE_AFTER")  # a test's fault: die after a step
    for step in STEPS:
        if step in e.done:
            continue
        before = len(e.touched)
        _STEP[step](cfg, ws, e, keys)
        e.done.append(step)
        _save(ws, e)
        for t in e.touched[before:]:
            progress(f"{step}: {_say(t)}")
        if crash == step:
            os._exit(137)
    _pending(ws, e.request_id).unlink(missing_ok=True)
    e.subject = ""  # the request is done: its result names no subject
    return e


def resume(
    cfg: ProjectConfig, ws: Workspace, progress: Callable[[str], None] = lambda _: None
) -> list[Erasure]:
    """Finish every request a crash left pending."""
    return [_run(cfg, ws, e, progress) for e in pending(ws)]


def _say(t: dict[str, Any]) -> str:
    what = t.get("action") or f"{t.get('rows', 0)} row(s) removed"
    where = t.get("id") or t.get("name") or t.get("path")
    extra = ""
    if "keys_deleted" in t:
        extra = f"; {t['keys_deleted']} key(s) deleted, {t['records_in_clear']} clear record(s)"
    if "note" in t:
        extra += f" ({t['note']})"
    return f"{t['store']} {where}: {what}{extra}"
