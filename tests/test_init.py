"""`insight init` on tables shaped like users' tables (generated here): the inferred
project file validates, says what it chose, and bad input writes nothing. Unit tier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from engine.cli import app
from engine.config.project import ProjectConfig
from engine.data.init import plan
from engine.data.project_file import render
from engine.data.sources import check_sources
from engine.errors import ConfigError, DataError
from tests.tables import telecom, write_csv


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    return write_csv(telecom(1500, 3), tmp_path / "Telco Churn.csv")


def test_init_writes_a_commented_project_that_validates(table: Path) -> None:
    r = CliRunner().invoke(app, ["init", "--from", str(table), "--label", "Churn"])
    assert r.exit_code == 0, r.output
    out = table.parent / "insight.yaml"
    text = out.read_text()
    cfg = ProjectConfig.load(out)
    check_sources(cfg, Path(".insight").resolve())  # what `insight validate` checks
    assert cfg.name == "telco-churn" and cfg.entity_key("row") == "customer_id"
    assert cfg.label.column == "churn" and cfg.label.positive == "Yes"
    assert cfg.label.event_time is None, "no time: a snapshot table"
    src = cfg.sources["table"]
    assert src.format == "csv" and src.rename["Internet Service"] == "internet_service"
    assert src.columns["total_charges"] == "double" and src.columns["tenure"] == "int"
    assert "blank" in text and "read as null" in text, "the blanks are announced"
    feats = cfg.feature_names()
    assert {"contract", "internet_service", "payment_method", "tenure"} <= set(feats)
    assert "churn" not in feats and "customer_id" not in feats
    assert cfg.pii == ["table.e_mail"] and "e_mail" not in feats, "PII hashed, never a feature"
    # Sensitive candidates are listed, never applied silently.
    assert cfg.sensitive == [] and "# sensitive: [gender, senior_citizen]" in text
    assert "gender" in r.output and "left out: e_mail" in r.output


def test_pii_is_judged_by_values_not_only_by_names(tmp_path: Path) -> None:
    """The public telecom table has ``PhoneService`` (Yes/No): an attribute, not a phone
    number. A name is a hint; values decide: e-mails under any name, phone numbers and many
    distinct names are PII; a few values under a PII-like name stay a feature, with a note."""
    import numpy as np

    df = telecom(400, 5)
    rng = np.random.default_rng(5)
    df["PhoneService"] = rng.choice(["Yes", "No"], len(df))
    df["plan_name"] = rng.choice(["Basic", "Plus", "Max"], len(df))
    df["Phone"] = [f"+44 20 7{i:03d} {rng.integers(1000, 9999)}" for i in range(len(df))]
    df["contact"] = [f"user{i}@mail.example" for i in range(len(df))]
    df["Last Name"] = [f"Name{i % 150}" for i in range(len(df))]
    p = plan(write_csv(df, tmp_path / "t.csv"), "Churn")
    assert {"phone", "contact", "last_name", "e_mail"} <= set(p.pii)
    assert "phone_service" not in p.pii and "plan_name" not in p.pii
    assert {"phone_service", "plan_name"} <= set(p.features)
    assert "values are e-mail addresses" in p.left_out["contact"]
    assert "values are phone numbers" in p.left_out["phone"]
    text = render(p)
    assert "phone_service: string   # named like PII, but 2 distinct value(s)" in text
    cfg_pii = yaml.safe_load(text)["pii"]
    assert "table.phone_service" not in cfg_pii and "table.contact" in cfg_pii


def test_key_time_and_generated_row_id(tmp_path: Path) -> None:
    df = telecom(300, 1).drop(columns=["customerID"])
    df["month"] = pd.Timestamp("2025-01-01") + pd.to_timedelta(df.index % 6 * 30, "D")
    df["Customer ID"] = [f"c{i // 6}" for i in range(len(df))]
    df["signup date"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(df.index, "D")
    path = write_csv(df, tmp_path / "t.csv")
    p = plan(path, "Churn", time="month")
    assert (p.time == "month" and p.key == "customer_id") or p.key == "customer", p.key
    assert p.derived == {"signup_date_days_before_label": "datediff(month, signup_date)"}
    # No time, no unique column: rows are keyed by a hash of their values.
    no_id = df.drop(columns=["Customer ID", "E-mail"])  # e-mail would be a unique (PII) key
    q = plan(write_csv(no_id, tmp_path / "u.csv"), "Churn")
    assert q.row_id and q.key == "row_id" and "hash" in q.key_note
    cfg_path = tmp_path / "u.yaml"
    cfg_path.write_text(render(q))
    cfg = ProjectConfig.load(cfg_path)
    assert cfg.sources["table"].row_id == "row_id"


def _insight(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The console script in this process: exit code and everything it printed."""
    import sys

    from engine.cli import main

    old, sys.argv = sys.argv, ["insight", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, " ".join((out.out + out.err).split())


def test_bad_input_is_a_clear_error_and_writes_nothing(
    table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = table.parent / "insight.yaml"
    cases = [
        (["--label", "churned"], "'churned' is not a column", table),
        (["--label", "Contract"], "3 distinct values", table),
        (["--label", "Churn", "--key", "gender"], "is not unique", table),
        (["--label", "Churn", "--time", "Contract"], "does not hold dates", table),
    ]
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b,Churn\n")
    cases.append((["--label", "Churn"], "has no rows", empty))
    words = tmp_path / "words.csv"  # a pair of label values init cannot tell apart alone
    words.write_text(
        "a,b,status\n"
        + "".join(f"{i},{i % 2},{'active' if i % 3 else 'churned'}\n" for i in range(30))
    )
    cases.append((["--label", "status"], "Fix: pass --positive 'churned'", words))
    cases.append((["--label", "status", "--positive", "gone"], "--positive is 'gone'", words))
    for args, words, path in cases:
        code, text = _insight(capsys, "init", "--from", str(path), *args)
        assert code == 2, (args, text)
        assert words in text and "Fix" in text and "Traceback" not in text, (args, text)
        assert not out.exists() and not (path.parent / "insight.yaml").exists()
    assert _insight(capsys, "init", "--from", str(table), "--label", "Churn")[0] == 0
    before = out.read_text()
    code, text = _insight(capsys, "init", "--from", str(table), "--label", "Churn")
    assert code == 2 and "--force" in text and out.read_text() == before
    assert _insight(capsys, "init", "--from", str(table), "--label", "Churn", "--force")[0] == 0


@pytest.mark.parametrize(
    ("values", "positive"),
    [(("Yes", "No"), "Yes"), (("ja", "nein"), "ja"), (("Oui", "Non"), "Oui"), (("sí", "no"), "sí")],
)
def test_the_usual_spellings_of_yes_are_the_positive_outcome(
    tmp_path: Path, values: tuple[str, str], positive: str
) -> None:
    df = telecom(60, 2)
    df["Churn"] = np.where(df["Churn"] == "Yes", *values)
    p = plan(write_csv(df, tmp_path / "t.csv"), "Churn")
    assert p.positive == positive


def test_plan_errors_are_typed(table: Path) -> None:
    with pytest.raises(ConfigError):
        plan(table, "nope")
    with pytest.raises(DataError):
        plan(table, "PaymentMethod")
    assert yaml.safe_load(render(plan(table, "Churn")))["label"]["positive"] == "Yes"


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("Kündigungsgrund.code", "kundigungsgrund_code"),
        ("Straße", "strasse"),
        ("Monatsumsatz (€)", "monatsumsatz"),
        ("customerID", "customer_id"),
        ("Internet Service", "internet_service"),
        ("2nd line", "c_2nd_line"),
    ],
)
def test_names_become_identifiers_keeping_their_letters(raw: str, name: str) -> None:
    from engine.data.init import snake

    assert snake(raw) == name


