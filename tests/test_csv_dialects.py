"""CSV files as spreadsheets outside the English-speaking world save them: cells split by
';' (or tab, or '|'), decimals written with a comma (12,50), text in Windows-1252, a UTF-8
byte-order mark. `insight init` finds how the file is written and says so in the project
file; the plan it makes equals its plan for the same table saved the usual way; /predict
reads a row of such a file as pandas reads the file told how. (The Spark build is tested on
the same kinds of files in tests/test_user_parquet_spark.py.)"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from engine.config.project import ProjectConfig
from engine.data.csvfile import sniff
from engine.data.init import plan
from engine.data.project_file import render
from engine.errors import ConfigError
from engine.train.schema import FeatureSpec, InputSchema
from serve.inputs import row_fields, rows_frame
from tests.tables import telecom, write_csv

DIALECTS = [
    (";", ",", "cp1252"),
    (";", ".", "utf-8"),
    ("\t", ",", "utf-8-sig"),
    ("|", ".", "utf-8"),
]


def _write(df: pd.DataFrame, path: Path, sep: str, decimal: str, encoding: str) -> Path:
    out = df.copy()
    if decimal == ",":  # a number column that pandas holds as text is written the same way
        out["TotalCharges"] = out["TotalCharges"].str.replace(".", ",", regex=False)
    out["Contract"] = out["Contract"].str.replace("Two year", "Zweijährig", regex=False)
    out.to_csv(path, sep=sep, decimal=decimal, index=False, encoding=encoding)
    return path


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("sep", "decimal", "encoding"), DIALECTS)
def test_init_plans_a_european_csv_as_it_plans_the_usual_one(
    tmp_path: Path, seed: int, sep: str, decimal: str, encoding: str
) -> None:
    df = telecom(300, seed)
    usual = plan(_write(df, tmp_path / "usual.csv", ",", ".", "utf-8"), "Churn")
    odd = plan(_write(df, tmp_path / "odd.csv", sep, decimal, encoding), "Churn")
    assert (odd.dialect.delimiter, odd.dialect.decimal) == (sep, decimal)
    assert odd.dialect.encoding == ("windows-1252" if encoding == "cp1252" else "utf-8")
    assert usual.dialect == type(usual.dialect)(",", ".", "utf-8")
    same = ("key", "label", "positive", "features", "derived", "left_out", "pii", "sensitive")
    for attr in same:
        assert getattr(odd, attr) == getattr(usual, attr), attr
    assert [(c.name, c.kind, c.distinct, c.non_null, c.note) for c in odd.columns] == [
        (c.name, c.kind, c.distinct, c.non_null, c.note) for c in usual.columns
    ]
    text = render(odd)
    (tmp_path / "insight.yaml").write_text(text)
    src = ProjectConfig.load(tmp_path / "insight.yaml").sources["table"]
    assert (src.delimiter, src.decimal, src.encoding) == (
        sep,
        decimal,
        odd.dialect.encoding,
    )
    assert ("delimiter:" in text) == (sep != ",") and ("decimal:" in text) == (decimal != ".")


def test_a_comma_file_with_semicolons_in_its_text_stays_a_comma_file(tmp_path: Path) -> None:
    df = telecom(200, 3)
    df["PaymentMethod"] = df["PaymentMethod"] + "; monthly, by post"  # quoted by pandas
    p = plan(write_csv(df, tmp_path / "t.csv"), "Churn")
    assert (p.dialect.delimiter, p.dialect.decimal) == (",", ".")
    assert "delimiter:" not in render(p)


def test_sniffing_reads_only_the_head_and_survives_a_cut_character(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    head = "a;b;c\n" + "".join(f"{i};ä;{i},5\n" for i in range(2000))
    path.write_bytes(head.encode("utf-8"))
    for size in (1 << 12, 1 << 12 + 1, 10_001):  # some cut an 'ä' in two
        d = sniff(path, size)
        assert (d.delimiter, d.encoding) == (";", "utf-8"), size
    path.write_bytes(head.encode("cp1252"))
    assert sniff(path).encoding == "windows-1252"


def test_a_dialect_that_cannot_be_is_a_clear_error(tmp_path: Path) -> None:
    df = telecom(50, 1)
    p = plan(_write(df, tmp_path / "t.csv", ";", ",", "utf-8"), "Churn")
    base = yaml.safe_load(render(p))

    def load(**change: object) -> None:
        cfg = yaml.safe_load(yaml.safe_dump(base))
        cfg["sources"]["table"].update(change)
        (tmp_path / "insight.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
        ProjectConfig.load(tmp_path / "insight.yaml")

    load()  # as written
    with pytest.raises(ConfigError, match="when ',' is also the decimal mark"):
        load(delimiter=",")
    with pytest.raises(ConfigError, match="unknown text encoding 'latin-9x'"):
        load(encoding="latin-9x")
    with pytest.raises(ConfigError, match="decimal describe a CSV file; this source is parquet"):
        load(format="parquet", delimiter=",", time_formats={})
    with pytest.raises(ConfigError, match="delimiter"):
        load(delimiter=";;")


@pytest.mark.parametrize("seed", range(3))
def test_predict_reads_a_row_of_a_decimal_comma_file_as_pandas_does(
    tmp_path: Path, seed: int
) -> None:
    df = telecom(300, seed)
    path = _write(df, tmp_path / "kunden.csv", ";", ",", "cp1252")
    (tmp_path / "insight.yaml").write_text(render(plan(path, "Churn")))
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    types = cfg.sources["table"].columns
    schema = InputSchema(
        tuple(
            FeatureSpec(f, "categorical" if types[f] == "string" else "numeric")
            for f in cfg.feature_names()
        )
    )
    fields = row_fields(cfg)
    assert {"monthly_charges", "total_charges"} <= fields.decimal_comma
    with path.open(encoding="cp1252") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))  # every cell as text
    pick = np.random.default_rng(seed).choice(len(rows), 40, replace=False)
    x, ids = rows_frame([rows[i] for i in pick], schema, fields)
    # blank cells (" ") as missing, so that pandas reads the column as numbers at all
    ref = pd.read_csv(path, sep=";", decimal=",", encoding="cp1252", na_values=[" "])
    ref = ref.iloc[pick]
    ref = ref.rename(columns=cfg.sources["table"].rename)
    for f in schema.features:
        if f.kind == "numeric":
            want = pd.to_numeric(ref[f.name], errors="coerce").to_numpy(float)
            np.testing.assert_array_equal(x[f.name].to_numpy(), want, err_msg=f.name)
        else:
            assert x[f.name].tolist() == ref[f.name].tolist(), f.name
    assert ids == ref["customer_id"].tolist()
    assert "Zweijährig" in set(x["contract"])


def test_predict_does_not_misread_a_thousands_separator(tmp_path: Path) -> None:
    from fastapi import HTTPException

    path = _write(telecom(100, 0), tmp_path / "k.csv", ";", ",", "utf-8")
    (tmp_path / "insight.yaml").write_text(render(plan(path, "Churn")))
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    schema = InputSchema((FeatureSpec("monthly_charges", "numeric"),))
    fields = row_fields(cfg)
    x, _ = rows_frame([{"MonthlyCharges": " 12,5 "}, {"MonthlyCharges": 7.25}], schema, fields)
    assert x["monthly_charges"].tolist() == [12.5, 7.25]
    with pytest.raises(HTTPException) as e:
        rows_frame([{"MonthlyCharges": "1.234,50"}], schema, fields)
    assert e.value.status_code == 422 and '"29,85"' in str(e.value.detail)


@pytest.mark.parametrize("seed", range(3))
def test_a_users_table_in_batch_is_read_as_predict_reads_its_rows(
    tmp_path: Path, seed: int
) -> None:
    """`insight score --input` of the user's own table (serve.inputs.table_frame, on the
    table as Ray reads it: every cell as text) gives the model the inputs /predict gives for
    the same rows; where /predict refuses a row (text in a number column, a date that does
    not exist) the batch scores the cell as missing and counts it, as the build does."""
    from fastapi import HTTPException

    from engine.data.sources import csv_options
    from serve.inputs import table_frame

    rng = np.random.default_rng(seed)
    df = telecom(300, seed)
    days = pd.to_timedelta(rng.integers(0, 900, len(df)), "D")
    df["Signup Date"] = (pd.Timestamp("2023-01-01") + days).strftime("%Y-%m-%d")
    path = _write(df, tmp_path / "kunden.csv", ";", ",", "cp1252")
    (tmp_path / "insight.yaml").write_text(render(plan(path, "Churn")))
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    assert "signup_date_days_since_1970" in cfg.feature_names()
    types = cfg.sources["table"].columns
    schema = InputSchema(  # the model's inputs: the day count, not the date it comes from
        tuple(
            FeatureSpec(f, "numeric" if types.get(f, "double") != "string" else "categorical")
            for f in cfg.feature_names()
            if types.get(f) != "timestamp"
        )
    )
    fields = row_fields(cfg)
    import pyarrow as pa
    import pyarrow.csv as pacsv

    opts = csv_options(cfg.sources["table"])
    names = pacsv.read_csv(path, **opts).column_names
    text = pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
        **opts,
    ).to_pandas()
    batch, ids, bad = table_frame(text.assign(Notes="left aside"), schema, fields)
    with path.open(encoding="cp1252") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    want, want_ids = rows_frame(rows, schema, fields)
    pd.testing.assert_frame_equal(batch, want)
    assert ids == want_ids == df["customerID"].tolist() and not bad.any()

    broken = text.copy()
    broken.loc[3, "TotalCharges"] = "n/a"
    broken.loc[5, "Signup Date"] = "2025-02-31"
    batch, _, bad = table_frame(broken, schema, fields)
    assert bad.tolist() == [0, 0, 0, 1, 0, 1] + [0] * (len(df) - 6)
    assert np.isnan(batch.loc[3, "total_charges"]) and np.isnan(
        batch.loc[5, "signup_date_days_since_1970"]
    )
    keep = [i for i in range(len(df)) if i not in (3, 5)]
    pd.testing.assert_frame_equal(batch.iloc[keep], want.iloc[keep])
    for i in (3, 5):  # a request is refused instead: its sender can fix it
        with pytest.raises(HTTPException):
            rows_frame([broken.iloc[i].to_dict()], schema, fields)
