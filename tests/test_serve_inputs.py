"""/predict's input contract on rows as users' tables hold them (unit tier, no server): a
row read straight from the user's CSV (its own column names, every cell as text, blanks,
the key and the label alongside) becomes the same model input as the training table's
reading of that row; typos and bad values are 422s naming the field."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi import HTTPException

from engine.config.project import ProjectConfig
from engine.data.init import plan
from engine.data.project_file import render
from engine.train.schema import FeatureSpec, InputSchema
from serve.inputs import RowFields, row_fields, rows_frame
from tests.tables import telecom, write_csv


@pytest.fixture()
def project(tmp_path: Path) -> tuple[ProjectConfig, Path, pd.DataFrame]:
    df = telecom(300, 4)
    path = write_csv(df, tmp_path / "telco.csv")
    (tmp_path / "insight.yaml").write_text(render(plan(path, "Churn")))
    return ProjectConfig.load(tmp_path / "insight.yaml"), path, df


def _schema(cfg: ProjectConfig) -> InputSchema:
    types = cfg.sources["table"].columns
    return InputSchema(
        tuple(
            FeatureSpec(f, "categorical" if types[f] == "string" else "numeric")
            for f in cfg.feature_names()
        )
    )


@pytest.mark.parametrize("seed", range(5))
def test_a_row_straight_from_the_users_csv_is_read_as_pandas_reads_the_table(
    project: tuple[ProjectConfig, Path, pd.DataFrame], seed: int
) -> None:
    cfg, path, _ = project
    schema = _schema(cfg)
    fields = row_fields(cfg)
    assert fields.key == "customer_id"
    with path.open() as fh:
        rows = list(csv.DictReader(fh))  # every cell as text, as a client reading the CSV
    pick = np.random.default_rng(seed).choice(len(rows), 40, replace=False)
    sent = [rows[i] for i in pick]
    x, ids = rows_frame(sent, schema, fields)
    # The reference: pandas reads the same file, numbers with blanks as NaN.
    ref = pd.read_csv(path, dtype=str, keep_default_na=False).iloc[pick]
    ren = cfg.sources["table"].rename
    ref = ref.rename(columns=ren)
    for f in schema.features:
        if f.kind == "numeric":
            want = pd.to_numeric(ref[f.name].str.strip().replace("", np.nan)).to_numpy(float)
            np.testing.assert_array_equal(x[f.name].to_numpy(), want)
        else:
            assert x[f.name].tolist() == ref[f.name].tolist()
    assert ids == ref["customer_id"].tolist(), "the key is each row's id"
    assert x["total_charges"].isna().sum() == (ref["total_charges"].str.strip() == "").sum()


def test_typos_bad_values_and_duplicates_are_422s_naming_the_field(
    project: tuple[ProjectConfig, Path, pd.DataFrame],
) -> None:
    cfg, _, _ = project
    schema = _schema(cfg)
    fields = row_fields(cfg)
    assert fields.key == "customer_id"
    row = {f.name: ("1" if f.kind == "numeric" else "x") for f in schema.features}

    def status(r: dict[str, object]) -> str:
        with pytest.raises(HTTPException) as e:
            rows_frame([r], schema, fields)
        assert e.value.status_code == 422
        return str(e.value.detail)

    msg = status({**row, "tenur": 3})
    assert "unknown field(s) ['tenur']" in msg and "Did you mean 'tenure'" in msg
    assert "rows[0].tenure: 'three' is text" in status({**row, "tenure": "three"})
    assert "not a finite number" in status({**row, "tenure": "inf"})
    assert "rows[0].contract: 3 is not text" in status({**row, "contract": 3})
    assert "sent twice" in status({**row, "Internet Service": "DSL"})
    assert "missing field(s) ['tenure']" in status({k: v for k, v in row.items() if k != "tenure"})
    # Fields the project knows and the model does not take are ignored, not read.
    x, ids = rows_frame([{**row, "Churn": "Yes", "E-mail": "a@b.c"}], schema, fields)
    assert list(x.columns) == schema.names and ids is None, "no key in the row: no id"
    x, _ = rows_frame([{**row, "tenure": True, "monthly_charges": " "}], schema, fields)
    assert x["tenure"].iloc[0] == 1.0 and np.isnan(x["monthly_charges"].iloc[0])
    # Without aliases (a project whose names are the file's), the contract is unchanged.
    with pytest.raises(HTTPException, match="unknown field"):
        rows_frame([{**row, "Contract": "x"}], schema, RowFields())


def test_date_features_are_computed_from_the_rows_own_dates() -> None:
    """A model input that a view derives with ``datediff`` (what `insight init` writes for
    a date column) is computed from the row's dates; the label time defaults to the day
    of scoring; a value sent is used as sent; an unreadable date is a 422."""
    import datetime as dt

    schema = InputSchema(
        (FeatureSpec("plan", "categorical"), FeatureSpec("signup_days", "numeric"))
    )
    fields = RowFields(
        aliases={"Signup Date": "signup_date"},
        known=frozenset({"signup_date", "snapshot_date", "Signup Date"}),
        derived={"signup_days": "datediff(snapshot_date, signup_date)", "other": "a + b"},
        time="snapshot_date",
    )
    rows = [
        {"plan": "pro", "Signup Date": "2026-01-01", "snapshot_date": "2026-03-01T08:00:00"},
        {"plan": "pro", "signup_date": "2026-01-01"},
        {"plan": "pro", "signup_days": 7},
    ]
    x, _ = rows_frame(rows, schema, fields)
    today = dt.datetime.now(dt.UTC).date()
    assert x["signup_days"].tolist() == [59.0, float((today - dt.date(2026, 1, 1)).days), 7.0]
    with pytest.raises(HTTPException, match=r"computed from .*signup_date.*cannot be read"):
        rows_frame([{"plan": "pro", "signup_date": "soon"}], schema, fields)
    with pytest.raises(HTTPException, match="'signup_days' is computed from"):
        rows_frame([{"plan": "pro", "snapshot_date": "2026-01-01"}], schema, fields)


def test_dates_in_the_tables_own_format_are_read_as_the_build_reads_them() -> None:
    schema = InputSchema((FeatureSpec("signup_days", "numeric"),))
    fields = RowFields(
        known=frozenset({"signup_date", "snapshot_date"}),
        derived={"signup_days": "datediff(snapshot_date, signup_date)"},
        time="snapshot_date",
        time_formats={"snapshot_date": "%d/%m/%Y", "signup_date": "%d.%m.%Y"},
    )
    rows = [
        {"snapshot_date": "01/06/2026", "signup_date": "23.04.2025"},
        {"snapshot_date": "2026-06-01", "signup_date": "2025-04-23"},  # ISO reads too
    ]
    x, _ = rows_frame(rows, schema, fields)
    assert x["signup_days"].tolist() == [404.0, 404.0]
    with pytest.raises(HTTPException, match="cannot be read"):
        rows_frame([{"snapshot_date": "06/01/2026x", "signup_date": "x"}], schema, fields)
