"""Retention schedules: ``insight retention apply [--dry-run]``.

Each class of data has a period (``governance.retention`` in the project file, passed to
the policy as ``data.insight.retention``; a project's Rego may set ``retention[class]``
instead). What is older than its class's period is deleted, each deletion a receipt in the
audit log (control): what, how old, its content's last hash where it has one, when, by
whom. Classes applied here:

- ``snapshots``: a snapshot older than the period is deleted, unless a registered model
  version was trained on it: then it is kept and said (``--include-needed`` deletes it
  too, saying which models lose their training data);
- ``audit``: closed audit segments whose last record is older (segment and head; the
  receipt names the segment, its record count and last hash, so ``insight audit verify``
  stays green and a reader can tell retention from tampering);
- ``batch_outputs``: the outputs of ``insight score`` named in the audit log;
- ``monitor_history``: lines of the monitor's history and its per-run folders.

``labels``, ``raw_events`` and ``mlflow_artifacts`` are not applied yet: the plan says so.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.config.project import ProjectConfig
    from engine.workspace import Workspace

CLASSES = (
    "snapshots",
    "audit",
    "batch_outputs",
    "monitor_history",
    "labels",
    "raw_events",
    "mlflow_artifacts",
)
APPLIED = ("snapshots", "audit", "batch_outputs", "monitor_history")


@dataclass
class Plan:
    """What retention would delete (or did), what it keeps and why."""

    delete: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    not_applied: list[str] = field(default_factory=list)


def periods(cfg: ProjectConfig) -> dict[str, dt.timedelta]:
    """Each class's period, as the policy says (its ``retention`` rule) or the project."""
    from engine.features.views import parse_duration
    from engine.governance.enforce import policy_of

    raw = dict(cfg.governance.retention)
    doc = policy_of(cfg).document("retain", "retention")
    raw.update({str(k): str(v) for k, v in (doc.get("retention") or {}).items()})
    out = {}
    for c, text in raw.items():
        if c not in CLASSES:
            raise ConfigError(
                f"governance.retention: unknown class {c!r}. Fix: one of {', '.join(CLASSES)}."
            )
        out[c] = parse_duration(text)
    return out


def _needed_snapshots(cfg: ProjectConfig, ws: Workspace) -> dict[str, list[str]]:
    """Snapshot id -> the registered model versions trained on it."""
    from mlflow.tracking import MlflowClient

    from engine.tracking import use_workspace

    use_workspace(ws)
    out: dict[str, list[str]] = {}
    try:
        for mv in MlflowClient().search_model_versions():
            sid = (mv.tags or {}).get("snapshot_id")
            if sid:
                out.setdefault(sid, []).append(f"{mv.name} v{mv.version}")
    except Exception:  # no registry yet
        return {}
    return out


def plan(cfg: ProjectConfig, ws: Workspace, *, include_needed: bool = False) -> Plan:
    """What applying retention now would delete, and what it keeps and why."""
    per = periods(cfg)
    now = time.time()
    p = Plan(not_applied=[c for c in per if c not in APPLIED])

    def old(c: str, t: float | None) -> bool:
        return c in per and t is not None and now - t > per[c].total_seconds()

    if "snapshots" in per:
        _plan_snapshots(cfg, ws, old, include_needed, p)
    if "audit" in per:
        _plan_audit(ws, old, p)
    if "batch_outputs" in per:
        _plan_batch(ws, old, p)
    if "monitor_history" in per:
        _plan_history(ws, old, p)
    return p


Old = Any  # (class, time) -> whether it is past its period


def _plan_snapshots(
    cfg: ProjectConfig, ws: Workspace, old: Old, include_needed: bool, p: Plan
) -> None:
    from engine.features import snapshot as snap

    needed = _needed_snapshots(cfg, ws)
    for s in snap.list_snapshots(ws, cfg.name):
        t = dt.datetime.fromisoformat(str(s.manifest["created_at"])).timestamp()
        if not old("snapshots", t):
            continue
        item = {"class": "snapshots", "path": str(s.path), "id": s.id, "time": t}
        if s.id in needed and not include_needed:
            p.kept.append({**item, "why": f"registered models need it: {needed[s.id]}"})
        else:
            p.delete.append({**item, "models_losing_it": needed.get(s.id, [])})


