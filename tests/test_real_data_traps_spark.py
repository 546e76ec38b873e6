"""Wrong answers that real tables caused, on real Spark (issue 20): identical rows with no id
multiplied by the label-feature join, keys that repeat, events of one entity at one time.
Each test builds a generated table shaped like the case and fails on the old code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.config.project import ProjectConfig
from engine.data.init import plan
from engine.data.project_file import render
from engine.errors import DataError
from engine.features import snapshot as snap
from engine.stages.features import stage_features
from engine.workspace import Workspace
from tests.tables import write_csv

pytestmark = pytest.mark.spark


def with_identical_rows(n: int, groups: int, seed: int) -> pd.DataFrame:
    """A purchase-like table with no id column and ``groups`` groups of 2-6 identical rows
    (the public campaign table has about a thousand such groups in 64,000 rows)."""
    rng = np.random.default_rng(seed)
    base = pd.DataFrame(
        {
            "recency": rng.integers(1, 13, n),
            "history": np.round(rng.gamma(2.0, 100.0, n), 2),
            "mens": rng.integers(0, 2, n),
            "zip_code": rng.choice(["Urban", "Suburban", "Rural"], n),
            "channel": rng.choice(["Web", "Phone", "Multichannel"], n),
            "visit": rng.choice(["yes", "no"], n, p=[0.15, 0.85]),
        }
    )
    copies = [base]
    for g in range(groups):
        k = int(rng.integers(1, 6))  # 1-5 extra copies of one row
        copies.append(pd.concat([base.iloc[[g]]] * k))
    return pd.concat(copies).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _project(tmp: Path, df: pd.DataFrame, label: str, **kw: Any) -> tuple[ProjectConfig, Workspace]:
    table = write_csv(df, tmp / "table.csv")
    (tmp / "insight.yaml").write_text(render(plan(table, label, **kw)))
    return ProjectConfig.load(tmp / "insight.yaml"), Workspace(tmp / ".insight").ensure()


@pytest.mark.parametrize("seed", [0, 1])
def test_identical_rows_get_their_own_ids(spark: Any, tmp_path: Path, seed: int) -> None:
    """Regression: the row id was a hash of the row, so k identical rows shared one id and
    the join on it made k*k rows (139,082 rows from 64,000)."""
    from engine.data.sources import read_source
    from engine.pii import load_key

    df = with_identical_rows(1500, 60, seed)
    sizes = df.groupby(list(df.columns)).size()
    assert (sizes > 1).sum() >= 50, "the table has groups of identical rows"
    cfg, ws = _project(tmp_path, df, "visit")
    assert cfg.sources["table"].row_id == "row_id"
    text = (tmp_path / "insight.yaml").read_text()
    assert "groups of identical rows (the largest:" in text, "init counts them in the file"
    s, _ = stage_features(cfg, ws, spark)
    got = s.read_pandas()
    assert len(got) == len(df), f"{len(got)} training rows for {len(df)} label rows"
    assert s.manifest["rows"] == s.manifest["label_rows"] == len(df)
    assert s.manifest["one_row_per_label_row"] is True
    assert got["row_id"].is_unique
    # Stable across re-reads of the same file: the same (id, row) pairs, whatever the order.
    key = load_key(ws.root)
    cols = ["row_id", "recency", "history", "channel"]
    a = read_source(spark, cfg, "table", ws.root, key).select(*cols).toPandas()
    b = read_source(spark, cfg, "table", ws.root, key).repartition(3).select(*cols).toPandas()
    pd.testing.assert_frame_equal(
        a.sort_values("row_id").reset_index(drop=True),
        b.sort_values("row_id").reset_index(drop=True),
    )
    # The label of each id is its own row's label: label counts equal the file's.
    assert int(got["visit"].sum()) == int((df["visit"] == "yes").sum())


def test_a_key_that_a_cast_makes_repeat_stops_the_build(spark: Any, tmp_path: Path) -> None:
    """The build asserts one row per label row; a static table whose key repeats once read
    as a number ('01' and '1') is named, and nothing is committed."""
    from pyspark.sql import functions as F

    from engine.data.sources import read_source
    from engine.features.build import build_training_table, label_rows
    from engine.pii import load_key
    from engine.stages.features import _one_row_per_label

    n = 200
    df = pd.DataFrame(
        {
            "account": [str(i) for i in range(n)],
            "plan": np.where(np.arange(n) % 2 == 0, "basic", "pro"),
            "usage": np.arange(n, dtype=float),
            "churned": np.where(np.arange(n) % 3 == 0, "yes", "no"),
        }
    )
    cfg, ws = _project(tmp_path, df, "churned", key="account")
    key = load_key(ws.root)
    sources = {"table": read_source(spark, cfg, "table", ws.root, key)}
    # A second copy of account 7's row, as a file with '07' read as the number 7 would have.
    dup = sources["table"].where(F.col("account") == 7)
    sources["table"] = sources["table"].unionByName(dup)
    labels = label_rows(cfg, sources, "yes", "no")
    table = build_training_table(cfg, sources, labels=labels)
    with pytest.raises(DataError) as e:
        _one_row_per_label(cfg, sources, labels, labels.count(), table.count(), "account", None)
    msg = str(e.value)
    assert "account=7: 2 rows" in msg and "Nothing was written" in msg and "Fix:" in msg
    assert snap.list_snapshots(ws, cfg.name) == []


def _events_project(
    tmp: Path, ties: str, seed: int
) -> tuple[ProjectConfig, pd.DataFrame, pd.DataFrame]:
    """Purchases where about a third of the events share their customer's time with another
    event (a till that stamps the minute), and monthly labels."""
    import yaml

    rng = np.random.default_rng(seed)
    n = 900
    times = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 90, n), "D")
    ev = pd.DataFrame(
        {
            "cust": rng.integers(0, 60, n),
            "t": times,
            "amount": np.round(rng.gamma(2.0, 20.0, n), 2),
            "store": rng.choice(["north", "south", "east"], n),
        }
    )
    same = rng.random(n) < 0.35  # stamp these at an earlier event's time of the same customer
    first = ev.groupby("cust")["t"].transform("min")
    ev.loc[same, "t"] = first[same]
    ev = ev.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    ev["t"] = ev["t"].dt.strftime("%Y-%m-%d %H:%M:%S")
    ev.to_csv(tmp / "events.csv", index=False)
    lab = pd.DataFrame(
        [
            {"cust": c, "month": f"2025-0{m}-01", "churned": int(rng.random() < 0.3)}
            for c in range(60)
            for m in (2, 3, 4)
        ]
    )
    lab.to_csv(tmp / "labels.csv", index=False)
    spec = {
        "name": "ties",
        "entities": {"customer": {"key": "cust"}},
        "sources": {
            "events": {
                "path": "events.csv",
                "entity": "customer",
                "event_time": "t",
                "columns": {"cust": "int", "t": "timestamp", "amount": "double", "store": "string"},
            },
            "labels": {
                "path": "labels.csv",
                "entity": "customer",
                "event_time": "month",
                "columns": {"cust": "int", "month": "timestamp", "churned": "int"},
            },
        },
        "label": {"source": "labels", "column": "churned", "event_time": "month"},
        "features": {
            "views": [
                {
                    "name": "purchases",
                    "source": "events",
                    "latest": {"amount": "last_amount", "store": "last_store"},
                    "ties": ties,
                }
            ]
        },
    }
    (tmp / "insight.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return ProjectConfig.load(tmp / "insight.yaml"), pd.read_csv(tmp / "events.csv"), lab


def _pandas_latest(ev: pd.DataFrame, at: pd.DataFrame, ties: str) -> pd.DataFrame:
    """The oracle: per (customer, time) one event by the rule, then pandas' as-of merge."""
    ev = ev.assign(t=pd.to_datetime(ev["t"]), pos=np.arange(len(ev)))
    if ties == "last_row":
        one = ev.sort_values("pos").groupby(["cust", "t"]).tail(1)
    else:  # the row whose values (amount, then store) sort last / first
        one = ev.sort_values(["amount", "store"], ascending=ties == "max")
        one = one.groupby(["cust", "t"]).tail(1)
    one = one.sort_values("t")
    at = at.assign(month=pd.to_datetime(at["month"])).sort_values("month")
    got = pd.merge_asof(at, one, left_on="month", right_on="t", by="cust")
    return got.set_index(["cust", "month"])[["amount", "store"]]


