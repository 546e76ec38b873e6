"""Wrong answers that real tables caused, on real Spark (issue 20): identical rows with no id
multiplied by the label-feature join, keys that repeat, events of one entity at one time.
Each test builds a generated table shaped like the case and fails on the old code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.config import ProjectConfig
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
