"""Erasure: each subject's part of an audit record sealed under a key of their own; erasing
them deletes the key (the records stay, the chain verifies, nobody reads them) and removes
their rows from every store the engine keeps; a scan of every byte under the workspace and
the MLflow store then finds none of their identifiers or values; a crash mid-way resumes,
and the receipt is written once."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.errors import DataError

ROOT = Path(__file__).resolve().parent.parent
BIG = 7340271985136417  # the erased subject's id: distinctive in text and in binary
EMAIL = "erase.me.7f3a9c@example.org"
AMOUNT = 4321.98765  # one of their transactions: distinctive as text and as float64


def _keys(tmp: Path) -> Any:
    from engine.governance.keys import KeyStore

    return KeyStore(tmp / "keys")


def _record(
    ids: list[str], xs: list[list[float]], scores: list[float], rid: str, layout: str = "L"
) -> dict[str, Any]:
    from engine.audit import decision_record

    return decision_record(
        route="predict", request_id=rid, model="m", versions=["1"] * len(ids), generation=1,
        ids=ids, layout=layout, inputs={"x": xs, "xc": [["gold"]] * len(ids)},
        input_policy="values", scores=scores, threshold=0.5, latency_ms=1.0,
        shadow={"version": "2", "scores": [s / 2 for s in scores]},
    )  # fmt: skip


def needles(subject: str, keyed: str, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """What must not be found after an erasure: the id (text; int64 bytes when it is a
    number), its keyed hash, and the values given."""
    out = {"id": subject.encode(), "keyed hash": keyed.encode()}
    if subject.isdigit():
        out["id (int64)"] = struct.pack("<q", int(subject))
    return {**out, **(extra or {})}


def scan(roots: list[Path], find: dict[str, bytes]) -> list[str]:
    """Every byte of every file under ``roots``: which needle is where."""
    hits = []
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and not p.is_symlink():
                data = p.read_bytes()
                hits += [f"{name} in {p}" for name, b in find.items() if b in data]
    return hits


@pytest.mark.parametrize("columnar", [True, False], ids=["columnar", "jsonl"])
def test_sealed_records_read_back_and_an_erased_subject_is_unreadable_yet_verifies(
    tmp_path: Path, columnar: bool
) -> None:
    from engine.audit import AuditWriter
    from engine.audit.verify import read_records, verify
    from engine.audit.window import read_window
    from engine.governance.seal import seal_record

    ks = _keys(tmp_path)
    root = tmp_path / "audit" / "app"
    w = AuditWriter(root, writer="t", columnar=columnar)
    lid = w.register_layout(["a"], ["c"], [])
    recs = [
        _record(["alice", "bob", "carol"], [[1.25], [AMOUNT], [3.5]], [0.1, 0.7, 0.9], "r1", lid),
        _record(["bob"], [[AMOUNT]], [0.8], "r2", lid),
        _record(["carol"], [[2.0]], [0.3], "r3", lid),
    ]
    w.append([seal_record(r, ks) for r in recs])
    w.close()
    raw = b"".join(p.read_bytes() for p in root.iterdir())
    for b in (b"bob", b"alice", repr(AMOUNT).encode(), struct.pack("<d", AMOUNT), b"gold"):
        assert b not in raw  # sealed: not in the log in the clear, even before erasure
    win = read_window(root, 0, time.time() + 10)
    assert list(win.entity) == ["alice", "bob", "carol", "bob", "carol"]
    assert win.score.tolist() == [0.1, 0.7, 0.9, 0.8, 0.3]
    assert win.numeric["a"].tolist() == [1.25, AMOUNT, 3.5, AMOUNT, 2.0]
    assert list(win.categorical["c"]) == ["gold"] * 5
    assert win.shadow_score.tolist() == [0.05, 0.35, 0.45, 0.4, 0.15]
    assert win.decision.tolist() == [False, True, True, True, False]

    assert ks.erase("bob") is not None
    assert ks.erase("bob") is None  # twice: nothing left to delete
    assert verify(root).ok  # the records are where they were, unchanged
    win = read_window(root, 0, time.time() + 10)
    assert list(win.entity) == ["alice", "carol", "carol"]  # bob's rows are gone
    assert win.score.tolist() == [0.1, 0.9, 0.3]
    assert win.numeric["a"].tolist() == [1.25, 3.5, 2.0]
    assert win.version.tolist() == ["1", "1", "1"]
    got = list(read_records(root))
    assert [r["ids"] for r in got] == [["alice", "carol"], [], ["carol"]]
    assert [r.get("erased_rows") for r in got] == [1, 1, None]
    assert got[0]["inputs"] == [[1.25, "gold"], [3.5, "gold"]]
    assert got[1]["scores"] == [] and got[1]["decisions"] == []


def test_a_sealed_row_moved_to_another_record_does_not_open(tmp_path: Path) -> None:
    from engine.governance.seal import open_rows, seal_record

    ks = _keys(tmp_path)
    a = seal_record(_record(["ann"], [[1.0]], [0.2], "r1"), ks)
    b = seal_record(_record(["ann"], [[9.0]], [0.9], "r2"), ks)
    ciphers = ks.ciphers(a["kids"])
    assert open_rows(a["kids"], a["sealed"], "r1", ciphers)[0]["s"] == 0.2
    # r2's ciphertext in r1's place (same subject, same key): the associated data differs
    assert open_rows(a["kids"], b["sealed"], "r1", ciphers) == [None]


def test_the_key_store_forgets_an_erased_key_in_every_process_and_in_its_file(
    tmp_path: Path,
) -> None:
    from engine.governance.keys import KeyStore

    one, two = KeyStore(tmp_path / "keys"), KeyStore(tmp_path / "keys")
    [(kid, _)] = one.keys_for(["zoe"])
    [(kid2, _)] = two.keys_for(["zoe"])  # another process: the same key
    assert kid2 == kid and two.ciphers([kid])[kid] is not None
    import sqlite3

    key = (
        sqlite3.connect(tmp_path / "keys" / "subjects.db")
        .execute("SELECT key FROM keys WHERE kid = ?", (kid,))
        .fetchone()[0]
    )
    assert key in (tmp_path / "keys" / "subjects.db").read_bytes()
    one.erase("zoe")
    assert two.ciphers([kid])[kid] is None  # its cache was dropped (the generation stamp)
    for p in (tmp_path / "keys").iterdir():
        assert bytes(key) not in p.read_bytes(), p  # zeroed and vacuumed: not in any file
        assert b"zoe" not in p.read_bytes()  # the store never held the id
    [(kid3, _)] = two.keys_for(["zoe"])  # a later request about them: a new key
    assert kid3 != kid


def test_an_unreachable_key_store_writes_nothing_in_the_clear(tmp_path: Path) -> None:
    from engine.audit import AuditWriter
    from engine.governance.keys import KeyStore, KeyStoreError
    from engine.governance.seal import seal_record

    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "subjects.db").mkdir()  # not a database: cannot be opened
    ks = KeyStore(tmp_path / "keys")
    w = AuditWriter(tmp_path / "audit", writer="t", columnar=True)
    with pytest.raises(KeyStoreError, match=r"cannot be opened.*not written in the clear"):
        w.append([seal_record(_record(["ann"], [[AMOUNT]], [0.2], "r1"), ks)])
    w.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "audit").iterdir())
    assert b"ann" not in raw and struct.pack("<d", AMOUNT) not in raw


def _workspace(tmp_path: Path) -> tuple[Any, Any, str, dict[str, Any]]:
    """A retail workspace in which one customer has a distinctive id, e-mail and amount,
    with every store the engine keeps about them: sources, a snapshot (the manifest and
    Parquet a build writes), an online table, a batch output, labels, consents, the review
    queue, sealed served records, control records, and a model registered in MLflow as
    trained on the snapshot."""
    import mlflow

    from engine.audit import AuditWriter
    from engine.config.project import ProjectConfig
    from engine.data.retail import RetailParams, generate_retail
    from engine.governance.live import record_consent
    from engine.governance.seal import seal_record, seal_subject
    from engine.registry.models import register_model
    from engine.tracking import setup_mlflow
    from engine.train.families import xgboost
    from engine.train.schema import InputSchema
    from engine.workspace import Workspace

    ws = Workspace(tmp_path / ".insight").ensure()
    cfg = ProjectConfig.load(ROOT / "examples" / "retail" / "insight.yaml").model_copy(
        update={"workspace": str(ws.root)}
    )
    d = ws.data / "retail"
    generate_retail(RetailParams(customers=150), d)
    old = 5
    for name in ("customers", "transactions", "labels", "campaign"):
        t = pd.read_parquet(d / f"{name}.parquet")
        t["customer_id"] = t["customer_id"].astype("int64").replace(old, BIG)
        if name == "customers":
            t.loc[t["customer_id"] == BIG, "email"] = EMAIL
        if name == "transactions":
            i = t.index[t["customer_id"] == BIG][0]
            t.loc[i, "amount"] = AMOUNT
        t.to_parquet(d / f"{name}.parquet", index=False)
    me = str(BIG)
    # a snapshot, as a build writes it: Parquet parts and a manifest
    rng = np.random.default_rng(0)
    cust = pd.read_parquet(d / "customers.parquet")
    feats = pd.DataFrame(
        {"customer_id": cust["customer_id"], "amount_sum_90d": rng.gamma(2, 300, len(cust)),
         "age": cust["age"].astype(float)}
    )  # fmt: skip
    feats.loc[feats["customer_id"] == BIG, "amount_sum_90d"] = AMOUNT * 3
    feats["churned"] = (rng.random(len(feats)) < 0.3).astype(int)
    snap = ws.features / "retail" / "snapaaaa00000001"
    (snap / "data").mkdir(parents=True)
    feats.to_parquet(snap / "data" / "part-00000.parquet", index=False)
    (snap / "manifest.json").write_text(
        json.dumps({"snapshot_id": snap.name, "entity": "customer_id"})
    )
    online = ws.online / "retail" / f"{snap.name}-20261206T000000"
    online.mkdir(parents=True)
    feats.drop(columns="churned").to_parquet(online / "table.parquet", index=False)
    # a model trained on it, registered with the snapshot it was trained on
    x = feats[["amount_sum_90d", "age"]]
    schema = InputSchema.infer(x, ["amount_sum_90d", "age"])
    model = xgboost.fit(
        {"max_depth": 2, "eta": 0.3}, x, feats["churned"].to_numpy(float), seed=0, nthread=1,
        rounds=5, schema=schema,
    )  # fmt: skip
    exp = setup_mlflow(ws, cfg.name)
    with mlflow.start_run(experiment_id=exp):
        ref = register_model(
            model_name=cfg.train.model_name, scorer=model, x_example=x.head(20),
            tags={"snapshot_id": snap.name}, alias="champion",
        )  # fmt: skip
    # batch output, cited by its audit record
    out = ws.root / "batch" / "scores.parquet"
    out.parent.mkdir(parents=True)
    feats[["customer_id"]].assign(score=0.5).to_parquet(out, index=False)
    bw = AuditWriter(ws.audit / "batch", writer="batch")
    bw.append([{"kind": "batch", "time": time.time(), "output": str(out), "rows": len(feats)}])
    bw.close()
    # labels as `insight labels` keeps them
    ws.labels.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"by": "entity", "id": [me, "1", "2"], "y": [1, 0, 1], "time": 1.0}).to_parquet(
        ws.labels / "labels-x.parquet", index=False
    )
    # consents, a served decision about them and others (sealed), a control record
    record_consent(ws.root, me, "profiling", True, actor="t")
    record_consent(ws.root, "1", "profiling", True, actor="t")
    from engine.governance.keys import shared, store_root
    from engine.pii import hmac_hex, load_key

    ks = shared(store_root(ws.root))
    w = AuditWriter(ws.audit / "insight", writer="replica", columnar=True)
    lid = w.register_layout(["amount_sum_90d", "age"], [], [])
    w.append(
        [
            seal_record(_record([me, "1"], [[AMOUNT * 3, 40.0], [10.0, 30.0]], [0.6, 0.2], "r1", lid), ks),
            seal_record(_record([me], [[AMOUNT * 3, 40.0]], [0.61], "r2", lid), ks),
        ]
    )  # fmt: skip
    w.close()
    keyed = hmac_hex(load_key(ws.root), me)
    cw = AuditWriter(ws.audit / "control", writer="consent")
    cw.append([seal_subject({"kind": "consent", "event": "granted", "subject_hash": keyed,
                             "purpose": "profiling", "time": time.time()}, ws.root)])  # fmt: skip
    cw.close()
    # the review queue holds a decision about them
    rq = ws.root / "governance" / "review"
    rq.mkdir(parents=True)
    (rq / "queue.jsonl").write_text(
        json.dumps({"item": "i1", "subject_hash": keyed, "inputs": {"a": AMOUNT * 3}}) + "\n"
        + json.dumps({"item": "i2", "subject_hash": "other", "inputs": {"a": 1.0}}) + "\n"
    )  # fmt: skip
    return cfg, ws, me, {"ref": ref, "keyed": keyed, "snapshot": snap.name}


def _needles(me: str, keyed: str) -> dict[str, bytes]:
    return needles(
        me, keyed,
        {"e-mail": EMAIL.encode(), "amount (text)": repr(AMOUNT).encode(),
         "amount (float64)": struct.pack("<d", AMOUNT),
         "their feature (float64)": struct.pack("<d", AMOUNT * 3),
         "their feature (text)": repr(AMOUNT * 3).encode()},
    )  # fmt: skip


def test_erasure_reaches_every_copy_and_a_scan_of_every_byte_finds_nothing(
    tmp_path: Path,
) -> None:
    from engine.audit.verify import read_records, verify
    from engine.governance.erase import erase
    from engine.governance.records import governance_record

    cfg, ws, me, ctx = _workspace(tmp_path)
    find = _needles(me, ctx["keyed"])
    before = scan([ws.root], find)
    for what in (
        "id",
        "id (int64)",
        "keyed hash",
        "e-mail",
        "amount (float64)",
        "their feature (float64)",
    ):
        assert any(h.startswith(f"{what} in") for h in before), (what, before)  # the scan can find
    e = erase(cfg, ws, me, "GDPR art. 17, by e-mail", actor="dpo")

    assert scan([ws.root], find) == []  # the workspace, MLflow's database and artifacts in it
    stores = {t["store"] for t in e.touched}
    assert {"source", "consent log", "snapshot", "online table", "batch output", "labels",
            "review queue", "audit log"} <= stores  # fmt: skip
    audit = next(t for t in e.touched if t["store"] == "audit log")
    assert audit["keys_deleted"] == 2 and audit["records_in_clear"] == 0  # the id and its hash
    for app in ("insight", "control", "batch"):
        assert verify(ws.audit / app).ok, app
    recs = list(read_records(ws.audit / "insight"))
    assert [r["ids"] for r in recs] == [["1"], []]  # the others' rows are still read
    assert recs[0]["scores"] == [0.2]
    [consent] = list(read_records(ws.audit / "control", kind="consent"))
    assert "subject_hash" not in consent  # unreadable: its key is gone
    [rc] = list(read_records(ws.audit / "control", kind="erasure"))
    assert rc["request_id"] == e.request_id and rc["actor"] == "dpo"
    assert rc["within"] == {"gdpr_30d": True, "ccpa_45d": True}
    assert rc["models"] == [
        {"model": cfg.train.model_name, "version": ctx["ref"].version,
         "snapshot": ctx["snapshot"], "decision": "next_training"}
    ]  # fmt: skip
    # others are untouched: 149 customers, the other consent, the other queue item
    assert len(pd.read_parquet(ws.data / "retail" / "customers.parquet")) == 149
    assert pd.read_parquet(ws.labels / "labels-x.parquet")["id"].tolist() == ["1", "2"]
    q = (ws.root / "governance" / "review" / "queue.jsonl").read_text().splitlines()
    assert [json.loads(x)["item"] for x in q] == ["i2"]
    man = json.loads((ws.features / "retail" / ctx["snapshot"] / "manifest.json").read_text())
    assert man["erasures"][0]["rows_removed"] == 1
    rec = governance_record(cfg, ws)
    closed = [c for c in rec["requests"]["closed"] if c["kind"] == "erasure"]
    assert len(closed) == 1 and closed[0]["within_gdpr"] and rec["requests"]["open"] == []
    # a second request about them: the engine holds nothing any more
    with pytest.raises(DataError, match=f"holds nothing about subject '{me}'"):
        erase(cfg, ws, me, "again", actor="dpo")
    assert len(list(read_records(ws.audit / "control", kind="erasure"))) == 1


def test_a_crash_mid_erasure_resumes_finishes_and_writes_one_receipt(tmp_path: Path) -> None:
    from engine.audit.verify import read_records, verify

    _, ws, me, ctx = _workspace(tmp_path)
    proj = tmp_path / "insight.yaml"
    raw = (ROOT / "examples" / "retail" / "insight.yaml").read_text()
    proj.write_text(raw.replace("{workspace}", str(ws.root)))
    env = {**os.environ, "INSIGHT_FAULT_ERASE_AFTER": "snapshots"}
    cmd = [sys.executable, "-m", "engine.cli", "erase", "--subject", me, "--reason", "art. 17",
           "--project", str(proj), "--workspace", str(ws.root)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, cwd=tmp_path)
    assert r.returncode == 137, r.stdout + r.stderr  # died after the snapshots step
    [pending] = list((ws.root / "governance" / "erasure" / "pending").glob("*.json"))
    assert json.loads(pending.read_text())["done"] == ["sources", "consents", "snapshots"]
    assert list(read_records(ws.audit / "control", kind="erasure")) == []
    env.pop("INSIGHT_FAULT_ERASE_AFTER")
    r = subprocess.run(
        [*cmd[:4], "--resume", *cmd[8:]], capture_output=True, text=True, env=env, check=False,
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resum" not in r.stdout or "done" in r.stdout
    assert not pending.exists()
    [rc] = list(read_records(ws.audit / "control", kind="erasure"))
    assert {t["store"] for t in rc["touched"]} >= {"snapshot", "online table", "audit log"}
    assert scan([ws.root], _needles(me, ctx["keyed"])) == []
    assert verify(ws.audit / "control").ok
    # an unknown subject: said so, nothing written
    r = subprocess.run(
        [*cmd[:5], "nobody-here", *cmd[6:]], capture_output=True, text=True, env=env,
        check=False, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode != 0 and "holds nothing about subject 'nobody-here'" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert len(list(read_records(ws.audit / "control", kind="erasure"))) == 1


@pytest.mark.parametrize("seed", range(6))
def test_a_sealed_log_reads_as_the_clear_log_less_the_erased_subjects(
    tmp_path: Path, seed: int
) -> None:
    """Oracle: the same records written in the clear, the erased subjects' rows dropped."""
    from engine.audit import AuditWriter, decision_record
    from engine.audit.window import read_window
    from engine.governance.keys import KeyStore
    from engine.governance.seal import seal_record

    rng = np.random.default_rng(seed)
    ks = KeyStore(tmp_path / "ws" / "keys")
    sealed_w = AuditWriter(tmp_path / "ws" / "audit" / "s", writer="t", columnar=bool(seed % 2))
    clear_w = AuditWriter(tmp_path / "clear" / "audit" / "c", writer="t", columnar=bool(seed % 2))
    lids = [w.register_layout(["a", "b"], ["c"], ["gender"]) for w in (sealed_w, clear_w)]
    assert lids[0] == lids[1]
    for r in range(60):
        k = int(rng.integers(1, 5))
        ids = [f"s{int(i)}" for i in rng.integers(0, 30, k)]
        x = [[float(v) if rng.random() > 0.1 else None for v in rng.normal(0, 1, 2)] for _ in ids]
        rec = decision_record(
            route="predict", request_id=f"r{r}", model="m",
            versions=[str(int(v)) for v in rng.integers(1, 3, k)], generation=1, ids=ids,
            layout=lids[0], inputs={"x": x, "xc": [[str(rng.choice(["p", "q"]))] for _ in ids]},
            input_policy="values", scores=rng.random(k).round(6).tolist(), threshold=0.5,
            latency_ms=1.0, groups={"gender": [str(rng.choice(["F", "M"])) for _ in ids]},
            shadow={"version": "2", "scores": rng.random(k).round(6).tolist()} if r % 3 == 0 else None,
        )  # fmt: skip
        clear_w.append([rec])
        sealed_w.append([seal_record(rec, ks)])
    sealed_w.close()
    clear_w.close()
    gone = {f"s{i}" for i in rng.choice(30, 5, replace=False)}
    for s in gone:
        ks.erase(s)
    a = read_window(tmp_path / "ws" / "audit" / "s", 0, time.time() + 10)
    b = read_window(tmp_path / "clear" / "audit" / "c", 0, time.time() + 10)
    keep = np.array([e not in gone for e in b.entity])
    assert a.problems == [] and a.rows == int(keep.sum()) and a.requests == b.requests == 60
    assert list(a.entity) == [e for e in b.entity if e not in gone]
    np.testing.assert_array_equal(a.score, b.score[keep])
    np.testing.assert_array_equal(a.decision, b.decision[keep])
    np.testing.assert_array_equal(a.version, b.version[keep])
    np.testing.assert_array_equal(a.shadow_score, b.shadow_score[keep])
    np.testing.assert_array_equal(a.request_of_row, np.flatnonzero(keep) * 0 + a.request_of_row)
    np.testing.assert_array_equal(b.request_of_row[keep], a.request_of_row)
    for name in ("a", "b"):
        np.testing.assert_array_equal(a.numeric[name], b.numeric[name][keep])
    assert list(a.categorical["c"]) == list(b.categorical["c"][keep])
    assert list(a.groups["gender"]) == list(b.groups["gender"][keep])


