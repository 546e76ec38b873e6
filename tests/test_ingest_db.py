"""Database sources against a real PostgreSQL (started here, Debian's binaries): both
readers give the same rows and types; incremental ingestion with its ledger is idempotent,
crash-safe and sees late rows; bad rows are quarantined, blocking checks stop the landing;
the database going away, wrong credentials and a relation that does not match the project
file are clear errors that land nothing."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.config.source import SourceConfig
from engine.errors import ConfigError, DataError
from engine.ingest import db, ledger, store
from engine.ingest.run import ingest_source
from engine.workspace import Workspace
from tests.pgserver import PostgresServer, start_postgres

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def pg_env(pg: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> PostgresServer:
    for k, v in pg.env.items():
        monkeypatch.setenv(k, v)
    return pg


@dataclass
class Sources:
    """The smallest project part the ingestion needs (engine.config.base.HasSources)."""

    sources: dict[str, SourceConfig]
    base_dir: str = "."
    entities: dict[str, str] = field(default_factory=dict)

    def resolve_path(self, path: str, workspace: Path) -> Path:
        return Path(path.replace("{workspace}", str(workspace)))

    def entity_key(self, entity: str) -> str:
        return self.entities[entity]


def source(pg: PostgresServer, name: str, **kw: Any) -> SourceConfig:
    database = {"url": pg.url(), "table": name, **kw.pop("database", {})}
    return SourceConfig.model_validate(
        {"kind": "postgres", "path": f"{{workspace}}/raw/{name}", "database": database, **kw}
    )


TYPES_TABLE = """
CREATE TABLE typed (
  id bigint PRIMARY KEY, small smallint, i int, amount numeric(14, 4), d double precision,
  r real, name text, code varchar(8), ts timestamp, tstz timestamptz, flag boolean);
INSERT INTO typed
SELECT g, (g % 300)::smallint, g * 7, g * 1.2345 - 500, g / 7.0, (g / 3.0)::real,
  'name ' || g || ' é€', substr(md5(g::text), 1, 8),
  timestamp '2024-01-01 00:00:00.123456' + g * interval '37 minutes 1.5 seconds',
  timestamptz '2024-03-31 01:30:00+02' + g * interval '1 hour', g % 3 = 0
