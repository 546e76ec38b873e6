"""A Parquet table as pandas writes it by default (nanosecond timestamps, naive and with a
time zone, ``category`` columns, nullable integers, a boolean label, odd column names),
through `insight init` and Spark: every value Spark reads equals pandas' reading of the same
file (times to the microsecond), and the snapshot builds with a time split."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.config.project import ProjectConfig
from engine.data.init import plan
from engine.data.project_file import render
from engine.data.sources import read_source
from engine.pii import load_key
from engine.stages.features import stage_features
from engine.workspace import Workspace

pytestmark = pytest.mark.spark


def _accounts(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    months = pd.to_datetime(["2026-06-01", "2026-07-01", "2026-08-01"])
    parts = []
    for m in months:
        d = pd.DataFrame(
            {
                "Account Id": pd.array(np.arange(n) + 100, dtype="Int64"),
                "snapshot date": m,
                "plan": pd.Categorical(rng.choice(["lite", "pro", "team"], n)),
                # sub-microsecond digits: Spark keeps microseconds
                "last login": m - pd.to_timedelta(rng.integers(1, 10**14, n), "ns"),
                "renewal (UTC)": (m + pd.to_timedelta(rng.integers(0, 90, n), "D")).tz_localize(
                    "UTC"
                ),
                "spend": np.where(rng.random(n) < 0.1, np.nan, rng.gamma(2, 30, n)),
                "churned?": rng.random(n) < 0.3,
            }
        )
        parts.append(d)
    return pd.concat(parts, ignore_index=True)


def test_spark_reads_pandas_parquet_as_pandas_does(spark: Any, tmp_path: Path) -> None:
    df = _accounts(200, 1)
    path = tmp_path / "accounts.parquet"
    df.to_parquet(path, index=False)
    (tmp_path / "insight.yaml").write_text(
        render(plan(path, "churned?", key="Account Id", time="snapshot date"))
    )
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    ws = Workspace(tmp_path / ".insight").ensure()
    got = (
        read_source(spark, cfg, "table", ws.root, load_key(ws.root))
        .toPandas()
        .sort_values(["snapshot_date", "account_id"])
        .reset_index(drop=True)
    )
    want = df.sort_values(["snapshot date", "Account Id"]).reset_index(drop=True)
    assert got["account_id"].tolist() == want["Account Id"].astype(int).tolist()
    assert got["plan"].tolist() == want["plan"].astype(str).tolist()
    for ours, theirs in (
        ("snapshot_date", "snapshot date"),
        ("last_login", "last login"),
        ("renewal_utc", "renewal (UTC)"),
    ):
        ref = want[theirs]
        ref = ref.dt.tz_convert("UTC").dt.tz_localize(None) if ref.dt.tz else ref
        ref = ref.dt.floor("us")
        assert (pd.to_datetime(got[ours]).to_numpy() == ref.to_numpy()).all(), ours
    np.testing.assert_array_equal(got["spend"].to_numpy(), want["spend"].to_numpy())

    snap, _ = stage_features(cfg, ws, spark)
    m = snap.manifest
    assert m["rows"] == len(df) and m["labels"]["positive"] == "true"
    assert m["event_time_range"][0].startswith("2026-06-01")


@pytest.mark.parametrize("seed", range(3))
def test_predicts_datediff_equals_sparks(spark: Any, seed: int) -> None:
    """/predict computes ``datediff`` derived features from a row's own dates; on random
    times (naive, UTC 'Z', other offsets, dates alone) it equals Spark's datediff of the same
    text read as the build reads a CSV cell (``try_cast(trim(x) AS timestamp_ntz)``)."""
    import datetime as dt

    from serve.inputs import Derivation

    rng = np.random.default_rng(seed)
    n = 300
    base = np.datetime64("2020-01-01T00:00:00")
    secs = rng.integers(0, 3 * 365 * 86400, (n, 2))
    rows, spark_rows = [], []
    for a, b in secs:
        ta, tb = ((base + np.timedelta64(int(x), "s")).astype(dt.datetime) for x in (a, b))
        style = rng.integers(0, 4)
        if style == 0:
            sa, sb = ta.isoformat(), tb.isoformat()
        elif style == 1:
            sa, sb = ta.isoformat() + "Z", tb.date().isoformat()
        else:
            off = dt.timezone(dt.timedelta(hours=int(rng.integers(-11, 13))))
            sa = ta.replace(tzinfo=dt.UTC).astimezone(off).isoformat()
            sb = tb.isoformat()
        rows.append({"end": sa, "start": sb})
        spark_rows.append((sa, sb))
    d = Derivation.parse("datediff(end, start)")
    assert d is not None
    ours = [d.value(r, dt.date(2026, 1, 1), None) for r in rows]
    sdf = spark.createDataFrame(spark_rows, "end string, start string")
    theirs = [
        float(r[0])
        for r in sdf.selectExpr(
            "datediff(try_cast(trim(end) AS timestamp_ntz), try_cast(trim(start) AS timestamp_ntz))"
        ).collect()
    ]
    assert ours == theirs
    lit = Derivation.parse("datediff(start, DATE'1970-01-01')")
    assert lit is not None
    want = [
        float(r[0])
        for r in sdf.selectExpr(
            "datediff(try_cast(trim(start) AS timestamp_ntz), DATE'1970-01-01')"
        ).collect()
    ]
    assert [lit.value(r, dt.date(2026, 1, 1), None) for r in rows] == want


def _kunden(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Kündigungsgrund.code": rng.choice(["A", "B", "C"], n),
            "Plan": rng.choice(["S", "M", "L"], n),  # and "plan": one letter case apart
            "plan": rng.integers(1, 4, n),
            "constant": "x",
            "Status": rng.choice(["churned", "active"], n),
        }
    )


def test_a_csv_whose_headers_differ_only_in_case_builds(
    spark: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Spark's CSV reader renames headers that differ only in case ("Plan", "plan"); the
    engine names columns by their position in the header, so both arrive as init named them.
    A Spark analysis error is one DataError, not PySpark's logged JVM stack."""
    from engine.errors import DataError

    df = _kunden(400, 2)
    path = tmp_path / "kunden.csv"
    df.to_csv(path, index=False)
    (tmp_path / "insight.yaml").write_text(render(plan(path, "Status", positive="churned")))
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    assert {"kundigungsgrund_code", "plan", "plan_1"} <= set(cfg.feature_names())
    assert "constant" not in cfg.feature_names(), "one value in every row: left out"
    ws = Workspace(tmp_path / ".insight").ensure()
    snap, _ = stage_features(cfg, ws, spark)
    got = snap.read_pandas()
    assert sorted(got["plan_1"].unique()) == ["L", "M", "S"]
    assert sorted(got["plan"].unique()) == [1, 2, 3]

    views = [cfg.features.views[0].model_copy(update={"derived": {"bad": "no_such_column + 1"}})]
    bad = cfg.model_copy(update={"features": cfg.features.model_copy(update={"views": views})})
    capfd.readouterr()
    with pytest.raises(DataError, match="no_such_column"):
        stage_features(bad, ws, spark)
    assert "QueryContextLogger" not in capfd.readouterr().err


