"""Feature store guarantees on real Spark: no leakage, expectations gate commits, the online
table equals the training-set builder at the same time, and a killed build leaves nothing."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.config.project import ProjectConfig
from engine.errors import DataError
from engine.features import snapshot as snap
from engine.stages.features import stage_features
from engine.workspace import Workspace

pytestmark = pytest.mark.spark


def _copy_ws(src: Workspace, dst: Path) -> Workspace:
    ws = Workspace(dst).ensure()
    shutil.copytree(src.data, ws.data, dirs_exist_ok=True)
    if (src.root / "secrets").is_dir():
        shutil.copytree(src.root / "secrets", ws.root / "secrets", dirs_exist_ok=True)
    return ws


def test_planted_future_row_is_never_used(
    example_cfg: ProjectConfig, tiny_ws: Workspace, tiny_snapshot: Any, spark: Any, tmp_path: Path
) -> None:
    ws = _copy_ws(tiny_ws, tmp_path / ".insight")
    labels = pd.read_parquet(ws.data / "retail" / "labels.parquet")
    target = labels.iloc[len(labels) // 2]
    cid, lt = int(target["customer_id"]), target["label_time"]
    tx_path = ws.data / "retail" / "transactions.parquet"
    tx = pd.read_parquet(tx_path)
    planted = pd.DataFrame(
        {
            "customer_id": [cid],
            "txn_time": [lt + pd.Timedelta(seconds=1)],
            "amount": [1e6],
            "channel": ["app"],
        }
    )
    pd.concat([tx, planted], ignore_index=True).to_parquet(
        tx_path, index=False, coerce_timestamps="us", allow_truncated_timestamps=True
    )

    s, reused = stage_features(example_cfg, ws, spark)
    assert not reused and s.id != tiny_snapshot.id, "new source bytes -> new snapshot"
    new, old = s.read_pandas(), tiny_snapshot.read_pandas()
    at = ["customer_id", "label_time"]
    row_new = new.set_index(at).loc[(cid, lt)]
    row_old = old.set_index(at).loc[(cid, lt)]
    pd.testing.assert_series_equal(row_new, row_old, check_names=False)
    assert row_new["amount_sum_7d"] < 1e6
    # The planted row is real data: a later label of the same customer within 7 days sees it.
    later = new[
        (new.customer_id == cid)
        & (new.label_time > lt)
        & (new.label_time <= lt + pd.Timedelta(days=7))
    ]
    if len(later):
        assert (later["amount_sum_7d"] >= 1e6).all()
    for feat, lag in s.manifest["leakage"].items():
        assert lag["min_lag_days"] is None or lag["min_lag_days"] >= 0, feat
    assert s.manifest["leakage"]["amount_sum_7d"]["max_lag_days"] < 7


def test_failed_expectation_blocks_commit_with_report(
    example_cfg: ProjectConfig, tiny_ws: Workspace, spark: Any, tmp_path: Path
) -> None:
    from engine.features.views import Expectation

    ws = _copy_ws(tiny_ws, tmp_path / ".insight")
    views = list(example_cfg.features.views)
    views[1] = views[1].model_copy(
        update={
            "expect": [
                Expectation(column="txn_count_30d", max=3),
                Expectation(column="amount_mean_30d", max_null_rate=0.01),
            ]
        }
    )
    cfg = example_cfg.model_copy(
        update={"features": example_cfg.features.model_copy(update={"views": views})}
    )
    with pytest.raises(DataError) as err:
        stage_features(cfg, ws, spark)
    msg = str(err.value)
    assert "view 'txn', column 'txn_count_30d': expected value <= 3.0" in msg
    assert "rows outside" in msg and "e.g. {'customer_id':" in msg
    assert "column 'amount_mean_30d': expected null rate <= 0.01" in msg
    assert snap.list_snapshots(ws, cfg.name) == []
    assert not [p for p in snap.snapshot_root(ws, cfg.name).iterdir()]
    assert list(ws.reports.glob("validation-*.json"))


def test_online_table_equals_training_builder_at_same_time(
    example_cfg: ProjectConfig, tiny_ws: Workspace, tiny_snapshot: Any, spark: Any
) -> None:
    from engine.data.sources import read_source
    from engine.features.build import build_training_table
    from engine.features.online import OnlineTable, materialize
    from engine.pii import load_key

    as_of = dt.datetime(2025, 11, 20, 6, 30)
    path = materialize(example_cfg, tiny_ws, spark, tiny_snapshot.id, as_of)
    online = OnlineTable.load(path)
    key = load_key(tiny_ws.root)
    sources = {
        n: read_source(spark, example_cfg, n, tiny_ws.root, key)
        for n in ("customers", "transactions")
    }
    rng = np.random.default_rng(0)
    ids = sorted(rng.choice(online.frame.index.to_numpy(), 50, replace=False).tolist())
    sources["labels"] = spark.createDataFrame(
        pd.DataFrame(
            {
                "customer_id": ids,
                "label_time": [pd.Timestamp(as_of)] * len(ids),
                "churned": [0] * len(ids),
            }
        )
    )
    train_rows = build_training_table(example_cfg, sources).toPandas()
    train_rows = train_rows.set_index("customer_id").loc[ids]
    text = ("region", "plan", "gender")
    num = [f for f in example_cfg.feature_names() if f not in text]
    x, missing = online.lookup(ids, num)
    assert missing == []
    np.testing.assert_array_equal(
        x.to_numpy(dtype=np.float64, na_value=np.nan),
        train_rows[num].to_numpy(dtype=np.float64, na_value=np.nan),
    )
    for col in text:
        assert (online.frame.loc[ids, col] == train_rows[col]).all()
    _, missing = online.lookup([10**9], num)
    assert missing == [10**9]


def test_killed_build_leaves_no_visible_snapshot(
    example_cfg: ProjectConfig, tiny_ws: Workspace, tmp_path: Path
) -> None:
    ws = _copy_ws(tiny_ws, tmp_path / ".insight")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "features", "build", "--workspace", str(ws.root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    root = snap.snapshot_root(ws, example_cfg.name)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if root.exists() and any(p.name.startswith(".tmp-") for p in root.iterdir()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the build finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its Spark JVM, by our own group
        proc.wait(timeout=30)
    assert snap.list_snapshots(ws, example_cfg.name) == []
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == []
