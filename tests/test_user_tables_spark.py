"""Users' tables through the features stage on real Spark: a snapshot table with a "Yes"/"No"
label, labels and features in one source, blanks and text in a numeric CSV column, missing
labels, awkward names, PII; and the errors such tables cause, each a clear message with
nothing committed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from engine.config.project import ProjectConfig
from engine.data.init import plan
from engine.data.project_file import render
from engine.errors import ConfigError, DataError
from engine.features import snapshot as snap
from engine.stages.features import stage_features
from engine.workspace import Workspace
from tests.tables import telecom, write_csv

pytestmark = pytest.mark.spark


def _project(tmp: Path, df: pd.DataFrame, **kw: Any) -> tuple[ProjectConfig, Workspace]:
    table = write_csv(df, tmp / "telco.csv")
    (tmp / "insight.yaml").write_text(render(plan(table, "Churn", **kw)))
    cfg = ProjectConfig.load(tmp / "insight.yaml")
    return cfg, Workspace(tmp / ".insight").ensure()


def test_snapshot_table_with_string_label_blanks_and_pii(spark: Any, tmp_path: Path) -> None:
    df = telecom(800, 5)
    df.loc[[3, 4, 5], "Churn"] = ""  # labels not known yet
    df.loc[[7, 8], "TotalCharges"] = "n/a"  # text in a number column
    cfg, ws = _project(tmp_path, df)
    s, reused = stage_features(cfg, ws, spark)
    assert not reused
    got = s.read_pandas().set_index("customer_id")
    assert s.manifest["label_time"] is None and s.manifest["event_time_range"] is None
    assert s.manifest["rows"] == 797 and len(got) == 797, "rows without a label are dropped"
    labels = s.manifest["labels"]
    assert labels["rows_without_label_dropped"] == 3 and labels["positive"] == "yes"
    want = df.drop(index=[3, 4, 5]).set_index("customerID")
    assert (got["churn"] == (want["Churn"] == "Yes").astype(int).reindex(got.index)).all()
    blanks = int((df["TotalCharges"].str.strip() == "").sum())
    assert s.manifest["unparsed_cells"] == {
        "table": {"total_charges": {"blank": blanks, "not_double": 2}}
    }
    unparsed = want["TotalCharges"].str.strip().isin(["", "n/a"]).reindex(got.index)
    assert (got["total_charges"].isna() == unparsed).all(), "blank and text cells are null"
    assert got["contract"].dtype == object, "categorical columns stay text in the snapshot"
    assert set(got["internet_service"].unique()) == {"DSL", "Fiber optic", "No"}
    assert "e_mail" not in got.columns, "PII is not a feature"
    report = json.loads(Path(s.manifest["expectations"]["report"]).read_text())
    assert report["unparsed_cells"]["table"]["total_charges"]["not_double"] == 2


def test_labels_and_features_in_one_source_with_time(spark: Any, tmp_path: Path) -> None:
    """Regression: one source for labels and features died in Spark with
    AMBIGUOUS_REFERENCE on the time column."""
    rng = np.random.default_rng(0)
    rows = []
    for c in range(60):
        for m in range(4):
            rows.append(
                {
                    "customer_id": f"c{c}",
                    "month": pd.Timestamp("2025-01-01") + pd.Timedelta(days=30 * m),
                    "plan": rng.choice(["a", "b"]),
                    "usage": float(rng.normal(10, 2)),
                    "Churn": rng.choice(["Yes", "No"]),
                }
            )
    df = pd.DataFrame(rows)
    cfg, ws = _project(tmp_path, df, key="customer_id", time="month")
    assert cfg.label.event_time == "month" and cfg.sources["table"].event_time == "month"
    s, _ = stage_features(cfg, ws, spark)
    got = s.read_pandas().sort_values(["customer_id", "month"]).reset_index(drop=True)
    want = df.sort_values(["customer_id", "month"]).reset_index(drop=True)
    assert len(got) == len(df) and s.manifest["label_time"] == "month"
    # Features as of each label time: the row's own values (same time), never a later one.
    np.testing.assert_allclose(got["usage"], want["usage"])
    assert (got["plan"] == want["plan"]).all()
    assert all(v["min_lag_days"] >= 0 for v in s.manifest["leakage"].values())


def test_static_labels_with_an_event_view_need_an_as_of(tmp_path: Path) -> None:
    from tests.conftest import EXAMPLE

    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["label"].pop("event_time")
    raw["sources"]["labels"].pop("event_time")
    p = tmp_path / "insight.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"label\.as_of"):
        ProjectConfig.load(p)


def test_spark_errors_are_one_clear_message_and_commit_nothing(spark: Any, tmp_path: Path) -> None:
    """Regression: the error handler read Spark's message after the session stopped and
    crashed with '<exception str() failed>'."""
    cfg, ws = _project(tmp_path, telecom(200, 1))
    view = cfg.features.views[0].model_copy(update={"derived": {"bad": "nope_column * 2"}})
    bad = cfg.model_copy(update={"features": cfg.features.model_copy(update={"views": [view]})})
    with pytest.raises(DataError) as e:
        stage_features(bad, ws, spark)
    msg = str(e.value)
    assert "Spark could not build" in msg and "nope_column" in msg and "Fix:" in msg
    assert snap.list_snapshots(ws, cfg.name) == []