FROM generate_series(1, 5000) g;
INSERT INTO typed VALUES (0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""


def test_both_readers_give_the_same_rows_and_types(pg_env: PostgresServer, spark: Any) -> None:
    pg_env.execute(TYPES_TABLE)
    src = source(pg_env, "typed", database={"max_partitions": 4})
    sql = db.pulled_sql(src, None)
    via_jdbc, part = db.jdbc_frame(spark, "typed", src, sql, "id")
    assert part is not None and (part.lower, part.upper) == ("0", "5000")
    assert part.partitions == 1  # 5,001 rows: one read per 50,000 rows, at least one
    src4 = source(pg_env, "typed", database={"max_partitions": 4})
    big = db.plan_partitions(
        spark, "typed", src4, "SELECT g AS id FROM generate_series(1, 1000000) g", "id"
    )
    assert big is not None and big.partitions == 4  # 20 by size, capped by max_partitions
    via_adbc = db.adbc_frame(spark, "typed", src, sql)
    a = via_jdbc.toArrow().sort_by("id")
    b = via_adbc.toArrow().sort_by("id")
    assert a.schema == b.schema, (a.schema, b.schema)
    assert {f.name: str(f.type) for f in a.schema} == {
        "id": "int64",
        "small": "int64",
        "i": "int64",
        "amount": "double",
        "d": "double",
        "r": "double",
        "name": "string",
        "code": "string",
        "ts": "timestamp[us]",
        "tstz": "timestamp[us, tz=UTC]",
        "flag": "bool",
    }
    assert a.equals(b)
    assert a.num_rows == 5001 and a.slice(0, 1).to_pylist()[0]["name"] is None
    row = a.filter(pa.compute.equal(a["id"], 1)).to_pylist()[0]
    assert row["tstz"] == dt.datetime(2024, 3, 30, 23, 30, tzinfo=dt.UTC) + dt.timedelta(hours=1)
    assert row["ts"] == dt.datetime(2024, 1, 1, 0, 37, 1, 623456)
    assert row["name"] == "name 1 é€" and row["amount"] == pytest.approx(1.2345 - 500)
    # the partitioned read (4 connections at most) gives the same rows
    parted, p4 = db.jdbc_frame(
        spark, "typed", src4, "SELECT * FROM typed CROSS JOIN generate_series(1, 10) k", "id"
    )
    assert p4 is not None and p4.partitions == 2
    assert parted.rdd.getNumPartitions() == 2 and parted.count() == 50_010


ACCOUNTS = """
CREATE TABLE accounts (
  account_id bigint PRIMARY KEY, plan text, email text, balance numeric(12, 2),
  updated_at timestamp NOT NULL);
INSERT INTO accounts
SELECT g, (ARRAY['basic', 'plus', 'pro'])[1 + g % 3], 'user' || g || '@example.com', g * 10.5,
  timestamp '2026-01-01' + g * interval '1 minute'
FROM generate_series(1, 400) g;
"""


def _accounts(pg: PostgresServer, **kw: Any) -> Sources:
    src = source(
        pg,
        "accounts",
        columns={
            "account_id": "int",
            "plan": "string",
            "email": "string",
            "balance": "double",
            "updated_at": "timestamp",
        },
        ingest={"watermark": "updated_at", "lookback": "10m", "key": ["account_id"]},
        **kw,
    )
    return Sources({"accounts": src})


def _current(cfg: Sources, ws: Workspace) -> Any:
    from engine.data.sources import read_frame

    cols = ["account_id", "plan", "email", "balance", "updated_at"]
    return read_frame(cfg, "accounts", ws.root, cols).sort_values("account_id")  # type: ignore[arg-type]


def test_incremental_ingestion_lands_changes_once(
    pg_env: PostgresServer, spark: Any, tmp_path: Path
) -> None:
    pg_env.execute("DROP TABLE IF EXISTS accounts CASCADE;" + ACCOUNTS)
    ws = Workspace(tmp_path / ".insight").ensure()
    cfg = _accounts(pg_env)
    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    r1 = ingest_source(cfg, "accounts", ws, spark, reader="spark", now=now)  # type: ignore[arg-type]
    assert (r1.run, r1.status, r1.rows_read, r1.rows_landed) == (1, "landed", 400, 400)
    assert r1.watermark_after == {
        "column": "updated_at",
        "value": "2026-01-01 06:40:00",
        "kind": "timestamp",
    }
    # a re-run over the same interval (the lookback re-reads the last 10 minutes) lands nothing
    r2 = ingest_source(cfg, "accounts", ws, spark, reader="adbc", now=now)  # type: ignore[arg-type]
    assert (r2.rows_read, r2.rows_landed, r2.rows_already_landed) == (11, 0, 11)
    assert r2.watermark_after == r1.watermark_after
    # changes: 3 rows updated, 2 added, 1 late row committed behind the watermark
    pg_env.execute(
        "UPDATE accounts SET plan = 'pro', updated_at = timestamp '2026-01-01 07:00' "
        "WHERE account_id IN (5, 6, 7);"
        "INSERT INTO accounts VALUES (401, 'basic', 'new401@example.com', 1, '2026-01-01 07:01'),"
        " (402, 'plus', 'new402@example.com', 2, '2026-01-01 07:02'),"
        " (403, 'plus', 'late403@example.com', 3, '2026-01-01 06:55');"
    )
    r3 = ingest_source(cfg, "accounts", ws, spark, reader="spark", now=now)  # type: ignore[arg-type]
    assert r3.rows_landed == 6 and r3.watermark_after["value"] == "2026-01-01 07:02:00"  # type: ignore[index]
    cur = _current(cfg, ws)
    assert len(cur) == 403 and cur.account_id.is_unique
    assert list(cur.set_index("account_id").loc[[5, 6, 7], "plan"]) == ["pro"] * 3
    # the raw store is append-only: both versions of account 5 are there
    raw = pa.concat_tables(
        [pq.read_table(f) for f in store.data_files(ws.root / "raw" / "accounts")]
    )
    assert raw.num_rows == 406 and sorted(set(raw["_ingest_run"].to_pylist())) == [1, 3]
    # partitioned by ingestion date, one folder per run
    assert (ws.root / "raw/accounts/ingest_date=2026-01-02/ingest_run=000003").is_dir()
    # the ledger: every run, hash-chained, files with their hashes
    recs = ledger.runs(ws, "accounts")
    assert [r["run"] for r in recs] == [1, 2, 3] and recs[1]["prev_run"] == recs[0]["hash"]
    assert [r["rows_landed"] for r in recs] == [400, 0, 6]
    assert recs[2]["watermark_before"]["value"] == "2026-01-01 06:40:00"
    assert recs[2]["since"] == "\"updated_at\" >= TIMESTAMP '2026-01-01 06:30:00'"
    assert ledger.verify_ledger(ws) == []
    from engine.audit.verify import verify

    assert verify(ws.audit).ok
    # a landed file changed afterwards is named
    f = ws.root / recs[2]["files"][0]["path"]
    pq.write_table(pq.read_table(f).slice(1), f)
    assert any("was changed" in p for p in ledger.verify_ledger(ws))


def test_a_crash_leaves_nothing_visible_and_the_next_run_finishes(
    pg_env: PostgresServer, spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_env.execute("DROP TABLE IF EXISTS accounts CASCADE;" + ACCOUNTS)
    ws = Workspace(tmp_path / ".insight").ensure()
    cfg = _accounts(pg_env)
    raw = ws.root / "raw" / "accounts"

    # 1. killed after writing its files, before the ledger record (the commit point)
    def crash(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt  # like a kill: no error handling of ours runs

    monkeypatch.setattr(ledger.Ledger, "append", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest_source(cfg, "accounts", ws, spark, reader="spark")  # type: ignore[arg-type]
    assert (raw / store.STAGING).is_dir() and store.data_files(raw) == []
    assert ledger.runs(ws) == []
    monkeypatch.undo()
    for k, v in pg_env.env.items():
        monkeypatch.setenv(k, v)
    r = ingest_source(cfg, "accounts", ws, spark, reader="spark")  # type: ignore[arg-type]
    assert r.recovered == {"published": [], "removed": [1]} and r.run == 1 and r.rows_landed == 400

    # 2. killed after the ledger record, before its folder was moved into place
    pg_env.execute(
        "UPDATE accounts SET balance = 0, updated_at = '2026-02-01' WHERE account_id = 1"
    )
    monkeypatch.setattr(store, "publish", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest_source(cfg, "accounts", ws, spark, reader="spark")  # type: ignore[arg-type]
    assert _current(cfg, ws).set_index("account_id").loc[1, "balance"] == 10.5  # not visible
    monkeypatch.undo()
    for k, v in pg_env.env.items():
        monkeypatch.setenv(k, v)
    r3 = ingest_source(cfg, "accounts", ws, spark, reader="spark")  # type: ignore[arg-type]
    assert r3.recovered == {"published": [2], "removed": []} and r3.rows_landed == 0
    assert _current(cfg, ws).set_index("account_id").loc[1, "balance"] == 0
    assert ledger.verify_ledger(ws) == []


def test_bad_rows_are_quarantined_and_blocking_checks_stop_the_landing(
    pg_env: PostgresServer, spark: Any, tmp_path: Path
) -> None:
    pg_env.execute(
        "DROP TABLE IF EXISTS accounts CASCADE;"
        + ACCOUNTS
        + "ALTER TABLE accounts DROP CONSTRAINT "
        "accounts_pkey; UPDATE accounts SET plan = 'gold' WHERE account_id = 3;"
        "UPDATE accounts SET email = 'not an email' WHERE account_id = 4;"
        "UPDATE accounts SET balance = -5 WHERE account_id = 9;"
        "UPDATE accounts SET plan = NULL WHERE account_id = 12;"
        "INSERT INTO accounts VALUES (20, 'basic', 'dup@example.com', 1, '2026-01-01 00:20');"
    )
    ws = Workspace(tmp_path / ".insight").ensure()
    checks = [
        {"check": "not_null", "column": "plan"},
        {"check": "unique", "column": "account_id"},
        {"check": "in_set", "column": "plan", "values": ["basic", "plus", "pro"]},
        {"check": "regex", "column": "email", "pattern": r"[^@ ]+@[^@ ]+\.[a-z]+$"},
        {"check": "range", "column": "balance", "min": 0},
        {"check": "row_count", "min_ratio": 0.5},
        {"check": "freshness", "max_age": "2d"},
    ]
    cfg = _accounts(pg_env, checks=checks)
    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    r = ingest_source(cfg, "accounts", ws, spark, reader="spark", now=now)  # type: ignore[arg-type]
    failed = {c.name: c.failed for c in r.checks}
    assert failed == {
        "not_null(plan)": 1,
        "unique(account_id)": 2,
        "in_set(plan)": 1,
        "regex(email)": 1,
        "range(balance)": 1,
        "row_count": 0,
        "freshness": 0,
    }
    assert (r.rows_read, r.rows_quarantined, r.rows_landed) == (401, 6, 395)
    q = pa.concat_tables(
        [pq.read_table(f) for f in store.data_files(ws.root / "quarantine" / "accounts")]
    ).to_pylist()
    got = sorted(
        (x["check"], x["column"], x["failure_case"], json.loads(x["row"])["account_id"]) for x in q
    )
    assert got == sorted(
        [
            ("not_null", "plan", None, 12),
            ("unique", "account_id", "20", 20),
            ("unique", "account_id", "20", 20),
            ("in_set", "plan", "gold", 3),
            ("regex", "email", "not an email", 4),
            ("range", "balance", "-5.0", 9),
        ]
    )
    assert ledger.runs(ws)[0]["rows_quarantined"] == 6
    # a blocking check that fails: nothing lands, the watermark stays, the run is recorded
    pg_env.execute(
        "UPDATE accounts SET plan = NULL, updated_at = '2026-01-01 09:00' WHERE account_id = 30"
    )
    blocking = [{**c, "blocking": True} if c["check"] == "not_null" else c for c in checks]
    cfg_b = _accounts(pg_env, checks=blocking)
    with pytest.raises(DataError, match=r"blocking check not_null\(plan\) failed \(1 row"):
        ingest_source(cfg_b, "accounts", ws, spark, reader="spark", now=now)  # type: ignore[arg-type]
    recs = ledger.runs(ws)
    assert (
        recs[-1]["status"] == "blocked"
        and recs[-1]["watermark_after"] == recs[0]["watermark_after"]
    )
    assert len(store.data_files(ws.root / "raw" / "accounts")) == 1
    # freshness judged at a later time fails (not blocking: recorded, rows land)
    late = ingest_source(cfg, "accounts", ws, spark, reader="spark", now=now + dt.timedelta(days=5))  # type: ignore[arg-type]
    assert {c.name: c.failed for c in late.checks}["freshness"] == 1


def test_the_database_going_away_lands_nothing(
    pg_env: PostgresServer, spark: Any, tmp_path: Path
) -> None:
    pg_env.execute(
        "DROP TABLE IF EXISTS accounts CASCADE;"
        + ACCOUNTS
        + "CREATE OR REPLACE VIEW slow_accounts AS "
        "SELECT a.* FROM accounts a, LATERAL (SELECT pg_sleep(0.02 + 0 * a.account_id)) s"
    )
    ws = Workspace(tmp_path / ".insight").ensure()
    cfg = _accounts(pg_env)
    ingest_source(cfg, "accounts", ws, spark, reader="spark")  # type: ignore[arg-type]
    slow = _accounts(pg_env)
    src = slow.sources["accounts"]
    slow.sources["accounts"] = src.model_copy(
        update={"database": src.database.model_copy(update={"table": "slow_accounts"})}  # type: ignore[union-attr]
    )
    pg_env.execute("UPDATE accounts SET updated_at = updated_at + interval '1 day'")
    before = ledger.last_watermark(ws, "accounts")
    files = store.data_files(ws.root / "raw" / "accounts")
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            ingest_source(slow, "accounts", ws, spark, reader="spark")  # type: ignore[arg-type]
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=pull)
    t.start()
    time.sleep(2.5)  # 400 rows x 20 ms: the pull is under way for 8 s
    pg_env.kill()
    t.join(120)
    try:
        assert len(errors) == 1 and isinstance(errors[0], DataError), errors
        msg = str(errors[0])
        assert "could not be reached or went away" in msg and "Nothing was landed" in msg
        assert "Traceback" not in msg and pg_env.password not in msg
        assert ledger.last_watermark(ws, "accounts") == before
        assert store.data_files(ws.root / "raw" / "accounts") == files
        assert not any((ws.root / "raw" / "accounts" / store.STAGING).glob("*"))
        assert ledger.runs(ws)[-1]["status"] == "failed"
    finally:
        pg_env.start()
    r = ingest_source(cfg, "accounts", ws, spark, reader="spark")  # type: ignore[arg-type]
    assert r.rows_landed == 400 and ledger.verify_ledger(ws) == []


def test_credentials_and_columns_are_checked_before_anything_is_written(
    pg_env: PostgresServer, spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_env.execute("DROP TABLE IF EXISTS accounts CASCADE;" + ACCOUNTS)
    ws = Workspace(tmp_path / ".insight").ensure()
    cfg = _accounts(pg_env)
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(ConfigError, match="PGPASSWORD is not set"):
        ingest_source(cfg, "accounts", ws, spark, reader="spark")  # type: ignore[arg-type]
    monkeypatch.setenv("PGPASSWORD", "wrong")
    for reader in ("spark", "adbc"):
        with pytest.raises(
            ConfigError, match=r"refused the user name or password\. Fix: set PGUSER and PGPASSWORD"
        ) as e:
            ingest_source(cfg, "accounts", ws, spark, reader=reader)  # type: ignore[arg-type]
        assert "wrong" not in str(e.value)
    monkeypatch.setenv("PGPASSWORD", pg_env.password)
    pg_env.execute("ALTER TABLE accounts ADD COLUMN secret_score double precision")
    with pytest.raises(
        DataError, match="returns 'secret_score', which the project file does not declare"
    ):
        ingest_source(cfg, "accounts", ws, spark, reader="spark")  # type: ignore[arg-type]
    pg_env.execute("ALTER TABLE accounts DROP COLUMN secret_score, DROP COLUMN plan")
    with pytest.raises(DataError, match="does not return 'plan', which the project file needs"):
        ingest_source(cfg, "accounts", ws, spark, reader="adbc")  # type: ignore[arg-type]
    assert not (ws.root / "raw").exists() or store.data_files(ws.root / "raw" / "accounts") == []
    assert [r["status"] for r in ledger.runs(ws)] == ["failed"] * 5
    # no password anywhere under the workspace
    for f in ws.root.rglob("*"):
        if f.is_file():
            assert pg_env.password.encode() not in f.read_bytes(), f


def test_a_generic_jdbc_source_names_its_driver(
    pg_env: PostgresServer, spark: Any, tmp_path: Path
) -> None:
    """kind jdbc: any database with a JDBC driver (here PostgreSQL's, named as a user of
    another database would name theirs); read by Spark, landed as a postgres source is."""
    pg_env.execute("DROP TABLE IF EXISTS accounts CASCADE;" + ACCOUNTS)
    pg_cfg = _accounts(pg_env)
    src = pg_cfg.sources["accounts"].model_dump()
    src.update(
        kind="jdbc",
        database={
            "url": f"jdbc:postgresql://127.0.0.1:{pg_env.port}/postgres",
            "table": "accounts",
            "driver": "org.postgresql.Driver",
            "jar": db.DEBIAN_JAR,
        },
    )
    cfg = Sources({"accounts": SourceConfig.model_validate(src)})
    ws = Workspace(tmp_path / ".insight").ensure()
    r = ingest_source(cfg, "accounts", ws, spark)  # type: ignore[arg-type]
    assert (r.reader, r.rows_landed) == ("spark", 400)  # auto: ADBC reads PostgreSQL only
    ws2 = Workspace(tmp_path / "pg").ensure()
    ingest_source(pg_cfg, "accounts", ws2, spark, reader="adbc")  # type: ignore[arg-type]
    assert _current(cfg, ws).equals(_current(pg_cfg, ws2))
    with pytest.raises(ConfigError, match="the ADBC reader reads PostgreSQL only"):
        ingest_source(cfg, "accounts", ws, spark, reader="adbc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="names its driver class"):
        SourceConfig.model_validate({**src, "database": {**src["database"], "driver": None}})
    with pytest.raises(ValueError, match="holds a password"):
        SourceConfig.model_validate(
            {**src, "database": {**src["database"], "url": "jdbc:postgresql://h/db?password=x"}}
        )


def _cli(cwd: Path, pg: PostgresServer, mp: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """`insight ARGS` in this process (on the test session's Spark)."""
    from typer.testing import CliRunner

    from engine.cli import app

    mp.chdir(cwd)
    from engine.errors import InsightError

    r = CliRunner().invoke(app, list(args), env=pg.env)
    if isinstance(r.exception, InsightError):  # what `insight` prints as one line, exit 2
        return 2, f"error: {r.exception}"
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, " ".join(r.output.split())


def test_init_from_a_postgresql_table_then_ingest(
    pg_env: PostgresServer, spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`insight init --from postgresql://...` writes a database project as it does for a
    file; `insight ingest` pulls it; a second pull with nothing new exits 99 when asked
    (what the exported Airflow DAG skips its followers on); `insight validate` passes."""
    pg_env.execute(
        "DROP TABLE IF EXISTS subscribers;"
        'CREATE TABLE subscribers ("Customer ID" text, tenure int, plan text, monthly numeric(8,2),'
        " email text, churned text, updated_at timestamptz);"
        "INSERT INTO subscribers SELECT 'C' || g, g % 70, (ARRAY['a','b','c'])[1 + g % 3],"
        " 20 + g % 50, 'u' || g || '@example.com', CASE WHEN g % 4 = 0 THEN 'Yes' ELSE 'No' END,"
        " timestamptz '2026-01-01 00:00+00' + g * interval '1 minute' FROM generate_series(1, 800) g"
    )
    url = pg_env.url() + "?table=subscribers"
    code, out = _cli(tmp_path, pg_env, monkeypatch, "init", "--from", url, "--label", "churned")
    assert code == 0 and "label: churned (positive 'Yes')" in out, out
    text = (tmp_path / "insight.yaml").read_text()
    assert "kind: postgres" in text and "table: subscribers" in text
    assert pg_env.password not in text and f"{pg_env.user}@" not in text
    code, out = _cli(tmp_path, pg_env, monkeypatch, "ingest", "--unchanged-exit", "99")
    assert code == 0 and "run 1 landed: 800 read, 800 landed" in out, out
    code, out = _cli(tmp_path, pg_env, monkeypatch, "ingest", "--unchanged-exit", "99")
    # no watermark declared (init cannot know one): the whole table is read again, nothing
    # is landed twice
    assert code == 99 and "run 2 landed: 800 read, 0 landed, 800 already landed" in out, out
    code, out = _cli(tmp_path, pg_env, monkeypatch, "validate")
    assert code == 0, out
    secret_url = url.replace("//", f"//{pg_env.user}:{pg_env.password}@")
    (tmp_path / "x").mkdir()
    args = ("init", "--from", secret_url, "--label", "churned")
    code, out = _cli(tmp_path / "x", pg_env, monkeypatch, *args)
    assert code != 0 and "holds a user name or password" in out and pg_env.password not in out