def _monthly_text(n: int, seed: int, snapshot_fmt: str, signup_fmt: str) -> pd.DataFrame:
    """Three monthly snapshots (June to August 2026) of n customers, dates written as text
    in the given strftime formats, as a CSV holds them."""
    rng = np.random.default_rng(seed)
    parts = []
    for m in ("2026-06-01", "2026-07-01", "2026-08-01"):
        signup = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 700, n), "D")
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": np.arange(n),
                    "snapshot_date": pd.Timestamp(m).strftime(snapshot_fmt),
                    "signup_date": signup.strftime(signup_fmt),
                    "spend": rng.gamma(2, 10, n).round(2),
                    "churn": rng.choice(["yes", "no"], n),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_day_first_dates_in_a_csv_are_read_by_their_format(spark: Any, tmp_path: Path) -> None:
    """A CSV that writes dates day first (01/06/2026, 23.04.2025): init finds the formats,
    the build reads them (a cast alone makes them null), a label whose time cannot be read
    is dropped and counted, and a time column no row of which reads is a clear error."""
    from engine.errors import DataError

    df = _monthly_text(150, 4, "%d/%m/%Y", "%d.%m.%Y")
    df.loc[3, "snapshot_date"] = "not a date"
    path = tmp_path / "monthly.csv"
    df.to_csv(path, index=False)
    p = plan(path, "churn")
    assert p.time == "snapshot_date" and p.key == "customer_id"
    (tmp_path / "insight.yaml").write_text(render(p))
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    fmts = cfg.sources["table"].time_formats
    assert fmts == {"snapshot_date": "dd/MM/yyyy", "signup_date": "dd.MM.yyyy"}
    ws = Workspace(tmp_path / ".insight").ensure()
    snap, _ = stage_features(cfg, ws, spark)
    m = snap.manifest
    assert m["labels"]["rows_without_time_dropped"] == 1 and m["rows"] == len(df) - 1
    assert m["event_time_range"][0].startswith("2026-06-01")
    got = snap.read_pandas().sort_values(["snapshot_date", "customer_id"])
    ok = df.drop(index=3)
    want = (
        pd.to_datetime(ok["snapshot_date"], format="%d/%m/%Y")
        - pd.to_datetime(ok["signup_date"], format="%d.%m.%Y")
    ).dt.days.to_numpy()
    order = np.lexsort(
        (ok["customer_id"].to_numpy(), pd.to_datetime(ok["snapshot_date"], dayfirst=True))
    )
    np.testing.assert_array_equal(got["signup_date_days_before_label"].to_numpy(), want[order])

    src = cfg.sources["table"].model_copy(update={"time_formats": {}})
    bare = cfg.model_copy(update={"sources": {"table": src}})
    with pytest.raises(DataError, match="could not be read in any of the 450 label rows"):
        stage_features(bare, Workspace(tmp_path / ".insight2").ensure(), spark)


