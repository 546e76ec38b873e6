"""A churn project whose customers, transactions and labels live in PostgreSQL, run as a
user runs it (one `insight` command per step, each in its own process): ingest, build,
more rows arrive, ingest again (only the new rows), build (the snapshot has them and names
the runs), train, and a served decision traced back to the ingestion runs behind it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from engine.data import RetailParams, generate_retail
from engine.workspace import Workspace
from tests.pgserver import PostgresServer, start_postgres

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "retail" / "insight.yaml"

pytestmark = [pytest.mark.process, pytest.mark.slow, pytest.mark.spark, pytest.mark.ray]


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.stop()


def _insight(cwd: Path, pg: PostgresServer, *args: str, raw: bool = False) -> str:
    """Run `insight ARGS` as a user would, in its own process; the output (stdout and
    stderr, whitespace folded; ``raw``: stdout as printed)."""
    r = subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, **pg.env},
        check=False,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "Traceback" not in out and pg.password not in out
    return r.stdout if raw else " ".join(out.split())


def _in_process(
    cwd: Path, pg: PostgresServer, mp: pytest.MonkeyPatch, *args: str, raw: bool = False
) -> str:
    """A read or a first pull in this process (the session's Spark); ``raw``: the output
    as printed."""
    from typer.testing import CliRunner

    from engine.cli import app

    mp.chdir(cwd)
    r = CliRunner().invoke(app, list(args), env=pg.env)
    assert r.exit_code == 0, (r.output, r.exception)
    return r.output if raw else " ".join(r.output.split())


def _us(t: pa.Table) -> pa.Table:
    """Nanosecond times (pandas') as microseconds, what PostgreSQL stores."""
    cols = [c.cast(pa.timestamp("us")) if pa.types.is_timestamp(c.type) else c for c in t.columns]
    return pa.Table.from_arrays(cols, names=t.column_names)


def _load(pg: PostgresServer, name: str, t: pa.Table, mode: str = "create") -> None:
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.adbc_ingest(name, _us(t), mode=mode)
        conn.commit()


def _project(tmp: Path, pg: PostgresServer, data: Path) -> Path:
    raw: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    raw.pop("sample")
    raw.pop("treatment")
    src = raw["sources"]
    db = {"url": pg.url()}
    src["customers"].update(
        kind="postgres",
        database={**db, "table": "customers"},
        ingest={"watermark": "updated_at"},
        checks=[
            {"check": "unique", "column": "customer_id", "blocking": True},
            {"check": "in_set", "column": "plan", "values": ["basic", "standard", "premium"]},
        ],
    )
    src["customers"].pop("path"), src["customers"].pop("format")
    src["customers"]["columns"]["updated_at"] = "timestamp"
    src["transactions"].update(
        kind="postgres",
        database={**db, "table": "transactions", "max_partitions": 2},
        ingest={"watermark": "txn_time", "lookback": "1d"},
        checks=[{"check": "range", "column": "amount", "min": 0}],
    )
    src["transactions"].pop("path")
    src["labels"].update(
        kind="postgres",
        database={**db, "table": "labels", "reader": "spark"},
        ingest={"watermark": "label_time", "key": ["customer_id", "label_time"]},
    )
    src["labels"].pop("path")
    src["campaign"]["path"] = str(data / "campaign.parquet")
    raw["train"].update(num_samples=1, max_concurrent=1, families={"logreg": {"C": [0.01, 1.0]}})
    raw["train"].pop("uplift_learners")
    raw["train"]["gate"]["qini_not_worse"] = False
    raw["schedule"] = {
        "ingest": {"every": "1h"},
        "features": {"after": "ingest"},
        "train": {"after": "features"},
    }
    path = tmp / "insight.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_a_database_project_from_ingest_to_a_traced_decision(
    pg: PostgresServer, tmp_path: Path, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    generate_retail(RetailParams(customers=500, days=300), data)
    customers = pq.read_table(data / "customers.parquet")
    plans = sorted(set(customers["plan"].to_pylist()))
    customers = customers.append_column("updated_at", customers["signup_time"])
    tx = pq.read_table(data / "transactions.parquet")
    labels = pq.read_table(data / "labels.parquet")
    t_cut = (
        pc.min_max(tx["txn_time"])["min"].as_py()
        + (pc.min_max(tx["txn_time"])["max"].as_py() - pc.min_max(tx["txn_time"])["min"].as_py())
        * 0.8
    )
    early_tx = tx.filter(pc.less(tx["txn_time"], pa.scalar(t_cut, tx["txn_time"].type)))
    late_tx = tx.filter(pc.greater_equal(tx["txn_time"], pa.scalar(t_cut, tx["txn_time"].type)))
    l_cut = sorted(set(labels["label_time"].to_pylist()))[-1]
    early_lab = labels.filter(
        pc.less(labels["label_time"], pa.scalar(l_cut, labels["label_time"].type))
    )
    late_lab = labels.filter(
        pc.equal(labels["label_time"], pa.scalar(l_cut, labels["label_time"].type))
    )
    _load(pg, "customers", customers)
    _load(pg, "transactions", early_tx)
    _load(pg, "labels", early_lab)
    project = _project(tmp_path, pg, data)
    yml = yaml.safe_load(project.read_text())
    yml["sources"]["customers"]["checks"][1]["values"] = plans
    project.write_text(yaml.safe_dump(yml, sort_keys=False))
    ws = Workspace(tmp_path / ".insight")

    # the first pull in this process (on the test session's Spark); the rest as a user runs
    # them, each `insight` command its own process
    out = _in_process(tmp_path, pg, monkeypatch, "ingest")
    assert (
        f"customers: run 1 landed: {customers.num_rows:,} read, {customers.num_rows:,} landed"
        in out
    )
    assert f"transactions: run 1 landed: {early_tx.num_rows:,} read" in out
    assert "labels: run 1 landed" in out and "(spark, 1 partition(s)" in out
    assert f"labels: run 1 landed: {early_lab.num_rows:,} read" in out

    # more rows arrive: the last label date, the latest transactions, 5 customers change plan
    _load(pg, "transactions", late_tx, mode="append")
    _load(pg, "labels", late_lab, mode="append")
    pg.execute(
        "UPDATE customers SET plan = 'premium', updated_at = now()::timestamp "
        "WHERE customer_id IN (SELECT customer_id FROM customers ORDER BY customer_id LIMIT 5)"
    )
    # the project's schedule, one pass: ingest (rows landed) -> features build -> train
    out = _insight(tmp_path, pg, "schedule", "run", "--once")
    assert "customers: run 2 landed: 6 read, 5 landed, 1 already landed" in out, out
    # the 1-day lookback re-reads the last day's rows: they are not landed twice
    assert f"read, {late_tx.num_rows:,} landed" in out.split("transactions: run 2 landed:")[1], out
    assert "[schedule] ingest: ok, changed" in out and "[schedule] features: ok" in out
    assert "[schedule] train: ok" in out, out
    (second,) = [
        json.loads(p.read_text()) for p in (ws.features / "retail").glob("*/manifest.json")
    ]
    # the build read the new rows: one training row per label row, the late ones included
    assert second["rows"] == labels.num_rows > early_lab.num_rows
    assert [r["run"] for r in second["sources"]["transactions"]["ingest_runs"]] == [1, 2]
    assert second["sources"]["customers"]["kind"] == "postgres"

    ledger = json.loads(_in_process(tmp_path, pg, monkeypatch, "ledger", "--json", raw=True))
    assert ledger["problems"] == []
    assert [(r["source"], r["run"], r["status"]) for r in ledger["runs"]] == [
        ("customers", 1, "landed"),
        ("customers", 2, "landed"),
        ("labels", 1, "landed"),
        ("labels", 2, "landed"),
        ("transactions", 1, "landed"),
        ("transactions", 2, "landed"),
    ]

    # a served decision by version 1, as a replica writes it, traced back to the runs
    from engine.audit import AuditWriter
    from engine.audit.records import decision_record

    w = AuditWriter(ws.audit / "predict", writer="replica-test")
    w.append(
        [
            decision_record(
                route="/predict",
                request_id="req-42",
                model="retail-churn",
                versions=["1"],
                generation=1,
                ids=["h1"],
                layout="-",
                inputs={},
                input_policy="none",
                scores=[0.7],
                threshold=0.5,
                latency_ms=1.0,
            )
        ]
    )
    w.close()
    # (MLflow in its own process: the registry is read where the test's process keeps no
    # tracking state)
    trace = json.loads(_insight(tmp_path, pg, "lineage", "--request", "req-42", raw=True))
    v1 = trace["lineage"][0]
    assert trace["versions"] == ["1"] and v1["snapshot_id"] == second["snapshot_id"]
    tx_runs = v1["sources"]["transactions"]["ingest_runs"]
    assert [(r["run"], r["in_ledger"]) for r in tx_runs] == [(1, True), (2, True)]
    assert tx_runs[1]["since"].startswith('"txn_time" >= TIMESTAMP')
    # the credentials are nowhere under the workspace: not in the ledger, the snapshots,
    # MLflow's store and artifacts, the logs
    secret = pg.password.encode()
    leaked = [f for f in ws.root.rglob("*") if f.is_file() and secret in f.read_bytes()]
    assert leaked == []
