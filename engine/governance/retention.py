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
- ``monitor_history``: lines of the monitor's history and its per-run folders;
- ``labels``: the label rows (``labels/*.parquet``, their ``time``) older than the period
  (a file whose rows are all older is deleted, others rewritten without them);
- ``raw_events``: the rows of the file sources inside the workspace (generated data, the
  raw stores ``insight ingest`` lands) whose event time is older; sources outside the
  workspace are the user's to keep, and the plan says so;
- ``mlflow_artifacts``: the artifacts of MLflow runs that ended before the period, unless a
  registered model version comes from the run (kept and said; ``--include-needed``
  deletes them too): the run is marked deleted and its artifact folder removed.

``insight monitor --every`` applies the schedule once a day (engine.stages.monitor).
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
APPLIED = CLASSES


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
    if "labels" in per:
        _plan_labels(ws, per["labels"], now, p)
    if "raw_events" in per:
        _plan_raw(cfg, ws, per["raw_events"], now, p)
    if "mlflow_artifacts" in per:
        _plan_mlflow(ws, old, include_needed, p)
    return p


def _old_rows(path: Path, column: str, cutoff: float) -> tuple[int, int, float | None]:
    """Rows of a Parquet file whose ``column`` (seconds or a timestamp) is before
    ``cutoff``: (old, all, oldest time)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from engine.governance.rows import seconds

    t = pq.read_table(path, columns=[column])
    secs = seconds(t.column(column))
    n = int(pc.sum(pc.less(secs, cutoff)).as_py() or 0)
    oldest = pc.min(secs).as_py()
    return n, t.num_rows, None if oldest is None else float(oldest)


def _plan_labels(ws: Workspace, period: dt.timedelta, now: float, p: Plan) -> None:
    import pyarrow.parquet as pq

    cutoff = now - period.total_seconds()
    for f in sorted(ws.labels.glob("*.parquet")) if ws.labels.is_dir() else []:
        if "time" not in pq.read_schema(f).names:
            continue
        n, total, oldest = _old_rows(f, "time", cutoff)
        if n:
            p.delete.append(
                {"class": "labels", "path": str(f), "rows": n, "of": total, "time": oldest,
                 "column": "time", "cutoff": cutoff}
            )  # fmt: skip


def _plan_raw(cfg: ProjectConfig, ws: Workspace, period: dt.timedelta, now: float, p: Plan) -> None:
    import pyarrow.parquet as pq

    from engine.data.sources import source_path

    cutoff = now - period.total_seconds()
    root = ws.root.resolve()
    for name, src in cfg.sources.items():
        if not src.event_time:
            continue
        path = source_path(cfg, name, ws.root).resolve()
        if not path.is_relative_to(root):
            p.kept.append(
                {"class": "raw_events", "path": str(path), "id": name,
                 "why": "a source outside the workspace: the user's to keep"}
            )  # fmt: skip
            continue
        files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        raw = {v: k for k, v in src.rename.items()}.get(src.event_time, src.event_time)
        for f in files:
            if f.suffix != ".parquet" or raw not in pq.read_schema(f).names:
                continue
            n, total, oldest = _old_rows(f, raw, cutoff)
            if n:
                p.delete.append(
                    {"class": "raw_events", "path": str(f), "id": name, "rows": n,
                     "of": total, "time": oldest, "column": raw, "cutoff": cutoff}
                )  # fmt: skip


def _plan_mlflow(ws: Workspace, old: Old, include_needed: bool, p: Plan) -> None:
    from mlflow.tracking import MlflowClient
    from mlflow.utils.file_utils import local_file_uri_to_path

    from engine.tracking import use_workspace

    if ws.shared_tracking:
        p.kept.append(
            {"class": "mlflow_artifacts", "path": ws.tracking_uri,
             "why": "a shared MLflow server: its own retention applies"}
        )  # fmt: skip
        return
    use_workspace(ws)
    client = MlflowClient()
    try:
        needed = {mv.run_id: f"{mv.name} v{mv.version}" for mv in client.search_model_versions()}
        exps = client.search_experiments()
    except Exception:  # no store yet
        return
    for e in exps:
        for r in client.search_runs([e.experiment_id], max_results=50_000):
            end = (r.info.end_time or 0) / 1000 or None
            if not old("mlflow_artifacts", end):
                continue
            path = Path(local_file_uri_to_path(r.info.artifact_uri))
            item = {"class": "mlflow_artifacts", "path": str(path), "id": r.info.run_id,
                    "time": end}  # fmt: skip
            if r.info.run_id in needed and not include_needed:
                p.kept.append({**item, "why": f"registered model {needed[r.info.run_id]}"})
            elif path.exists():
                p.delete.append({**item, "models_losing_it": [needed.get(r.info.run_id)]})


def _rewrite_without_old(path: Path, column: str, cutoff: float) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from engine.governance.rows import seconds, write_parquet

    t = pq.read_table(path)
    keep = pc.invert(pc.fill_null(pc.less(seconds(t.column(column)), cutoff), False))
    write_parquet(path, t.filter(keep))


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
            elif item["class"] in ("labels", "raw_events"):
                if item["rows"] >= item["of"] and item["class"] == "labels":
                    path.unlink()
                else:
                    _rewrite_without_old(path, item["column"], float(item["cutoff"]))
            elif item["class"] == "mlflow_artifacts":
                from mlflow.tracking import MlflowClient

                shutil.rmtree(path, ignore_errors=True)
                MlflowClient().delete_run(item["id"])
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


EVERY_S = 86_400.0  # how often the monitor loop applies the schedule


def apply_if_due(
    cfg: ProjectConfig, ws: Workspace, *, now: float | None = None, log: Any = print
) -> int | None:
    """The schedule applied by the monitor loop: once per :data:`EVERY_S` (the time of the
    last application is kept in ``governance/retention.json``); None when not due or when
    no period is set. The actor in the receipts is ``monitor``."""
    from engine.workspace import atomic_write_text

    if not cfg.governance.retention:
        return None
    now = time.time() if now is None else now
    state = ws.root / "governance" / "retention.json"
    last = json.loads(state.read_text()).get("applied_at", 0.0) if state.is_file() else 0.0
    if now - float(last) < EVERY_S:
        return None
    n = apply(cfg, ws, plan(cfg, ws), actor="monitor")
    atomic_write_text(state, json.dumps({"applied_at": now, "deleted": n}))
    log(f"retention: {n} item(s) past their period deleted, each with a receipt")
    return n
