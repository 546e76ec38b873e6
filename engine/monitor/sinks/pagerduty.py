"""PagerDuty Events API v2: ``trigger`` when a group of alerts fires (and again, with the
same dedup key, when its members change or it repeats) and ``resolve`` when it resolves,
all with the group's dedup key, so PagerDuty keeps them as one incident.
The routing key comes from ``routing_key_env``; ``url_env`` may point elsewhere (a test
receiver, a proxy); the default is PagerDuty's endpoint."""

from __future__ import annotations

import os
from typing import Any

from engine.config.monitor import PagerDutySink
from engine.monitor.sinks._http import post_json, secret

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}


def event(note: dict[str, Any], routing_key: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": note["action"],
        "dedup_key": note["dedup_key"],
    }
    if note["action"] == "trigger":
        body["payload"] = {
            "summary": note["summary"][:1024],
            "source": note.get("source", "insight-engine"),
            "severity": _SEVERITY.get(note.get("severity", "warning"), "warning"),
            "custom_details": {
                k: note.get(k)
                for k in (
                    "kind",
                    "rule",
                    "model",
                    "version",
                    "slice",
                    "statistic",
                    "threshold",
                    "alerts",
                    "added",
                    "removed",
                    "first_step",
                    "link",
                    "window",
                )
            },
        }
    return body


def send(cfg: PagerDutySink, note: dict[str, Any]) -> None:
    url = os.environ.get(cfg.url_env or "") or EVENTS_URL
    post_json(cfg, url, event(note, secret(cfg.routing_key_env, "pagerduty")), "pagerduty")
