"""The features stage on Spark: values equal a pandas brute force; snapshots are immutable."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.config.project import ProjectConfig
from engine.features import snapshot as snap
from engine.pii import hmac_hex, load_key, spark_hmac
from engine.stages.features import stage_features
from engine.workspace import Workspace

pytestmark = pytest.mark.spark


def _brute_force(ws: Workspace) -> pd.DataFrame:
    d = ws.data / "retail"
    tx = pd.read_parquet(d / "transactions.parquet")
    lab = pd.read_parquet(d / "labels.parquet")
    m = lab[["customer_id", "label_time"]].merge(tx, on="customer_id", how="left")
    past = m["txn_time"] <= m["label_time"]
    rows = []
    for (cid, lt), g in m[past].groupby(["customer_id", "label_time"]):
        age = (lt - g["txn_time"]).dt.total_seconds() / 86400
        w30 = g[age < 30]
        rows.append(
            {
                "customer_id": cid,
                "label_time": lt,
                "txn_count_7d": float((age < 7).sum()),
                "txn_count_90d": float((age < 90).sum()),
                "amount_sum_30d": float(w30["amount"].sum()),
                "amount_mean_30d": float(w30["amount"].mean()) if len(w30) else np.nan,
                "app_share_30d": float((w30["channel"] == "app").mean()) if len(w30) else np.nan,
                "last_amount": float(g.sort_values(["txn_time", "amount"])["amount"].iloc[-1]),
                "days_since_last_txn": float(age.min()),
            }
        )
    return pd.DataFrame(rows)


def test_snapshot_values_equal_pandas(
    example_cfg: ProjectConfig, tiny_ws: Workspace, tiny_snapshot: Any
) -> None:
    ours = tiny_snapshot.read_pandas()
    labels = pd.read_parquet(tiny_ws.data / "retail" / "labels.parquet")
    assert len(ours) == len(labels) == tiny_snapshot.manifest["rows"]
    ref = _brute_force(tiny_ws)
    j = ours.merge(ref, on=["customer_id", "label_time"], suffixes=("", "_ref"))
    assert len(j) == len(ref) > 100
    for col in [
        "txn_count_7d",
        "txn_count_90d",
        "amount_sum_30d",
        "amount_mean_30d",
        "app_share_30d",
        "last_amount",
        "days_since_last_txn",
    ]:
        np.testing.assert_allclose(j[col], j[f"{col}_ref"], rtol=1e-9, atol=1e-6, err_msg=col)
    cust = pd.read_parquet(tiny_ws.data / "retail" / "customers.parquet").set_index("customer_id")
    tenure = (
        ours["label_time"].dt.normalize()
        - cust.loc[ours["customer_id"], "signup_time"].dt.normalize().to_numpy()
    ).dt.days
    np.testing.assert_array_equal(ours["tenure_days"].to_numpy(), tenure.to_numpy())


def test_snapshot_is_content_addressed_and_immutable(
    example_cfg: ProjectConfig, tiny_ws: Workspace, tiny_snapshot: Any, spark: Any
) -> None:
    files = {p: p.stat().st_mtime_ns for p in tiny_snapshot.path.rglob("*")}
    again, reused = stage_features(example_cfg, tiny_ws, spark)
    assert reused and again.id == tiny_snapshot.id
    assert {p: p.stat().st_mtime_ns for p in again.path.rglob("*")} == files
    # The data files have a folder of their own: any Parquet reader takes it as one table
    # (pandas.read_parquet failed on a folder that mixed manifest.json with the parts).
    assert sorted(p.name for p in tiny_snapshot.path.iterdir()) == ["data", "manifest.json"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(tiny_snapshot.data).reset_index(drop=True),
        tiny_snapshot.read_pandas().reset_index(drop=True),
    )
    m = tiny_snapshot.manifest
    for key in ("snapshot_id", "schema", "rows", "event_time_range", "sources", "content_hash"):
        assert key in m
    assert not any(p.name.startswith(".tmp") for p in tiny_snapshot.path.parent.iterdir())


def test_failed_build_leaves_nothing(
    example_cfg: ProjectConfig, tiny_ws: Workspace, spark: Any, tmp_path: Path
) -> None:
    bad = example_cfg.model_copy(deep=True)
    view = bad.features.views[1].model_copy(update={"derived": {"oops": "no_such_column + 1"}})
    bad = bad.model_copy(
        update={
            "features": bad.features.model_copy(update={"views": [bad.features.views[0], view]})
        }
    )
    before = set(snap.snapshot_root(tiny_ws, bad.name).iterdir())
    with pytest.raises(Exception, match="no_such_column"):
        stage_features(bad, tiny_ws, spark)
    assert set(snap.snapshot_root(tiny_ws, bad.name).iterdir()) == before


def test_pii_hash_equals_python_hmac(spark: Any, tiny_ws: Workspace) -> None:
    key = load_key(tiny_ws.root)
    vals = ["customer1@example.com", "ünïcödé@x.org", ""]
    df = spark.createDataFrame(pd.DataFrame({"v": vals}))
    got = [r[0] for r in df.select(spark_hmac(df["v"], key)).collect()]
    assert got == [hmac_hex(key, v) for v in vals]
    assert got[0] == hmac.new(key, vals[0].encode(), hashlib.sha256).hexdigest()
    long_key = b"k" * 100  # keys longer than the block are hashed first (RFC 2104)
    got_long = df.select(spark_hmac(df["v"], long_key)).first()[0]
    assert got_long == hmac_hex(long_key, vals[0])


def test_pii_hashed_on_read_and_absent_from_snapshot(
    example_cfg: ProjectConfig, tiny_ws: Workspace, tiny_snapshot: Any, spark: Any
) -> None:
    from engine.data.sources import read_source

    key = load_key(tiny_ws.root)
    got = read_source(spark, example_cfg, "customers", tiny_ws.root, key).toPandas()
    raw = pd.read_parquet(tiny_ws.data / "retail" / "customers.parquet")
    assert got["email"].tolist() == [hmac_hex(key, e) for e in raw["email"]]
    df = tiny_snapshot.read_pandas()
    assert "email" not in df.columns
    for col in df.select_dtypes(include="object"):
        assert not df[col].astype(str).str.contains("@example.com").any()