def test_erasure_on_tables_shaped_like_a_users(tmp_path: Path) -> None:
    """CSV sources as people save them (semicolons, odd headers renamed, string ids with
    blanks around them, a duplicate row, an empty cell), the entity key marked PII (the
    snapshot and the online table hold its keyed hash): the subject's rows go from each,
    the files keep their dialect, the other rows are byte-for-byte what they were."""
    from engine.config.project import ProjectConfig
    from engine.config.source import SourceConfig
    from engine.governance.erase import erase
    from engine.pii import hmac_hex, load_key
    from engine.workspace import Workspace

    ws = Workspace(tmp_path / ".insight").ensure()
    d = ws.data / "mine"
    d.mkdir(parents=True)
    (d / "customers.csv").write_text(
        "Cust ID;E-mail;Plan\n C-0001 ;a@x.org;gold\nC-0042;erase.me@x.org;\nC-0042;erase.me@x.org;\n"
        "C-0007;b@x.org;basic\n",
        encoding="utf-8",
    )  # fmt: skip
    (d / "orders.csv").write_text(
        "Cust ID;Order Time;Amount\nC-0042;2025-01-02 10:00;12,5\nC-0001;2025-01-03 11:00;7,25\n",
        encoding="utf-8",
    )  # fmt: skip
    ex = ProjectConfig.load(ROOT / "examples" / "retail" / "insight.yaml")
    rename = {"Cust ID": "customer_id", "E-mail": "email", "Plan": "plan"}
    sources = {
        "customers": SourceConfig(path=str(d / "customers.csv"), format="csv", entity="customer",
                                  delimiter=";", rename=rename),
        "transactions": SourceConfig(path=str(d / "orders.csv"), format="csv", entity="customer",
                                     delimiter=";", decimal=",", event_time="txn_time",
                                     rename={"Cust ID": "customer_id", "Order Time": "txn_time",
                                             "Amount": "amount"}),
    }  # fmt: skip
    cfg = ex.model_copy(
        update={"workspace": str(ws.root), "sources": sources,
                "pii": ["customers.customer_id", "customers.email"]}
    )  # fmt: skip
    key = load_key(ws.root)
    hashed = {i: hmac_hex(key, i) for i in ("C-0001", "C-0042", "C-0007")}
    snap = ws.features / "retail" / "snapuser0000001"
    (snap / "data").mkdir(parents=True)
    pd.DataFrame({"customer_id": list(hashed.values()), "f": [1.0, 2.0, 3.0]}).to_parquet(
        snap / "data" / "part-0.parquet", index=False
    )
    (snap / "manifest.json").write_text(json.dumps({"entity": "customer_id"}))
    online = ws.online / "retail" / "snapuser0000001-1"
    online.mkdir(parents=True)
    pd.DataFrame({"customer_id": list(hashed.values()), "f": [1.0, 2.0, 3.0]}).to_parquet(
        online / "table.parquet", index=False
    )
    e = erase(cfg, ws, "C-0042", "art. 17", actor="dpo")  # type: ignore[arg-type]
    assert (d / "customers.csv").read_text() == (
        "Cust ID;E-mail;Plan\n C-0001 ;a@x.org;gold\nC-0007;b@x.org;basic\n"
    )
    assert (d / "orders.csv").read_text() == (
        "Cust ID;Order Time;Amount\nC-0001;2025-01-03 11:00;7,25\n"
    )
    for p in (snap / "data" / "part-0.parquet", online / "table.parquet"):
        assert pd.read_parquet(p)["customer_id"].tolist() == [hashed["C-0001"], hashed["C-0007"]]
    rows = {t["store"]: t.get("rows") for t in e.touched}
    assert rows["snapshot"] == 1 and rows["online table"] == 1
    assert scan([ws.root], needles("C-0042", hashed["C-0042"], {"e": b"erase.me@x.org"})) == []
    # the subject as the table wrote it, blanks around: the same subject
    with pytest.raises(DataError, match="holds nothing about subject 'C-0042'"):
        erase(cfg, ws, "  C-0042 ", "again", actor="dpo")  # type: ignore[arg-type]


