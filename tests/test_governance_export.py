"""A subject's export holds what the engine holds about them: their source rows, every
decision (time, version, score, decision, inputs) with an explanation recomputed by that
version's model (additive: base + SHAP = the logged score's log-odds), the requests where
no decision was made and why, and their consents; others' data is not in it; it is
audited; a subject the engine does not know is a clear error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.errors import DataError


def test_a_subjects_export_has_their_data_decisions_explanations_and_consents(
    tmp_path: Path,
) -> None:
    import mlflow

    from engine.audit import AuditWriter, audit_inputs, decision_record
    from engine.audit.verify import read_records, verify
    from engine.config.project import ProjectConfig
    from engine.data.retail import RetailParams, generate_retail
    from engine.governance.export import export_subject
    from engine.governance.live import record_consent
    from engine.registry.models import register_model
    from engine.tracking import setup_mlflow
    from engine.train.families import xgboost
    from engine.train.schema import InputSchema
    from engine.workspace import Workspace

    ex = Path(__file__).resolve().parent.parent / "examples" / "retail" / "insight.yaml"
    ws = Workspace(tmp_path / ".insight").ensure()
    cfg = ProjectConfig.load(ex).model_copy(update={"workspace": str(ws.root)})
    generate_retail(RetailParams(customers=200), ws.data / "retail")
    customers = pd.read_parquet(ws.data / "retail" / "customers.parquet")
    me, other = str(customers["customer_id"].iloc[3]), str(customers["customer_id"].iloc[4])
    # a model and two served requests about `me` (one shared with `other`)
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"tenure": rng.normal(0, 1, 400), "spend": rng.normal(0, 1, 400)})
    y = (x["tenure"] + rng.normal(0, 1, 400) > 0).astype(float).to_numpy()
    schema = InputSchema.infer(x, ["tenure", "spend"])
    model = xgboost.fit(
        {"max_depth": 2, "eta": 0.3}, x, y, seed=0, nthread=1, rounds=10, schema=schema
    )
    exp = setup_mlflow(ws, cfg.name)
    with mlflow.start_run(experiment_id=exp):
        ref = register_model(
            model_name=cfg.train.model_name, scorer=model, x_example=x.head(5), tags={},
            alias="champion",
        )  # fmt: skip
    w = AuditWriter(ws.audit / "insight", writer="t", columnar=True)
    lid = w.register_layout(["tenure", "spend"], [], [])
    rows = pd.DataFrame({"tenure": [0.5, -1.0, 2.0], "spend": [0.1, 0.2, -0.3]})
    p = model.proba(rows)
    for ids, part in (([me, other], [0, 1]), ([me], [2])):
        xr = rows.iloc[part].reset_index(drop=True)
        w.append(
            [
                decision_record(
                    route="predict", request_id=f"r{part[0]}", model=cfg.train.model_name,
                    versions=[ref.version] * len(ids), generation=1, ids=ids, layout=lid,
                    inputs=audit_inputs(xr, "values", ["tenure", "spend"], []),
                    input_policy="values", scores=[float(p[i]) for i in part], threshold=0.5,
                    latency_ms=1.0,
                )
            ]
        )  # fmt: skip
    w.append(
        [{"kind": "withheld", "route": "predict", "request_id": "r9", "time": 1.0,
          "ids": [me], "reasons": ["consent withdrawn for 'profiling'"], "purposes": ["profiling"],
          "policy_version": "v"}]
    )  # fmt: skip
    w.close()
    record_consent(ws.root, me, "profiling", True, actor="t")
    record_consent(ws.root, me, "profiling", False, actor="t")
    record_consent(ws.root, other, "marketing", True, actor="t")

    out = tmp_path / "export.json"
    s = export_subject(cfg, ws, me, out, actor="dpo")
    doc = json.loads(out.read_text())
    assert s["decisions"] == 2 and s["withheld"] == 1 and s["consents"] == 2
    mine = customers[customers["customer_id"].astype(str) == me]
    assert len(doc["sources"]["customers"]["rows"]) == len(mine) == 1
    assert doc["sources"]["customers"]["rows"][0]["email"] == mine["email"].iloc[0]
    txns = pd.read_parquet(ws.data / "retail" / "transactions.parquet")
    assert len(doc["sources"]["transactions"]["rows"]) == int(
        (txns["customer_id"].astype(str) == me).sum()
    )
    for d, i in zip(doc["decisions"], (0, 2), strict=True):
        assert d["version"] == ref.version and d["score"] == pytest.approx(float(p[i]))
        assert d["inputs"] == {"tenure": rows["tenure"][i], "spend": rows["spend"][i]}
        e = d["explanation"]
        assert e["score_recomputed"] == pytest.approx(d["score"], abs=1e-6)
        logit = math.log(d["score"] / (1 - d["score"]))
        assert e["base_value"] + sum(e["shap"].values()) == pytest.approx(logit, abs=1e-4)
    assert doc["no_automated_decision"][0]["reason"] == "consent withdrawn for 'profiling'"
    assert [c["status"] for c in doc["consents"]] == ["granted", "withdrawn"]
    assert all(  # nothing about anyone else
        str(r["customer_id"]) == me for v in doc["sources"].values() for r in v["rows"]
    )
    assert all(c["purpose"] == "profiling" for c in doc["consents"])  # not other's marketing
    ctl = ws.audit / "control"
    assert verify(ctl).ok
    [rec] = list(read_records(ctl, kind="subject_export"))
    from engine.pii import hmac_hex, load_key

    assert rec["by"] == "dpo" and rec["counts"]["decisions"] == 2
    assert rec["subject_hash"] == hmac_hex(load_key(ws.root), me) and "subject" not in rec
    with pytest.raises(DataError, match="holds nothing about subject 'nobody'"):
        export_subject(cfg, ws, "nobody", tmp_path / "none.json", actor="dpo")
    assert not (tmp_path / "none.json").exists()


def test_the_records_of_processing_name_purposes_categories_and_requests(
    tmp_path: Path,
) -> None:
    from engine.config.project import ProjectConfig
    from engine.data.retail import RetailParams, generate_retail
    from engine.governance.export import export_subject
    from engine.governance.records import governance_record, write_record
    from engine.pii import load_key
    from engine.workspace import Workspace

    ex = Path(__file__).resolve().parent.parent / "examples" / "retail" / "insight.yaml"
    ws = Workspace(tmp_path / ".insight").ensure()
    cfg = ProjectConfig.load(ex).model_copy(update={"workspace": str(ws.root)})
    generate_retail(RetailParams(customers=100), ws.data / "retail")
    me = str(pd.read_parquet(ws.data / "retail" / "customers.parquet")["customer_id"].iloc[0])
    export_subject(cfg, ws, me, tmp_path / "e.json", actor="dpo")
    r = governance_record(cfg, ws)
    assert [p["purpose"] for p in r["purposes"]] == [
        "model_training",
        "profiling",
        "marketing",
        "subject_access",
    ]
    cats = {c["source"]: c for c in r["categories"]}
    assert cats["customers"]["pii"] == ["email"] and cats["customers"]["subject_key"]
    assert set(cfg.sensitive) <= set(cats["customers"]["sensitive"]) | set(
        c for x in cats.values() for c in x["sensitive"]
    )
    [done] = r["requests"]["closed"]
    assert done["kind"] == "access (export)" and done["by"] == "dpo" and done["within_gdpr"]
    assert r["requests"][
        "erasure"
    ] == "0 done, 0 open (`insight erase`)" and "nothing expires" in str(r["retention"])
    j, m = write_record(cfg, ws)
    text = m.read_text() + j.read_text()
    assert "# Records of processing" in text and load_key(ws.root).decode() not in text
