"""The landing checks (on Spark, set-based) give pandera's answer, row for row and value for
value, on random tables with nulls, NaN, duplicates, values outside the set, text that does
not match and numbers out of range, for several seeds; and the scheduler keeps its promises
(backoff, order, never two at once, a killed holder frees its lock)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.config.ingest import CheckConfig, JobSchedule, ScheduleConfig
from engine.errors import ConfigError
from engine.ingest.checks import run_checks
from engine.ingest.lock import JobBusy, job_lock
from engine.ingest.schedule import Scheduler, cron_spec, export_airflow, export_cron

PATTERN = r"[a-z]{2,6}@[a-z]+\.(com|org)"
SET = ["basic", "plus", "pro"]


def _table(seed: int, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.normal(50, 40, n)
    amount[rng.random(n) < 0.05] = np.nan
    plan = rng.choice(
        np.array([*SET, "gold", "Basic", None], dtype=object),
        n,
        p=[0.3, 0.3, 0.25, 0.05, 0.05, 0.05],
    )
    local = rng.choice(np.array(["ab", "abcdefgh", "x1", "qq"]), n)
    dom = rng.choice(np.array([".com", ".org", ".net", ""]), n)
    email = pd.Series([f"{a}@mail{b}" for a, b in zip(local, dom, strict=True)], dtype=object)
    email[rng.random(n) < 0.05] = None
    name = pd.Series(
        rng.choice(np.array(["ann", "bo", None], dtype=object), n, p=[0.45, 0.45, 0.1])
    )
    return pd.DataFrame(
        {
            "row": np.arange(n),
            "k": rng.integers(0, int(n * 0.95), n),
            "plan": plan,
            "email": email,
            "amount": amount,
            "name": name,
        }
    )


CHECKS = [
    CheckConfig(check="not_null", column="name"),
    CheckConfig(check="unique", column="k"),
    CheckConfig(check="in_set", column="plan", values=SET),
    CheckConfig(check="regex", column="email", pattern=PATTERN),
    CheckConfig(check="range", column="amount", min=0, max=100),
]
PANDERA_NAMES = {
    "not_nullable": "not_null",
    "field_uniqueness": "unique",
    "isin": "in_set",
    "str_matches": "regex",
    "in_range": "range",
}


def _pandera_failures(df: pd.DataFrame) -> set[tuple[str, str, int, Any]]:
    import pandera.pandas as pa
    from pandera.errors import SchemaErrors

    schema = pa.DataFrameSchema(
        {
            "name": pa.Column(object, nullable=False),
            "k": pa.Column(int, unique=True),
            "plan": pa.Column(object, pa.Check.isin(SET), nullable=True),
            "email": pa.Column(object, pa.Check.str_matches(PATTERN), nullable=True),
            "amount": pa.Column(float, pa.Check.in_range(0, 100), nullable=True),
        }
    )
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as e:
        fc = e.failure_cases
    else:
        return set()
    out = set()
    for r in fc.itertuples():
        kind = PANDERA_NAMES[str(r.check).split("(")[0]]
        out.add((kind, str(r.column), int(df.loc[r.index, "row"]), _norm(r.failure_case)))
    return out


def _norm(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    try:
        return round(float(v), 9)
    except (TypeError, ValueError):
        return str(v)


@pytest.mark.spark
@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed-{s}")
def test_checks_on_spark_equal_pandera(spark: Any, seed: int, tmp_path: Path) -> None:
    df = _table(seed)
    sdf = spark.createDataFrame(df)
    got = run_checks(
        spark,
        sdf,
        CHECKS,
        source="t",
        base_dir=tmp_path,
        history=[],
        newest=None,
        now=dt.datetime(2026, 1, 1),
    )
    assert got.quarantine is not None
    ours = {
        (r["check"], r["column"], json.loads(r["row"])["row"], _norm(r["failure_case"]))
        for r in got.quarantine.collect()
    }
    want = _pandera_failures(df)
    assert ours == want, (sorted(ours - want)[:5], sorted(want - ours)[:5])
    # every check found something (the data is made so), and the good rows are the rest
    assert all(r.failed > 0 for r in got.results)
    bad_rows = {row for _, _, row, _ in want}
    assert got.good.count() == len(df) - len(bad_rows)


@pytest.mark.spark
def test_in_set_reads_a_large_set_from_a_file(spark: Any, tmp_path: Path) -> None:
    allowed = pd.DataFrame({"sku": [f"S{i:07d}" for i in range(0, 400_000, 2)]})
    allowed.to_parquet(tmp_path / "skus.parquet")
    df = spark.createDataFrame(pd.DataFrame({"sku": [f"S{i:07d}" for i in range(1000)] + [None]}))
    chk = CheckConfig(check="in_set", column="sku", values_from="skus.parquet")
    got = run_checks(
        spark,
        df,
        [chk],
        source="t",
        base_dir=tmp_path,
        history=[],
        newest=None,
        now=dt.datetime(2026, 1, 1),
    )
    assert got.results[0].failed == 500 and got.good.count() == 501  # odd numbers fail; null passes
    with pytest.raises(ConfigError, match="does not exist"):
        run_checks(
            spark,
            df,
            [chk],
            source="t",
            base_dir=tmp_path / "nope",
            history=[],
            newest=None,
            now=dt.datetime(2026, 1, 1),
        )


def test_dataset_checks_judge_the_run() -> None:
    from engine.ingest.checks import _dataset_checks

    rc = CheckConfig(check="row_count", min_ratio=0.5, max_ratio=2.0, runs=3)
    fr = CheckConfig(check="freshness", max_age="1d")
    now = dt.datetime(2026, 1, 10)
    res = _dataset_checks([rc, fr], 100, [1000, 90, 110, 100], now - dt.timedelta(hours=3), now)
    assert [(r.name, r.failed) for r in res] == [("row_count", 0), ("freshness", 0)]
    res = _dataset_checks([rc, fr], 20, [90, 110, 100], now - dt.timedelta(days=2), now)
    assert [(r.name, r.failed) for r in res] == [("row_count", 1), ("freshness", 1)]
    assert "0.20x the median of the last 3 runs" in res[0].detail
    assert _dataset_checks([rc], 5, [], None, now)[0].failed == 0  # nothing to compare yet


# ---------------------------------------------------------------- schedules


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_the_scheduler_runs_followers_on_change_and_backs_off_on_failure() -> None:
    clock = FakeClock()
    calls: list[tuple[float, str]] = []
    outcomes = iter([True, "fail", "fail", "fail", False, True])

    def run(job: str) -> bool:
        calls.append((clock.t, job))
        if job != "ingest":
            return True
        o = next(outcomes)
        if o == "fail":
            raise RuntimeError("database down")
        return bool(o)

    sched = ScheduleConfig(
        ingest=JobSchedule(every="1h"),
        features=JobSchedule(after="ingest"),
        train=JobSchedule(after="features"),
        backoff_s=60,
    )
    s = Scheduler(sched, run, clock=clock, sleep=clock.sleep, log=lambda _: None)
    s.loop(max_ticks=6)
    assert calls == [
        (0, "ingest"),
        (0, "features"),
        (0, "train"),  # changed: the chain follows
        (3600, "ingest"),  # fails: retry after 60 s, then 120 s, then 240 s
        (3660, "ingest"),
        (3780, "ingest"),
        (4020, "ingest"),  # nothing new: no followers, back to the hourly cadence
        (7620, "ingest"),
        (7620, "features"),
        (7620, "train"),
    ]
    assert [h["status"] for h in s.history if h["job"] == "ingest"] == [
        "ok",
        "failed",
        "failed",
        "failed",
        "ok",
        "ok",
    ]
    assert [h.get("wait_s") for h in s.history if h["status"] == "failed"] == [60, 120, 240]


def test_the_backoff_never_exceeds_the_period() -> None:
    clock = FakeClock()

    def run(job: str) -> bool:
        raise RuntimeError("down")

    s = Scheduler(
        ScheduleConfig(ingest=JobSchedule(every="5m"), backoff_s=100),
        run,
        clock=clock,
        sleep=clock.sleep,
        log=lambda _: None,
    )
    s.loop(max_ticks=5)
    assert [h["wait_s"] for h in s.history] == [100, 200, 300, 300, 300]


def test_a_busy_job_is_skipped_not_failed(tmp_path: Path) -> None:
    clock = FakeClock()
    with job_lock(tmp_path, "schedule-ingest"):

        def run(job: str) -> bool:
            with job_lock(tmp_path, "schedule-ingest"):
                return True

        s = Scheduler(
            ScheduleConfig(ingest=JobSchedule(every="1h")),
            run,
            clock=clock,
            sleep=clock.sleep,
            log=lambda _: None,
        )
        s.loop(max_ticks=1)
    assert s.history == [{"job": "ingest", "status": "skipped"}]
    with (
        pytest.raises(JobBusy, match=r"already running \(process \d+"),
        job_lock(tmp_path, "x"),
        job_lock(tmp_path, "x"),
    ):
        pass


@pytest.mark.process
def test_a_killed_holder_does_not_keep_the_lock(tmp_path: Path) -> None:
    code = (
        "import time, sys; from pathlib import Path; from engine.ingest.lock import job_lock\n"
        f"with job_lock(Path({str(tmp_path)!r}), 'ingest-x'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        with pytest.raises(JobBusy, match=f"process {p.pid}"), job_lock(tmp_path, "ingest-x"):
            pass
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        with job_lock(tmp_path, "ingest-x"):  # free at once: the kernel released it
            pass
    finally:
        if p.poll() is None:
            p.kill()


def test_exports_call_the_same_commands(tmp_path: Path) -> None:
    """The DAG is checked statically (Airflow 3 is not installed here: it is large and the
    engine does not depend on it): it parses, imports only Airflow's DAG and BashOperator,
    and its tasks run the insight commands in order, skipping followers on exit 99."""
    import ast

    sched = ScheduleConfig(
        ingest=JobSchedule(every="1h"),
        features=JobSchedule(after="ingest"),
        train=JobSchedule(every="1d"),
    )
    proj = tmp_path / "insight.yaml"
    text = export_airflow(sched, proj, tmp_path, "churn", "shop")
    tree = ast.parse(text)
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert imported == {"DAG", "BashOperator"}
    ops = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "BashOperator"
    ]
    cmds = {
        next(k.value.value for k in o.keywords if k.arg == "task_id"): next(
            k.value.value for k in o.keywords if k.arg == "bash_command"
        )
        for o in ops
    }
    assert len(ops) == 3 and cmds["features"] == f"insight features build --project {proj}"
    assert any(c.startswith("insight ingest --unchanged-exit 99") for c in cmds.values())
    assert "ingest >> features" in text and "skip_on_exit_code=99" in text
    dags = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "DAG"
    ]
    ids = sorted(next(k.value.value for k in d.keywords if k.arg == "dag_id") for d in dags)
    assert ids == ["shop-ingest", "shop-train"]
    compile(text, "dag.py", "exec")
    cron = export_cron(sched, proj, tmp_path)
    assert f"0 * * * * cd {tmp_path} && insight schedule run --once --job ingest" in cron
    assert "0 0 * * * " in cron
    assert cron_spec("15m") == "*/15 * * * *" and cron_spec("6h") == "0 */6 * * *"
    with pytest.raises(ConfigError, match="cannot be written as a cron schedule"):
        cron_spec("7m")


@pytest.mark.process
def test_schedule_run_stops_on_ctrl_c_with_a_summary(tmp_path: Path) -> None:
    """`insight ingest --every 1h` until Ctrl-C: a run that fails (no database to reach) is
    retried with backoff and the loop goes on; SIGINT ends it with a summary, exit 0."""
    (tmp_path / "insight.yaml").write_text(
        "name: sched\nsources:\n  t:\n    kind: postgres\n    database: {url: 'postgresql://127.0.0.1:1/x', table: t}\n"
        "target: {source: t, treatment: arm, control: a, outcome: y, features: [x]}\n"
        "schedule: {ingest: {every: 1h}, train: {after: ingest}, backoff_s: 1}\n"
    )
    env = {**os.environ, "PGUSER": "u", "PGPASSWORD": "p"}
    p = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "ingest", "--every", "1h"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert p.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break  # it ended on its own: the assertions below say why
            lines.append(line)
            if "next try in 1 s" in line:  # the first failure: retried after backoff_s
                break
        p.send_signal(signal.SIGINT)
        rest, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    out = "".join(lines) + rest
    assert p.returncode == 0, out[-3000:]
    assert "ingest: failed" in out and "could not be reached" in out
    assert "schedule stopped" in out and "ingest: " in out.split("schedule stopped")[1]
    assert "Traceback" not in out
