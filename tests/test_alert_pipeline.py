"""The notification pipeline as on-call people expect it (Alertmanager's semantics): one
incident over many features is one page that lists them, a feature joining is one update,
an unchanged group repeats only after repeat_interval, one resolve per group; inhibition (a
broken audit chain or no traffic mutes drift; a critical alert mutes its warning twin);
silences (created, listed, expiring, audited); two apps in one workspace are two alerts.
Deliveries go to a real HTTP receiver on 127.0.0.1. Unit tier: no Spark, no Ray."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.config.monitor import MonitorConfig
from engine.monitor.alerting import AlertState, deliver, judge, step
from engine.monitor.alerting import silences as silence_store
from engine.monitor.receiver import http_receiver
from engine.monitor.result import MonitorResult
from engine.workspace import Workspace
from tests import results

FEATURES = [f"f{i}" for i in range(9)]


def _cfg(**route: Any) -> MonitorConfig:
    return MonitorConfig.model_validate(
        {
            "rules": [
                {
                    "name": "feature-drift",
                    "statistic": "feature.psi",
                    "op": ">",
                    "threshold": 0.2,
                    "sinks": ["hook"],
                    "min_rows": 50,
                },
                {
                    "name": "chain",
                    "statistic": "audit.problems",
                    "op": ">",
                    "threshold": 0,
                    "sinks": ["hook"],
                    "severity": "critical",
                },
                {
                    "name": "quiet",
                    "statistic": "traffic.requests",
                    "op": "<",
                    "threshold": 10,
                    "sinks": ["hook"],
                },
                {
                    "name": "score-warn",
                    "statistic": "score.psi",
                    "op": ">",
                    "threshold": 0.1,
                    "sinks": ["hook"],
                    "severity": "warning",
                },
                {
                    "name": "score-crit",
                    "statistic": "score.psi",
                    "op": ">",
                    "threshold": 0.3,
                    "sinks": ["hook"],
                    "severity": "critical",
                },
            ],
            "sinks": {"hook": {"type": "webhook", "url_env": "T_HOOK", "backoff_s": 0.01}},
            "route": {"group_interval": "5m", "repeat_interval": "1h", **route},
        }
    )


def _result(
    drifted: list[str], *, problems: int = 0, requests: int = 500, score_psi: float = 0.0
) -> MonitorResult:
    feats = {
        f: {
            "kind": "numeric",
            "rows": 400,
            "null_rate_change": {"estimate": 0.0, "n": 400},
            "psi": {
                "estimate": 0.5 if f in drifted else 0.01,
                "low": 0.4 if f in drifted else 0.0,
                "high": 0.6 if f in drifted else 0.05,
                "n": 400,
            },
        }
        for f in FEATURES
    }
    score = {
        "decision_rate": {"estimate": None},
        "psi": {"estimate": score_psi, "low": score_psi - 0.01, "high": score_psi + 0.01, "n": 400},
    }
    return results.result(
        {"1": results.version(features=feats, score=score)},
        problems=["segment x: 1 record(s) modified"] * problems,
        requests=requests,
    )


def _run(
    cfg: MonitorConfig,
    st: AlertState,
    res: MonitorResult,
    now: float,
    app: str = "insight",
    **kw: Any,
) -> dict[str, Any]:
    ctx: dict[str, Any] = {"app": app, "model": "m", "project": "p", "window": {}, "run_id": "r"}
    step(cfg, st, judge(cfg, res, app=app), now, ctx, **kw)
    st.save()
    return ctx


@pytest.fixture()
def hook() -> Iterator[Any]:
    with http_receiver() as rx:
        os.environ["T_HOOK"] = rx.url + "/hook"
        try:
            yield rx
        finally:
            os.environ.pop("T_HOOK")


def _sent(rx: Any) -> list[dict[str, Any]]:
    return [r["json"] for r in rx.delivered()]


def test_one_incident_over_eight_features_is_one_page_then_one_update_and_one_resolve(
    tmp_path: Path, hook: Any
) -> None:
    """Regression: one drift incident over eight features paged eight times."""
    cfg, st = _cfg(), AlertState(tmp_path / "s.json")
    quiet = lambda s: None  # noqa: E731
    _run(cfg, st, _result(FEATURES[:8]), 0)
    assert deliver(cfg, st, log=quiet)["sent"] == 1
    page = _sent(hook)[0]
    assert page["dedup_key"] == "insight|feature-drift|v1" and page["kind"] == "new"
    assert len(page["alerts"]) == 8 and {a["slice"] for a in page["alerts"]} == set(FEATURES[:8])
    assert "on 8 features" in page["summary"] and "f0 0.5 (0.4..0.6)" in page["summary"]
    assert page["link"] == "report.html#drift" and "drift panel" in page["first_step"]
    # Still firing, unchanged: nothing until repeat_interval.
    _run(cfg, st, _result(FEATURES[:8]), 60)
    assert deliver(cfg, st, log=quiet)["sent"] == 0
    # A ninth feature joins: one update (after group_interval), naming it.
    _run(cfg, st, _result(FEATURES), 120)
    assert deliver(cfg, st, log=quiet)["sent"] == 0, "within group_interval: held"
    _run(cfg, st, _result(FEATURES), 360)
    assert deliver(cfg, st, log=quiet)["sent"] == 1
    upd = _sent(hook)[-1]
    assert upd["kind"] == "update" and upd["dedup_key"] == page["dedup_key"]
    assert upd["added"] == ["insight|feature-drift|v1|f8"] and "(+f8)" in upd["summary"]
    # Unchanged past repeat_interval: one repeat.
    _run(cfg, st, _result(FEATURES), 360 + 3600)
    assert deliver(cfg, st, log=quiet)["sent"] == 1 and _sent(hook)[-1]["kind"] == "repeat"
    # All calm: exactly one resolve for the group, then nothing.
    _run(cfg, st, _result([]), 8000)
    _run(cfg, st, _result([]), 8060)
    assert deliver(cfg, st, log=quiet)["sent"] == 1
    res = _sent(hook)[-1]
    assert res["action"] == "resolve" and res["dedup_key"] == page["dedup_key"]
    assert [p["kind"] for p in _sent(hook)] == ["new", "update", "repeat", "resolve"]
    # A restart sends nothing twice.
    st2 = AlertState.load(st.path)
    _run(cfg, st2, _result([]), 8120)
    assert deliver(cfg, st2, log=quiet)["sent"] == 0 and len(_sent(hook)) == 4


def test_two_apps_in_one_workspace_are_two_alerts(tmp_path: Path, hook: Any) -> None:
    """Regression: two apps shared `audit-chain|v1|-`, so a clean run of one resolved the
    other's alert."""
    cfg, st = _cfg(), AlertState(tmp_path / "s.json")
    _run(cfg, st, _result([], problems=1), 0, app="churn")
    _run(cfg, st, _result([]), 60, app="uplift")  # a clean run of the other app
    assert st.alerts["churn|chain|-|-"].state == "firing"
    deliver(cfg, st, log=lambda s: None)
    assert [(p["action"], p["dedup_key"]) for p in _sent(hook)] == [("trigger", "churn|chain|-")]


