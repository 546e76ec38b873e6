"""Consent by purpose at a point in time: the as-of lookup against DuckDB's ASOF JOIN on
random ledgers (many seeds), and the table's bad values named."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from engine.config.governance import ConsentConfig
from engine.errors import ConfigError, DataError
from engine.governance.consent import NO_RECORD, WITHDRAWN, ConsentLedger

CFG = ConsentConfig(
    source="consents", subject="customer", purpose="purpose", status="status", time="at"
)
T0 = pd.Timestamp("2025-01-01")


def _ledger(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer": rng.integers(0, 40, n),
            "purpose": rng.choice(["marketing", "profiling", "Model_Training "], n),
            "status": rng.choice(["granted", "Withdrawn", "opt-in", "no"], n),
            # whole days: many events of one subject share an instant
            "at": T0 + pd.to_timedelta(rng.integers(0, 60, n), unit="D"),
        }
    )


def _oracle(events: pd.DataFrame, q: pd.DataFrame, purpose: str) -> list[str | None]:
    con = duckdb.connect()
    ev = events.assign(
        subject=events["customer"].astype(str),
        p=events["purpose"].str.strip().str.lower(),
        g=events["status"].str.lower().isin(["granted", "opt-in"]),
        ts=events["at"],
    )
    con.register("ev_raw", ev[["subject", "p", "g", "ts"]])
    con.register("q", q)
    rows = con.execute(
        f"""
        WITH ev AS (SELECT subject, ts, bool_and(g) AS g FROM ev_raw WHERE p = '{purpose}'
                    GROUP BY subject, ts)
        SELECT q.i, ev.g FROM q ASOF LEFT JOIN ev ON q.subject = ev.subject AND q.t >= ev.ts
        ORDER BY q.i
        """
    ).fetchall()
    return [None if g is True else NO_RECORD if g is None else WITHDRAWN for _, g in rows]


@pytest.mark.parametrize("seed", range(12))
def test_consent_as_of_equals_duckdbs_asof_join(seed: int) -> None:
    rng = np.random.default_rng(seed)
    events = _ledger(rng, int(rng.integers(1, 400)))
    led = ConsentLedger.from_frame(events, CFG)
    m = int(rng.integers(1, 300))
    q = pd.DataFrame(
        {
            "i": np.arange(m),
            "subject": rng.integers(0, 45, m).astype(str),  # some never recorded
            "t": T0 + pd.to_timedelta(rng.integers(-5, 70, m), unit="D"),
        }
    )
    for purpose in ("marketing", "profiling", "model_training"):
        got = led.check(q["subject"], q["t"], purpose)
        want = _oracle(events, q, purpose)
        assert got.reason.tolist() == want, (seed, purpose)
        assert got.allowed.tolist() == [w is None for w in want]
        c = got.counts
        assert c["allowed"] + c[NO_RECORD] + c[WITHDRAWN] == m


def test_a_withdrawal_takes_effect_at_its_instant_and_ties_read_as_withdrawn() -> None:
    ev = pd.DataFrame(
        {
            "customer": [1, 1, 2, 2, 3],
            "purpose": ["marketing"] * 5,
            "status": ["granted", "withdrawn", "granted", "withdrawn", "granted"],
            "at": pd.to_datetime(
                ["2025-01-01", "2025-02-01", "2025-01-01", "2025-01-01", "2025-03-01"]
            ),
        }
    )
    led = ConsentLedger.from_frame(ev, CFG)
    t = pd.to_datetime(["2025-01-31", "2025-02-01", "2025-01-15", "2025-02-15", "2025-04-01"])
    got = led.check([1, 1, 2, 3, 3.0], t, "marketing")
    assert got.reason.tolist() == [None, WITHDRAWN, WITHDRAWN, NO_RECORD, None]
    assert led.check([1], [pd.Timestamp("2025-01-31")], "profiling").reason.tolist() == [NO_RECORD]
    with pytest.raises(ValueError, match="no time"):
        led.check([1], [None], "marketing")


def test_keys_read_as_numbers_text_or_floats_match() -> None:
    ev = pd.DataFrame(
        {"customer": ["007", "12"], "purpose": ["p", "p"], "status": ["yes", "yes"],
         "at": ["2025-01-01T00:00:00Z", "2025-01-01T00:00:00+02:00"]}
    )  # fmt: skip
    led = ConsentLedger.from_frame(ev, CFG)
    got = led.check(pd.Series([12.0, np.nan, 12]).astype(float), ["2025-01-01"] * 3, "p")
    assert got.reason.tolist() == [None, NO_RECORD, None]
    assert led.check(["007", "7"], ["2025-01-02"] * 2, "p").reason.tolist() == [None, NO_RECORD]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": ["granted", "maybe"]}, "status 'maybe' is neither granted"),
        ({"at": ["2025-01-01", "not a date"]}, "unreadable 'at'"),
        ({"customer": ["1", " "]}, "blank or unreadable 'customer'"),
        ({"purpose": ["p", None]}, "blank or unreadable 'purpose'"),
    ],
)
def test_bad_consent_rows_are_named(change: dict[str, list[object]], message: str) -> None:
    ev = pd.DataFrame(
        {"customer": ["1", "2"], "purpose": ["p", "p"], "status": ["granted", "withdrawn"],
         "at": ["2025-01-01", "2025-01-02"]}
    )  # fmt: skip
    with pytest.raises(DataError, match=message):
        ConsentLedger.from_frame(ev.assign(**change), CFG)
    with pytest.raises(ConfigError, match="no column 'status'"):
        ConsentLedger.from_frame(ev.drop(columns="status"), CFG)


def test_status_lists_must_not_overlap() -> None:
    with pytest.raises(ValueError, match="both granted and withdrawn"):
        ConsentConfig(
            source="c", subject="s", purpose="p", status="st", time="t",
            granted=["yes"], withdrawn=["YES"],
        )  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_current_equals_the_as_of_join_at_the_same_instant(seed: int) -> None:
    """`current` (a lookup of each subject's last status) answers as `check` does at the
    same time, before, between and after the events."""
    rng = np.random.default_rng(seed)
    led = ConsentLedger.from_frame(_ledger(rng, 300), CFG)
    subjects = [str(x) for x in rng.integers(0, 45, 200)]
    for at in (T0 - pd.Timedelta(days=1), T0 + pd.Timedelta(days=30), T0 + pd.Timedelta(days=99)):
        for purpose in ("marketing", "model_training", "nothing_recorded"):
            want = led.check(subjects, [at] * len(subjects), purpose)
            got = led.current(subjects, purpose, at=at.tz_localize("UTC"))
            assert got.reason.tolist() == want.reason.tolist(), (seed, at, purpose)


def test_subject_keys_read_integer_ids_the_same_however_a_table_wrote_them() -> None:
    """A Stata or pandas export writes 233 as "233.0": the same subject as 233 and "233";
    text ids stay as they are (only blanks around them go)."""
    import pandas as pd

    from engine.governance.consent import subject_keys

    got = subject_keys(pd.Series(["233.0", " 7 ", "x.0", "12.50", "-4.00", "", None]))
    assert got.tolist() == ["233", "7", "x.0", "12.50", "-4", None, None]
    assert subject_keys(pd.Series([233.0, 7.0])).tolist() == ["233", "7"]
