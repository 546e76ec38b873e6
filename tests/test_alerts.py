"""Alert rules, states and sinks: Prometheus semantics (pending -> firing -> resolved,
``for`` and ``keep_firing_for``), dedup keys, persistence (a restart sends no duplicate, a
flapping series pages once, a resolve is sent once), and real deliveries to receivers on
127.0.0.1 (Slack and generic webhooks, PagerDuty Events v2 with retries on 429/5xx and none
on 400, SMTP). Unit tier: no Spark, no Ray."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from engine.config.monitor import MonitorConfig
from engine.monitor.alerting import AlertState, deliver, judge, step
from engine.monitor.receiver import http_receiver, smtp_receiver
from engine.monitor.result import MonitorResult
from tests import results


def _cfg(**rule: Any) -> MonitorConfig:
    base = {
        "name": "score-shift",
        "statistic": "score.mean_change",
        "op": ">",
        "threshold": 0.30,
        "for": "10m",
        "keep_firing_for": "30m",
        "sinks": ["hook"],
        "min_rows": 100,
    }
    return MonitorConfig.model_validate(
        {
            "rules": [{**base, **rule}],
            "sinks": {"hook": {"type": "webhook", "url_env": "TEST_HOOK_URL", "backoff_s": 0.01}},
        }
    )


def _result(
    est: float | None, low: float | None = None, high: float | None = None, n: int = 500
) -> MonitorResult:
    mean_change = {"estimate": est, "low": low, "high": high, "n": n}
    score = {"decision_rate": {"estimate": None}, "mean_change": mean_change}
    return results.result({"3": results.version(score=score)})


def _run(
    cfg: MonitorConfig, state: AlertState, res: MonitorResult, now: float
) -> list[dict[str, Any]]:
    ch = step(
        cfg,
        state,
        judge(cfg, res),
        now,
        {"model": "m", "project": "p", "window": {}, "run_id": "r"},
    )
    state.save()
    return ch


def test_a_rule_judges_the_interval_not_the_point_and_needs_min_rows() -> None:
    cfg = _cfg()
    assert judge(cfg, _result(0.5, 0.35, 0.65))[0].holds
    assert not judge(cfg, _result(0.5, 0.25, 0.75))[0].holds, "the interval reaches the threshold"
    j = judge(cfg, _result(0.9, 0.8, 1.0, n=20))[0]
    assert not j.holds and "min_rows" in j.note
    assert not judge(cfg, _result(None))[0].holds


def test_pending_firing_resolved_with_for_and_keep_firing_for(tmp_path: Path) -> None:
    cfg, st = _cfg(), AlertState(tmp_path / "s.json")
    hot, cold = _result(0.5, 0.4, 0.6), _result(0.0, -0.1, 0.1)
    key = "insight|score-shift|v3|-"
    assert _run(cfg, st, hot, 0)[0]["to"] == "pending" and not st.outbox
    assert not _run(cfg, st, hot, 300), "held 5 min < for 10 min: still pending"
    assert _run(cfg, st, hot, 600)[0]["to"] == "firing"
    assert [n.action for n in st.outbox] == ["trigger"]
    assert st.outbox[0].dedup_key == "insight|score-shift|v3", "the group: app, rule, version"
    # Flapping while firing: it keeps firing (keep_firing_for 30 min), no second page.
    for t, r in ((900, cold), (1200, hot), (1500, cold), (1800, hot)):
        assert not _run(cfg, st, r, t)
    assert len(st.outbox) == 1 and st.alerts[key].incidents == 1
    assert not _run(cfg, st, cold, 1800 + 1500), "25 min without holding: still firing"
    assert _run(cfg, st, cold, 1800 + 1800)[0]["to"] == "inactive"
    assert [n.action for n in st.outbox] == ["trigger", "resolve"], "exactly one resolve"
    assert not _run(cfg, st, cold, 9000) and len(st.outbox) == 2
    # Pending that stops holding goes back to inactive without a page.
    _run(cfg, st, hot, 10_000)
    assert _run(cfg, st, cold, 10_100)[0]["to"] == "inactive" and len(st.outbox) == 2


def test_state_persists_a_restart_sends_nothing_twice(tmp_path: Path) -> None:
    cfg = _cfg(**{"for": "0s"})
    p = tmp_path / "s.json"
    with http_receiver() as rx:
        os.environ["TEST_HOOK_URL"] = rx.url + "/hook"
        try:
            st = AlertState.load(p)
            _run(cfg, st, _result(0.5, 0.4, 0.6), 0)
            assert deliver(cfg, st, log=lambda s: None) == {"sent": 1, "kept": 0, "dropped": 0}
            for t in (60, 120):  # the monitor restarts (state reloaded) while it keeps holding
                st = AlertState.load(p)
                _run(cfg, st, _result(0.5, 0.4, 0.6), t)
                deliver(cfg, st, log=lambda s: None)
            assert len(rx.delivered()) == 1, "one page for one incident, across restarts"
            body = rx.delivered()[0]["json"]
            assert body["action"] == "trigger" and body["dedup_key"] == "insight|score-shift|v3"
        finally:
            os.environ.pop("TEST_HOOK_URL")


def test_a_sink_that_is_down_loses_nothing_and_pages_once(tmp_path: Path) -> None:
    cfg = _cfg(**{"for": "0s"})
    with http_receiver() as rx:
        os.environ["TEST_HOOK_URL"] = rx.url + "/hook"
        try:
            st = AlertState(tmp_path / "s.json")
            _run(cfg, st, _result(0.5, 0.4, 0.6), 0)
            rx.codes = [503] * 5  # down for the whole first delivery (1 try + 4 retries)
            assert deliver(cfg, st, log=lambda s: None)["kept"] == 1
            assert len(st.outbox) == 1 and AlertState.load(st.path).outbox, "kept on disk"
            assert deliver(cfg, AlertState.load(st.path), log=lambda s: None)["sent"] == 1
            assert len(rx.delivered()) == 1 and len(rx.requests) == 6
        finally:
            os.environ.pop("TEST_HOOK_URL")


def test_pagerduty_events_v2_trigger_and_resolve_with_retries(tmp_path: Path) -> None:
    cfg = MonitorConfig.model_validate(
        {
            "rules": [
                {
                    "name": "var",
                    "statistic": "feature.variance_change",
                    "op": ">",
                    "threshold": 0.1,
                    "features": ["amount"],
                    "sinks": ["pd"],
                    "severity": "critical",
                }
            ],
            "sinks": {
                "pd": {
                    "type": "pagerduty",
                    "routing_key_env": "TEST_PD_KEY",
                    "url_env": "TEST_PD_URL",
                    "backoff_s": 0.01,
                }
            },
        }
    )
    res = results.result(
        {
            "2": results.version(
                rows=900,
                features={
                    "amount": {
                        "kind": "numeric",
                        "rows": 900,
                        "null_rate_change": {"estimate": 0.0, "n": 900},
                        "variance_change": {"estimate": 0.4, "low": 0.3, "high": 0.5, "n": 900},
                    }
                },
            )
        }
    )
    calm = results.result(
        {
            "2": results.version(
                rows=900,
                features={
                    "amount": {
                        "kind": "numeric",
                        "rows": 900,
                        "null_rate_change": {"estimate": 0.0, "n": 900},
                        "variance_change": {"estimate": 0.0, "low": -0.05, "high": 0.05, "n": 900},
                    }
                },
            )
        }
    )
    with http_receiver() as rx:
        os.environ.update(TEST_PD_KEY="routing-key-secret-123", TEST_PD_URL=rx.url + "/v2/enqueue")
        try:
            st = AlertState(tmp_path / "s.json")
            _run(cfg, st, res, 0)
            rx.codes = [429, 500]  # throttled, then a server error: retried both
            assert deliver(cfg, st, log=lambda s: None)["sent"] == 1
            _run(cfg, st, calm, 60)
            logs: list[str] = []
            assert deliver(cfg, st, log=logs.append)["sent"] == 1
            events = [r["json"] for r in rx.delivered()]
            assert [e["event_action"] for e in events] == ["trigger", "resolve"]
            assert events[0]["dedup_key"] == events[1]["dedup_key"] == "insight|var|v2"
            assert events[0]["routing_key"] == "routing-key-secret-123"
            assert (
                events[0]["payload"]["severity"] == "critical"
                and "amount" in events[0]["payload"]["summary"]
            )
            assert [r["code"] for r in rx.requests] == [429, 500, 202, 202]
            # A 400 is the request's fault: never retried, dropped, and said so.
            _run(cfg, st, res, 120)
            rx.codes = [400]
            logs.clear()
            assert deliver(cfg, st, log=logs.append)["dropped"] == 1
            assert rx.requests[-1]["code"] == 400 and len(rx.requests) == 5
            assert "dropped" in logs[0] and "routing-key-secret-123" not in " ".join(logs)
            assert "routing-key-secret-123" not in st.path.read_text(), (
                "no secret in the state file"
            )
        finally:
            for k in ("TEST_PD_KEY", "TEST_PD_URL"):
                os.environ.pop(k)


def test_slack_and_email_deliveries(tmp_path: Path) -> None:
    with http_receiver() as rx, smtp_receiver() as mail:
        cfg = MonitorConfig.model_validate(
            {
                "rules": [
                    {
                        "name": "ate",
                        "statistic": "uplift.ate_change",
                        "op": "<",
                        "threshold": -0.05,
                        "sinks": ["slack", "mail"],
                        "min_rows": 50,
                    }
                ],
                "sinks": {
                    "slack": {"type": "slack", "url_env": "TEST_SLACK_URL"},
                    "mail": {
                        "type": "email",
                        "smtp_port": mail.port,
                        "mail_to": ["oncall@example.com"],
                    },
                },
            }
        )
        ate_change = {"estimate": -0.4, "low": -0.6, "high": -0.2, "n": 400}
        res = results.result({"4": results.version(uplift={"rows": 400, "ate_change": ate_change})})
        os.environ["TEST_SLACK_URL"] = rx.url + "/services/T000/B000/XXXX"
        try:
            st = AlertState(tmp_path / "s.json")
            _run(cfg, st, res, 0)
            assert deliver(cfg, st, log=lambda s: None)["sent"] == 2
        finally:
            os.environ.pop("TEST_SLACK_URL")
        text = rx.delivered()[0]["json"]["text"]
        assert (
            text.startswith("[FIRING]") and "uplift.ate_change" in text and "insight|ate|v4" in text
        )
        (_sender, to, msg) = mail.messages[0]
        assert to == ["oncall@example.com"] and "Subject: [insight] FIRING: ate" in msg
        assert "X-Insight-Dedup-Key: insight|ate|v4" in msg


def test_retrain_once_per_incident_within_cooldown_and_budget(tmp_path: Path) -> None:
    cfg = _cfg(
        **{
            "for": "0s",
            "keep_firing_for": "0s",
            "action": "retrain",
            "retrain": {"cooldown": "1h", "budget": 2},
            "sinks": [],
        }
    )
    st = AlertState(tmp_path / "s.json")
    hot, cold = _result(0.5, 0.4, 0.6), _result(0.0, -0.1, 0.1)
    t = 0.0
    for _ in range(3):  # still firing: one incident, one retrain
        _run(cfg, st, hot, t)
        t += 60
    assert len(st.retrains) == 1
    _run(cfg, st, cold, t)
    _run(cfg, st, hot, t + 60)  # a new incident within the hour: cooldown
    key = "insight|score-shift|v3|-"
    assert len(st.retrains) == 1 and "cooldown" in (st.alerts[key].retrain or "")
    for k in range(1, 4):  # new incidents hours apart: the weekly budget of 2 caps them
        _run(cfg, st, cold, t + k * 7200)
        _run(cfg, st, hot, t + k * 7200 + 60)
    assert len(st.retrains) == 2 and "budget" in (st.alerts[key].retrain or "")


def test_bad_rules_are_clear_errors() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown statistic"):
        MonitorConfig.model_validate(
            {"rules": [{"name": "x", "statistic": "score.nope", "op": ">", "threshold": 1}]}
        )
    with pytest.raises(ValidationError, match="unknown sink"):
        MonitorConfig.model_validate(
            {
                "rules": [
                    {
                        "name": "x",
                        "statistic": "score.psi",
                        "op": ">",
                        "threshold": 1,
                        "sinks": ["pager"],
                    }
                ]
            }
        )
    with pytest.raises(ValidationError, match="not a duration"):
        MonitorConfig.model_validate(
            {
                "rules": [
                    {
                        "name": "x",
                        "statistic": "score.psi",
                        "op": ">",
                        "threshold": 1,
                        "for": "5 minutes",
                    }
                ]
            }
        )


def test_each_sink_has_its_own_config_type() -> None:
    """A field of another integration is an error naming it (one config type per sink)."""
    from pydantic import ValidationError

    from engine.config.monitor import EmailSink, PagerDutySink

    cfg = MonitorConfig.model_validate(
        {
            "sinks": {
                "pd": {"type": "pagerduty", "routing_key_env": "K"},
                "m": {"type": "email", "mail_to": ["a@b.c"]},
            }
        }
    )
    assert isinstance(cfg.sinks["pd"], PagerDutySink) and isinstance(cfg.sinks["m"], EmailSink)
    with pytest.raises(ValidationError, match="smtp_host"):
        MonitorConfig.model_validate(
            {"sinks": {"pd": {"type": "pagerduty", "routing_key_env": "K", "smtp_host": "x"}}}
        )
    with pytest.raises(ValidationError, match="routing_key_env"):
        MonitorConfig.model_validate({"sinks": {"pd": {"type": "pagerduty"}}})
    with pytest.raises(ValidationError, match="mail_to"):
        MonitorConfig.model_validate({"sinks": {"m": {"type": "email", "mail_to": []}}})


def test_the_monitor_result_is_a_typed_contract(tmp_path: Path) -> None:
    """The run's JSON reads back into the same typed result; a field nobody declared is an
    error, not a silently ignored key (a statistic is declared once, in engine.monitor.result)."""
    import pydantic

    feats = {
        "x": {"kind": "numeric", "rows": 9, "null_rate_change": {"estimate": 0.0, "n": 9}},
        "c": {
            "kind": "categorical",
            "rows": 9,
            "null_rate_change": {"estimate": None},
            "unseen_share": {"estimate": 0.1, "low": 0.0, "high": 0.3, "n": 9},
        },
    }
    res = results.result({"2": results.version(features=feats)}, problems=["seg: 1 modified"])
    p = tmp_path / "run.json"
    p.write_text(res.to_json())
    back = MonitorResult.load(p)
    assert back == res and back.dump()["window"]["from"] == 0.0
    assert type(back.models["2"].features["c"]).__name__ == "CategoricalFeature"
    bad = res.dump()
    bad["models"]["2"]["score"]["psi_typo"] = {"estimate": 1.0}
    with pytest.raises(pydantic.ValidationError, match="psi_typo"):
        MonitorResult.model_validate(bad)
    (j,) = [j for j in judge(_cfg(statistic="feature.unseen_share", threshold=0.5), back)][-1:]
    assert j.key == "insight|score-shift|v2|c" and j.value == 0.1 and not j.holds