def test_a_broken_chain_or_no_traffic_mutes_drift_and_critical_mutes_its_warning(
    tmp_path: Path, hook: Any
) -> None:
    cfg, st = _cfg(), AlertState(tmp_path / "s.json")
    ctx = _run(cfg, st, _result(FEATURES[:3], problems=2), 0)
    deliver(cfg, st, log=lambda s: None)
    assert [p["dedup_key"] for p in _sent(hook)] == ["insight|chain|-"], "drift is inhibited"
    assert "audit chain is broken" in ctx["muted"]["insight|feature-drift|v1|f0"]
    assert st.alerts["insight|feature-drift|v1|f0"].state == "firing", "its state still moves"
    # The chain is repaired: the chain resolves, and the drift group opens and pages.
    _run(cfg, st, _result(FEATURES[:3]), 60)
    deliver(cfg, st, log=lambda s: None)
    assert sorted((p["kind"], p["dedup_key"]) for p in _sent(hook)[1:]) == [
        ("new", "insight|feature-drift|v1"),
        ("resolve", "insight|chain|-"),
    ]
    # Too little traffic mutes drift too.
    st2 = AlertState(tmp_path / "t.json")
    ctx = _run(cfg, st2, _result(FEATURES[:3], requests=3), 0)
    assert "no (or too little) traffic" in ctx["muted"]["insight|feature-drift|v1|f1"]
    # A critical score alert mutes the warning on the same statistic and slice.
    st3 = AlertState(tmp_path / "u.json")
    ctx = _run(cfg, st3, _result([], score_psi=0.5), 0)
    assert "critical alert" in ctx["muted"]["insight|score-warn|v1|-"]
    assert "insight|score-crit|v1|-" not in ctx["muted"]
    assert [n.dedup_key for n in st3.outbox] == ["insight|score-crit|v1"]


