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
    assert ("batch_outputs", "scored-old") in got and p.not_applied == ["labels"]
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