def test_monthly_snapshots_are_found_without_time(tmp_path: Path) -> None:
    """Accounts seen every month: without --time, init finds the snapshot column (ids repeat
    across it and are unique per value), so training splits by time and no account sits on
    both sides of a random split; an id-named number is never a feature."""
    import numpy as np

    rng = np.random.default_rng(8)
    n = 300
    parts = [
        pd.DataFrame(
            {
                "Account Id": np.arange(n) + 5000,
                "Snapshot Date": pd.Timestamp(m),
                "signup_date": pd.Timestamp("2025-01-01")
                + pd.to_timedelta(rng.integers(0, 300, n), "D"),
                "Order Number": rng.permutation(n * 10)[:n] + 10**6,
                "spend": rng.gamma(2, 10, n),
                "churned": rng.random(n) < 0.2,
            }
        )
        for m in ("2026-06-01", "2026-07-01", "2026-08-01")
    ]
    path = tmp_path / "accounts.parquet"
    pd.concat(parts).to_parquet(path, index=False)
    p = plan(path, "churned")
    assert p.time == "snapshot_date" and p.key == "account_id" and not p.row_id
    assert "repeats across 3 values of 'Snapshot Date'" in p.time_note
    assert "signup_date_days_before_label" in p.derived
    assert "order_number" in p.left_out and "order_number" not in p.features
    assert "snapshot_date" not in p.features
    text = render(p)
    cfg = yaml.safe_load(text)
    assert cfg["label"]["event_time"] == "snapshot_date"
    # A one-moment table keeps no time.
    one = tmp_path / "one.parquet"
    parts[0].to_parquet(one, index=False)
    assert plan(one, "churned").time is None