def test_silences_mute_expire_and_are_audited(tmp_path: Path, hook: Any) -> None:
    from engine.audit.verify import read_records, verify

    ws = Workspace(tmp_path / ".insight").ensure()
    cfg, st = _cfg(), AlertState(tmp_path / "s.json")
    s = silence_store.create(
        ws, ["rule=feature-drift", "slice=~f[0-3]"], "2h", "planned backfill", "ana", now=1000.0
    )
    assert [x.id for x in silence_store.load(ws)] == [s.id]
    sil = silence_store.load(ws)
    ctx = _run(cfg, st, _result(FEATURES[:3]), 0, silences=sil, wall=1500.0)
    assert all(
        f"silenced by {s.id}" in ctx["muted"][f"insight|feature-drift|v1|f{i}"] for i in range(3)
    )
    deliver(cfg, st, log=lambda x: None)
    assert _sent(hook) == [], "silenced: no page"
    # f5 is not matched by the silence: the group pages with f5 alone.
    _run(cfg, st, _result([*FEATURES[:3], "f5"]), 60, silences=sil, wall=1560.0)
    deliver(cfg, st, log=lambda x: None)
    assert [a["slice"] for a in _sent(hook)[0]["alerts"]] == ["f5"]
    # Expired early: at the next run the muted features join the page as an update.
    silence_store.expire(ws, s.id[:6], "ben", now=2000.0)
    assert silence_store.status(silence_store.load(ws)[0], 2001.0) == "expired"
    _run(cfg, st, _result([*FEATURES[:3], "f5"]), 400, silences=silence_store.load(ws), wall=2001.0)
    deliver(cfg, st, log=lambda x: None)
    last = _sent(hook)[-1]
    assert last["kind"] == "update" and len(last["alerts"]) == 4
    # Ending by itself: a silence past its end mutes nothing.
    s2 = silence_store.create(ws, ["rule=chain"], "30m", "known incident", "ana", now=0.0)
    assert silence_store.status(s2, 1800.0) == "expired"
    events = sorted(
        (r for r in read_records(ws.audit / "control", kind=None) if r.get("kind") == "silence"),
        key=lambda r: r["time"],
    )
    assert [(e["event"], e["by"]) for e in events] == [
        ("created", "ana"),
        ("expired", "ben"),
        ("created", "ana"),
    ]
    assert events[0]["comment"] == "planned backfill" and verify(ws.audit / "control").ok


def test_bad_silences_are_clear_errors(tmp_path: Path) -> None:
    from engine.errors import ConfigError, StateError

    ws = Workspace(tmp_path / ".insight").ensure()
    with pytest.raises(ConfigError, match="label=value"):
        silence_store.create(ws, ["rule"], "2h", "x", "a")
    with pytest.raises(ConfigError, match="--comment"):
        silence_store.create(ws, ["rule=a"], "2h", " ", "a")
    with pytest.raises(ConfigError, match="not a duration"):
        silence_store.create(ws, ["rule=a"], "2 hours", "x", "a")
    with pytest.raises(StateError, match="insight alerts silences"):
        silence_store.expire(ws, "nope", "a")
    assert silence_store.load(ws) == [], "nothing written"


def test_the_silence_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import EXAMPLE
    from tests.test_init import _insight

    ws = str(tmp_path / ".insight")
    code, text = _insight(
        capsys,
        "alerts",
        "silence",
        "-p",
        str(EXAMPLE),
        "-w",
        ws,
        "--match",
        "rule=chain",
        "--for",
        "2h",
        "--comment",
        "deploy window",
        "--by",
        "ana",
    )
    assert code == 0 and "until" in text, text
    code, text = _insight(capsys, "alerts", "silences", "-p", str(EXAMPLE), "-w", ws)
    assert code == 0 and "rule=chain" in text and "active" in text and "ana" in text
    sid = silence_store.load(Workspace(Path(ws)))[0].id
    code, text = _insight(capsys, "alerts", "expire", sid, "-p", str(EXAMPLE), "-w", ws)
    assert code == 0 and "expired" in text
    code, text = _insight(capsys, "alerts", "silences", "-p", str(EXAMPLE), "-w", ws)
    assert "rule=chain" not in text, "expired ones are hidden without --all"
    code, text = _insight(capsys, "alerts", "list", "-p", str(EXAMPLE), "-w", ws)
    assert code == 0 and "open groups: none" in text


def test_every_notification_link_is_a_section_of_the_report() -> None:
    from engine.config.monitor import STATISTICS
    from engine.monitor.alerting.pipeline import FIRST_STEP
    from engine.report.page import PANELS, render_report

    ids = {p[0] for p in PANELS}
    families = {s.split(".", 1)[0] for s in STATISTICS}
    assert families <= set(FIRST_STEP), "every statistic's family has a first step"
    assert {section for _, section in FIRST_STEP.values()} <= ids
    data = {"header": {"project": "p", "model": "m"}, "versions": []}
    page = render_report(data)
    assert all(f'id="{i}"' in page for i in ids)