def _plan_audit(ws: Workspace, old: Old, p: Plan) -> None:
    from engine.audit.verify import _read_head, segments

    if not ws.audit.is_dir():
        return
    # the control log holds the receipts (this module's too): evidence, not data
    for app in sorted(d for d in ws.audit.iterdir() if d.is_dir() and d.name != "control"):
        for seg in segments(app):
            head, problem = _read_head(seg.with_suffix(".head"))
            if head is None or problem or not head.get("closed"):
                continue
            if old("audit", head.get("t_max")):
                p.delete.append(
                    {"class": "audit", "path": str(seg), "time": head.get("t_max"),
                     "records": head.get("seq"), "last_hash": head.get("hash")}
                )  # fmt: skip


def _plan_batch(ws: Workspace, old: Old, p: Plan) -> None:
    from engine.audit.verify import read_records

    if not (ws.audit / "batch").is_dir():
        return
    for r in read_records(ws.audit / "batch", kind="batch"):
        out = Path(str(r.get("output", "")))
        if old("batch_outputs", r.get("time")) and out.exists():
            p.delete.append(
                {"class": "batch_outputs", "path": str(out), "time": r.get("time"),
                 "fingerprint": r.get("output_fingerprint")}
            )  # fmt: skip


def _plan_history(ws: Workspace, old: Old, p: Plan) -> None:
    from engine.monitor.store import history_path, monitor_dir

    hp = history_path(ws)
    if hp.is_file():
        lines = [json.loads(x) for x in hp.read_text().splitlines() if x.strip()]
        gone = [x for x in lines if old("monitor_history", _t(x.get("generated_at")))]
        if gone:
            p.delete.append(
                {"class": "monitor_history", "path": str(hp), "lines": len(gone),
                 "time": min(_t(x.get("generated_at")) or 0.0 for x in gone)}
            )  # fmt: skip
    runs = monitor_dir(ws) / "runs"
    for d in sorted(runs.iterdir()) if runs.is_dir() else []:
        if old("monitor_history", d.stat().st_mtime):
            p.delete.append({"class": "monitor_history", "path": str(d), "time": d.stat().st_mtime})


def _t(v: Any) -> float | None:
    if isinstance(v, int | float):
        return float(v)
    try:
        return dt.datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def apply(cfg: ProjectConfig, ws: Workspace, p: Plan, *, actor: str) -> int:
    """Delete what ``p`` lists, each deletion's receipt written first (so a crash between
    the two leaves a receipt for a file still there: the next run deletes it and writes
    nothing twice, as the receipt names the path). Returns how many were deleted."""
    from engine.audit import AuditWriter
    from engine.monitor.store import history_path
    from engine.workspace import atomic_write_bytes

    per = periods(cfg)
    w = AuditWriter(ws.audit / "control", writer="retention")
    n = 0
    try:
        for item in p.delete:
            path = Path(item["path"])
            if not path.exists():
                continue
            w.append(
                [
                    {
                        "kind": "retention",
                        "event": "deleted",
                        "by": actor,
                        "period_days": per[item["class"]].days,
                        **{k: v for k, v in item.items() if k != "path"},
                        "what": path.name if item["class"] != "batch_outputs" else str(path),
                        "time": time.time(),
                    }
                ]
            )
            if item["class"] == "monitor_history" and path == history_path(ws):
                keep = [
                    x
                    for x in path.read_text().splitlines()
                    if x.strip()
                    and not (
                        (t := _t(json.loads(x).get("generated_at"))) is not None
                        and time.time() - t > per["monitor_history"].total_seconds()
                    )
                ]
                atomic_write_bytes(path, ("\n".join(keep) + ("\n" if keep else "")).encode())
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
                if item["class"] == "audit":
                    path.with_suffix(".head").unlink(missing_ok=True)
            n += 1
    finally:
        w.close()
    return n