def test_time_formats_are_checked(tmp_path: Path) -> None:
    from engine.timeformat import to_strptime

    assert to_strptime("dd/MM/yyyy HH:mm") == "%d/%m/%Y %H:%M"
    with pytest.raises(ValueError, match="outside yyyy MM dd"):
        to_strptime("d MMM yyyy", "when")
    df = telecom(50, 1)
    df["Signup Date"] = "01/02/2025"
    p = plan(write_csv(df, tmp_path / "t.csv"), "Churn")
    cfg = yaml.safe_load(render(p))
    cfg["sources"]["table"]["time_formats"] = {"tenure": "dd/MM/yyyy"}
    (tmp_path / "insight.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="not declared 'timestamp' columns"):
        ProjectConfig.load(tmp_path / "insight.yaml")


def test_spark_reads_a_format_with_one_digit_or_two_as_strptime_does(tmp_path: Path) -> None:
    from engine.timeformat import day_first, to_spark

    assert to_spark("dd/MM/yyyy HH:mm:ss") == "d/M/yyyy H:m:s"
    assert to_spark("yyyy/MM/dd") == "yyyy/M/d" and to_spark("dd.MM.yyyy") == "d.M.yyyy"
    assert day_first("dd/MM/yyyy") is True and day_first("MM/dd/yyyy") is False
    assert day_first("yyyy") is None
    # One order per file: an unambiguous column decides the ambiguous ones; when columns
    # disagree (or none decides), ambiguous ones stay day first, with the note.
    df = telecom(60, 4)
    df["Snapshot Date"] = "6/1/2026"
    df["Signup Date"] = "12/13/2024"  # only month first
    p = plan(write_csv(df, tmp_path / "us.csv"), "Churn")
    fmts = {c.name: c.time_format for c in p.columns if c.time_format}
    assert fmts == {"snapshot_date": "MM/dd/yyyy", "signup_date": "MM/dd/yyyy"}
    df["Renewal Date"] = "13/12/2024"  # only day first: the file mixes orders
    p = plan(write_csv(df, tmp_path / "mixed.csv"), "Churn")
    fmts = {c.name: c.time_format for c in p.columns if c.time_format}
    assert fmts["snapshot_date"] == "dd/MM/yyyy" and fmts["signup_date"] == "MM/dd/yyyy"