@pytest.mark.parametrize("ties", ["last_row", "max", "min"])
def test_ties_follow_the_declared_rule(spark: Any, tmp_path: Path, ties: str) -> None:
    """Regression: two events of one entity at one time gave the one whose values sort last
    (1,309 cells differed from pandas' last-row reading). Now ties is a declared rule, and the
    snapshot and the online table (what /predict's entity lookup reads) follow it alike."""
    from engine.data.sources import read_source
    from engine.features.online import online_features
    from engine.pii import load_key

    cfg, ev, lab = _events_project(tmp_path, ties, seed=3)
    dup = ev.groupby(["cust", "t"]).agg(n=("amount", "size"), d=("amount", "nunique"))
    assert (dup["d"] > 1).sum() >= 30, "many customers have same-time events that differ"
    ws = Workspace(tmp_path / ".insight").ensure()
    s, _ = stage_features(cfg, ws, spark)
    got = s.read_pandas().set_index(["cust", "month"]).sort_index()
    want = _pandas_latest(ev, lab, ties).reindex(got.index)
    np.testing.assert_allclose(got["last_amount"], want["amount"], equal_nan=True)
    assert (got["last_store"].fillna("-") == want["store"].fillna("-")).all()
    # The online table at a time after every event takes the same row per customer.
    key = load_key(ws.root)
    sources = {"events": read_source(spark, cfg, "events", ws.root, key)}
    import datetime as dt

    online = online_features(cfg, sources, dt.datetime(2026, 1, 1)).toPandas().set_index("cust")
    late = lab.drop_duplicates("cust").assign(month="2026-01-01")
    ref = _pandas_latest(ev, late, ties).reset_index("month")
    np.testing.assert_allclose(
        online["last_amount"].sort_index(), ref["amount"].reindex(online.index).sort_index()
    )


def test_ties_error_names_the_entity_and_commits_nothing(spark: Any, tmp_path: Path) -> None:
    cfg, _, _ = _events_project(tmp_path, "error", seed=4)
    ws = Workspace(tmp_path / ".insight").ensure()
    with pytest.raises(DataError) as e:
        stage_features(cfg, ws, spark)
    msg = str(e.value)
    assert "feature view 'purchases' (ties: error)" in msg and "cust=" in msg and "Fix:" in msg
    assert snap.list_snapshots(ws, cfg.name) == []