@pytest.mark.parametrize(
    ("sep", "decimal", "encoding"),
    [(";", ",", "cp1252"), ("\t", ".", "utf-8-sig")],
    ids=["semicolon-comma-windows1252", "tab-point-utf8-bom"],
)
def test_a_european_csv_is_read_as_pandas_reads_it(
    spark: Any, tmp_path: Path, sep: str, decimal: str, encoding: str
) -> None:
    """A CSV as a spreadsheet in Germany saves it (cells split by ';', decimals written
    '12,50', Windows-1252 text), and a tab-separated UTF-8 file with a byte-order mark: init
    finds the separator, the decimal mark and the encoding, and Spark's build reads every
    value as pandas reads the same file told how (``sep``, ``decimal``, ``encoding``)."""
    rng = np.random.default_rng(11)
    n = 400
    df = pd.DataFrame(
        {
            "Kunden-Nr": np.arange(n) + 5000,
            "Vertrag": rng.choice(["Monatlich", "Jährlich", "Zwei Jahre"], n),
            "Umsatz (€)": rng.gamma(2, 30, n).round(2),
            "Anzahl Geräte": rng.integers(0, 6, n),
            "Gekündigt": rng.choice(["ja", "nein"], n),
        }
    )
    df.loc[[5, 17], "Umsatz (€)"] = np.nan
    path = tmp_path / "kunden.csv"
    df.to_csv(path, sep=sep, decimal=decimal, index=False, encoding=encoding)
    text = path.read_bytes()
    if encoding == "cp1252":  # the file really is what the test says
        assert b"J\xe4hrlich" in text and re.search(rb";\d+,\d+;", text)
    else:
        assert text.startswith(b"\xef\xbb\xbf") and b"\t" in text
    path.write_bytes(text.replace(b"\r\n", b"\n"))
    grouped = "1.234,50" if decimal == "," else "1,234.50"  # thousands: not read, counted
    with path.open("ab") as f:  # cells in the number column that are not numbers
        for i, cell in enumerate(["n/a", grouped]):
            row = [str(9998 + i), "Monatlich", cell, "2", "nein"]
            f.write(sep.join(row).encode(encoding.split("-sig")[0]) + b"\n")

    p = plan(path, "Gekündigt", positive="ja")
    assert (p.dialect.delimiter, p.dialect.decimal) == (sep, decimal)
    assert p.dialect.encoding == ("windows-1252" if encoding == "cp1252" else "utf-8")
    kinds = {c.name: c.kind for c in p.columns}
    assert kinds["umsatz"] == "double" and kinds["anzahl_gerate"] == "int", kinds
    assert p.key == "kunden_nr" and "vertrag" in p.features
    (tmp_path / "insight.yaml").write_text(render(p))
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    src = cfg.sources["table"]
    assert (src.delimiter, src.decimal) == (sep, decimal)

    ws = Workspace(tmp_path / ".insight").ensure()
    snap, _ = stage_features(cfg, ws, spark)
    assert snap.manifest["unparsed_cells"]["table"]["umsatz"] == {"blank": 2, "not_double": 2}
    got = snap.read_pandas().sort_values("kunden_nr").reset_index(drop=True)
    want = pd.read_csv(
        path, sep=sep, decimal=decimal, encoding=encoding, na_values=["n/a", grouped]
    )
    want = want.sort_values("Kunden-Nr").reset_index(drop=True)
    assert len(got) == len(want) == n + 2
    np.testing.assert_array_equal(got["kunden_nr"].to_numpy(), want["Kunden-Nr"].to_numpy())
    np.testing.assert_allclose(
        got["umsatz"].to_numpy(dtype=float), want["Umsatz (€)"].to_numpy(), rtol=0, atol=0
    )
    np.testing.assert_array_equal(got["anzahl_gerate"].to_numpy(), want["Anzahl Geräte"].to_numpy())
    assert got["vertrag"].tolist() == want["Vertrag"].tolist()  # 'Jährlich', not mojibake


