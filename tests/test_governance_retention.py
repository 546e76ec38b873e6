"""Retention: what is older than its class's period is deleted with a receipt each, a
snapshot a registered model needs is kept and said, the audit log still verifies, a
second run deletes nothing, and a dry run deletes nothing."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest


def _ws(tmp_path: Path, retention: dict[str, str]) -> tuple[object, object]:
    from engine.config.governance import GovernanceConfig
    from engine.config.project import ProjectConfig
    from engine.workspace import Workspace

    ex = Path(__file__).resolve().parent.parent / "examples" / "retail" / "insight.yaml"
    ws = Workspace(tmp_path / ".insight").ensure()
    cfg = ProjectConfig.load(ex).model_copy(
        update={"workspace": str(ws.root), "governance": GovernanceConfig(retention=retention)}
    )
    return cfg, ws


def test_retention_deletes_the_expired_with_receipts_and_keeps_what_models_need(
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    from engine.audit import AuditWriter
    from engine.audit.verify import read_records, verify
    from engine.governance.retention import apply, plan
    from engine.monitor.store import history_path
    from engine.tracking import use_workspace

    cfg, ws = _ws(
        tmp_path,
        {"snapshots": "30d", "audit": "30d", "batch_outputs": "30d", "monitor_history": "30d",
         "labels": "365d"},
    )  # fmt: skip
    now = time.time()
    old_t, new_t = now - 90 * 86400, now - 86400
    feats = ws.features / cfg.name  # type: ignore[attr-defined]
    for sid, t in (("oldneeded", old_t), ("oldfree", old_t), ("new", new_t)):
        (feats / sid).mkdir(parents=True)
        created = dt.datetime.fromtimestamp(t, dt.UTC).isoformat()
        (feats / sid / "manifest.json").write_text(
            json.dumps({"snapshot_id": sid, "created_at": created})
        )
    use_workspace(ws)  # type: ignore[arg-type]
    c = MlflowClient()
    c.create_registered_model("churn")
    c.create_model_version("churn", "file:///nowhere", tags={"snapshot_id": "oldneeded"})
    app = ws.audit / "insight"  # type: ignore[attr-defined]
    for t in (old_t, new_t):
        w = AuditWriter(app, writer="r", columnar=True)
        w.append([{"kind": "decision", "time": t, "ids": ["c1"]}])
        w.close()
    out = tmp_path / "scored-old"
    out.mkdir()
    bw = AuditWriter(ws.audit / "batch", writer="score")  # type: ignore[attr-defined]
    bw.append([{"kind": "batch", "time": old_t, "output": str(out), "output_fingerprint": "x"}])
    bw.close()
    hp = history_path(ws)  # type: ignore[arg-type]
    hp.parent.mkdir(parents=True, exist_ok=True)
    stamp = lambda t: dt.datetime.fromtimestamp(t, dt.UTC).isoformat()  # noqa: E731
    hp.write_text("".join(json.dumps({"generated_at": stamp(t)}) + "\n" for t in (old_t, new_t)))

    p = plan(cfg, ws)  # type: ignore[arg-type]
    got = sorted((d["class"], Path(d["path"]).name) for d in p.delete)
    assert ("snapshots", "oldfree") in got and ("snapshots", "new") not in got
    assert [k["id"] for k in p.kept] == ["oldneeded"] and "churn v1" in p.kept[0]["why"]
    # the served app's old segment and the batch log's (its record is as old)
    assert sum(1 for g in got if g[0] == "audit") == 2
    assert ("batch_outputs", "scored-old") in got and p.not_applied == []
    assert apply(cfg, ws, p, actor="dpo") == len(p.delete)  # type: ignore[arg-type]
    assert not (feats / "oldfree").exists() and (feats / "oldneeded").exists()
    assert (feats / "new").exists() and not out.exists()
    assert len(list(app.glob("*.arrows"))) == 1 and verify(ws.audit).ok  # type: ignore[attr-defined]
    assert [json.loads(x)["generated_at"] for x in hp.read_text().splitlines()] == [stamp(new_t)]
    receipts = list(read_records(ws.audit / "control", kind="retention"))  # type: ignore[attr-defined]
    assert len(receipts) == len(p.delete) and {r["by"] for r in receipts} == {"dpo"}
    audit_r = next(r for r in receipts if r["class"] == "audit")
    assert audit_r["last_hash"] and audit_r["records"] >= 1
    again = plan(cfg, ws)  # type: ignore[arg-type]
    assert not again.delete and apply(cfg, ws, again, actor="dpo") == 0  # type: ignore[arg-type]
    with_needed = plan(cfg, ws, include_needed=True)  # type: ignore[arg-type]
    assert [d["models_losing_it"] for d in with_needed.delete] == [["churn v1"]]


def test_an_unknown_retention_class_is_named(tmp_path: Path) -> None:
    from engine.errors import ConfigError
    from engine.governance.retention import plan

    cfg, ws = _ws(tmp_path, {"snapshot": "30d"})
    with pytest.raises(ConfigError, match="unknown class 'snapshot'"):
        plan(cfg, ws)  # type: ignore[arg-type]


def test_labels_raw_events_and_mlflow_artifacts_expire_and_the_monitor_loop_applies_daily(
    tmp_path: Path,
) -> None:
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from engine.audit.verify import read_records, verify
    from engine.data.retail import RetailParams, generate_retail
    from engine.governance.retention import apply, apply_if_due, plan
    from engine.tracking import setup_mlflow

    generate_retail(RetailParams(customers=60), tmp_path / ".insight" / "data" / "retail")
    tx = pd.read_parquet(tmp_path / ".insight" / "data" / "retail" / "transactions.parquet")
    now = time.time()
    mid = tx["txn_time"].sort_values().iloc[len(tx) // 2]
    days = int((now - mid.timestamp()) // 86400)
    cfg, ws = _ws(tmp_path, {"labels": "30d", "raw_events": f"{days}d", "mlflow_artifacts": "30d"})
    cutoff_raw = now - days * 86400
    old_t, new_t = now - 90 * 86400, now - 86400
    ws.labels.mkdir(parents=True, exist_ok=True)  # type: ignore[attr-defined]
    mixed, stale = ws.labels / "labels-a.parquet", ws.labels / "labels-b.parquet"  # type: ignore[attr-defined]
    pd.DataFrame(
        {"by": "entity", "id": ["1", "2"], "y": [0, 1], "time": [old_t, new_t]}
    ).to_parquet(mixed)
    pd.DataFrame({"by": "entity", "id": ["3"], "y": [1], "time": [old_t]}).to_parquet(stale)
    exp = setup_mlflow(ws, cfg.name)  # type: ignore[arg-type]
    c = MlflowClient()
    ids = []
    for _ in range(3):
        with mlflow.start_run(experiment_id=exp) as r:
            mlflow.log_text("x", "a.txt")
            ids.append(r.info.run_id)
    for rid in ids[:2]:  # two old runs, one of which a registered version comes from
        c.set_terminated(rid, end_time=int(old_t * 1000))
    c.create_registered_model("churn")
    c.create_model_version("churn", f"runs:/{ids[0]}/model", run_id=ids[0])

    p = plan(cfg, ws)  # type: ignore[arg-type]
    by = {(d["class"], Path(d["path"]).name): d for d in p.delete}
    assert by[("labels", "labels-a.parquet")]["rows"] == 1
    assert by[("labels", "labels-b.parquet")]["rows"] == 1
    raw_old = int((tx["txn_time"].map(lambda t: t.timestamp()) < cutoff_raw).sum())
    assert by[("raw_events", "transactions.parquet")]["rows"] == raw_old > 0
    ml = [d for d in p.delete if d["class"] == "mlflow_artifacts"]
    assert [d["id"] for d in ml] == [ids[1]]  # the registered version's run is kept
    assert [k["id"] for k in p.kept if k["class"] == "mlflow_artifacts"] == [ids[0]]

    assert apply_if_due(cfg, ws, now=now) == len(p.delete)  # type: ignore[arg-type]
    assert apply_if_due(cfg, ws, now=now + 3600) is None  # type: ignore[arg-type]
    assert pd.read_parquet(mixed)["id"].tolist() == ["2"] and not stale.exists()
    left = pd.read_parquet(ws.data / "retail" / "transactions.parquet")  # type: ignore[attr-defined]
    assert len(left) == len(tx) - raw_old
    assert (left["txn_time"].map(lambda t: t.timestamp()) >= cutoff_raw).all()
    assert c.get_run(ids[1]).info.lifecycle_stage == "deleted"
    assert c.get_run(ids[0]).info.lifecycle_stage == "active"
    receipts = list(read_records(ws.audit / "control", kind="retention"))  # type: ignore[attr-defined]
    assert {r["by"] for r in receipts} == {"monitor"} and len(receipts) == len(p.delete)
    assert verify(ws.audit / "control").ok  # type: ignore[attr-defined]
    again = plan(cfg, ws)  # type: ignore[arg-type]
    assert not again.delete and apply(cfg, ws, again, actor="dpo") == 0  # type: ignore[arg-type]