def test_a_targeting_decision_is_sealed_per_customer_and_erased_per_customer(
    tmp_path: Path,
) -> None:
    """The /decide app's record (keys, inputs and decisions per customer): sealed, it reads
    back as written; one customer erased, it reads as the record of the others."""
    from engine.audit import AuditWriter
    from engine.audit.verify import read_records, verify
    from engine.governance.keys import KeyStore
    from engine.governance.seal import seal_record

    ks = KeyStore(tmp_path / "ws" / "keys")
    rec = {
        "kind": "decide", "route": "decide", "request_id": "d1", "time": time.time(),
        "model": "u", "versions": ["1"], "keys": ["k1", "k2"],
        "inputs": [{"age": 41.5, "plan": "gold"}, {"age": AMOUNT, "plan": "basic"}],
        "decisions": [{"contact": True, "arm": "email"}, {"contact": False, "arm": None}],
        "latency_ms": 2.0,
    }  # fmt: skip
    root = tmp_path / "ws" / "audit" / "decide"
    w = AuditWriter(root, writer="t")
    w.append([seal_record(dict(rec), ks)])
    w.close()
    raw = b"".join(p.read_bytes() for p in root.iterdir())
    assert b"k2" not in raw and b"basic" not in raw and repr(AMOUNT).encode() not in raw
    [got] = list(read_records(root, kind="decide"))
    assert {k: got[k] for k in ("keys", "inputs", "decisions")} == {
        k: rec[k] for k in ("keys", "inputs", "decisions")
    }
    ks.erase("k2")
    [got] = list(read_records(root, kind="decide"))
    assert got["keys"] == ["k1"] and got["inputs"] == rec["inputs"][:1]  # type: ignore[index]
    assert got["decisions"] == rec["decisions"][:1] and got["versions"] == ["1"]  # type: ignore[index]
    assert verify(root).ok
