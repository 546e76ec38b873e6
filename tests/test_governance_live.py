"""Consent as replicas see it: the source plus the workspace's log, re-read when a file
changes; a withdrawal recorded by another process takes effect on the next check."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from engine.config.governance import ConsentConfig
from engine.governance.consent import NO_RECORD, WITHDRAWN
from engine.governance.live import LiveConsent, read_log, record_consent

CFG = ConsentConfig(source="c", subject="who", purpose="what", status="st", time="at",
                    granted=["Y"], withdrawn=["N"])  # fmt: skip


def _source(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    pd.DataFrame(rows, columns=["who", "what", "st", "at"]).to_csv(path, index=False)


def test_a_withdrawal_in_the_log_takes_effect_on_the_next_check(tmp_path: Path) -> None:
    src = tmp_path / "consents.csv"
    _source(src, [("c1", "profiling", "Y", "2025-01-01"), ("c2", "profiling", "Y", "2025-01-01")])
    live = LiveConsent(CFG, lambda: pd.read_csv(src, dtype=str), src, tmp_path)
    assert live.check(["c1", "c2", "c3"], "profiling").reason.tolist() == [None, None, NO_RECORD]
    assert live.check(["c1"], "profiling").allowed.tolist() == [True]
    assert live.reloads == 1, "no file changed: answered from memory"
    # another process (the CLI, the admin route on another replica) withdraws c1's consent
    code = (
        "import sys; from pathlib import Path; from engine.governance.live import record_consent; "
        "record_consent(Path(sys.argv[1]), 'c1', 'profiling', False, actor='test')"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    got = live.check(["c1", "c2"], "profiling")
    assert got.reason.tolist() == [WITHDRAWN, None] and live.reloads == 2
    # the source changes too: c3 grants, read on the next check
    time.sleep(0.01)
    _source(src, [("c1", "profiling", "Y", "2025-01-01"), ("c3", "profiling", "Y", "2025-01-02")])
    got = live.check(["c1", "c2", "c3"], "profiling")
    assert got.reason.tolist() == [WITHDRAWN, NO_RECORD, None]
    record_consent(tmp_path, "c1", "profiling", True, actor="test")
    assert live.check(["c1"], "profiling").allowed.tolist() == [True]
    assert len(read_log(tmp_path)) == 2


def test_without_a_source_the_log_alone_decides(tmp_path: Path) -> None:
    live = LiveConsent(None, None, None, tmp_path)
    assert live.check(["a"], "marketing").reason.tolist() == [NO_RECORD]
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    record_consent(tmp_path, "a", "marketing", True, actor="t", at=past)
    assert live.check(["a", "b"], "marketing").reason.tolist() == [None, NO_RECORD]
    assert live.check(["a"], "profiling").reason.tolist() == [NO_RECORD]


def test_the_consent_commands_record_check_and_audit(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from engine.audit.verify import read_records, verify
    from engine.cli import app
    from engine.pii import hmac_hex, load_key

    ex = str(Path(__file__).resolve().parent.parent / "examples" / "retail" / "insight.yaml")
    where = ["--project", ex, "--workspace", str(tmp_path / ".insight")]
    run = CliRunner().invoke
    r = run(app, ["consent", "check", "-s", "C7", "--purpose", "marketing", *where])
    assert r.exit_code == 1 and "no (no consent on record)" in r.output
    r = run(app, ["consent", "grant", "-s", "C7", "--purpose", "marketing", "--by", "ana", *where])
    assert r.exit_code == 0, r.output
    r = run(app, ["consent", "check", "-s", "C7", "--purpose", "marketing", *where])
    assert r.exit_code == 0 and "consents" in r.output
    args = ["consent", "withdraw", "-s", "C7", "--purpose", "marketing", "--reason", "phone"]
    assert run(app, [*args, "--by", "dpo", *where]).exit_code == 0
    r = run(app, ["consent", "check", "-s", "C7", "--purpose", "marketing", *where])
    assert r.exit_code == 1 and "consent withdrawn" in r.output
    r = run(app, ["consent", "grant", "-s", " ", "--purpose", "marketing", *where])
    assert r.exit_code != 0 and "--subject is blank" in str(r.exception)  # CLI's main prints it
    ctl = tmp_path / ".insight" / "audit" / "control"
    assert verify(ctl).ok
    recs = [x for x in read_records(ctl, kind="consent")]
    assert [(x["event"], x["by"]) for x in recs] == [("granted", "ana"), ("withdrawn", "dpo")]
    key = hmac_hex(load_key(tmp_path / ".insight"), "C7")
    assert all(x["subject_hash"] == key for x in recs)
    assert "C7" not in (ctl).joinpath(next(p.name for p in ctl.iterdir())).read_text(
        errors="replace"
    ), "the audit holds the keyed hash, not the key"