def test_dates_without_leading_zeros_are_read_in_the_files_one_order(
    spark: Any, tmp_path: Path
) -> None:
    """A spreadsheet in the US writes 6/1/2026: no leading zeros, month first. Spark's 'dd'
    takes two digits only (the build read nothing and failed); and the snapshot dates
    (6/1, 7/1, 8/1) read both ways, so init took them day first, while the signup dates
    (12/13/2024) say this file puts months first. Now: one order for the file, and every
    day count equals pandas' reading of the same text."""
    from engine.errors import DataError

    df = _monthly_text(120, 8, "%-m/%-d/%Y", "%-m/%-d/%Y")
    path = tmp_path / "us.csv"
    df.to_csv(path, index=False)
    p = plan(path, "churn")
    assert p.time == "snapshot_date"
    fmts = {c.name: c.time_format for c in p.columns if c.time_format}
    assert fmts == {"snapshot_date": "MM/dd/yyyy", "signup_date": "MM/dd/yyyy"}
    assert "as 'signup_date'" in next(c.note for c in p.columns if c.name == "snapshot_date")
    (tmp_path / "insight.yaml").write_text(render(p))
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    snap, _ = stage_features(cfg, Workspace(tmp_path / ".insight").ensure(), spark)
    got = snap.read_pandas().sort_values(["snapshot_date", "customer_id"])
    assert got["snapshot_date"].dt.strftime("%Y-%m-%d").unique().tolist() == [
        "2026-06-01",
        "2026-07-01",
        "2026-08-01",
    ]
    t, s = (pd.to_datetime(df[c], format="%m/%d/%Y") for c in ("snapshot_date", "signup_date"))
    want = df.assign(d=(t - s).dt.days, t=t).sort_values(["t", "customer_id"])["d"]
    np.testing.assert_array_equal(got["signup_date_days_before_label"].to_numpy(), want)

    wrong = cfg.sources["table"].model_copy(
        update={"time_formats": {"snapshot_date": "yyyy/MM/dd", "signup_date": "MM/dd/yyyy"}}
    )
    bad = cfg.model_copy(update={"sources": {"table": wrong}})
    with pytest.raises(DataError, match="as its declared format 'yyyy/MM/dd'"):
        stage_features(bad, Workspace(tmp_path / ".insight2").ensure(), spark)
