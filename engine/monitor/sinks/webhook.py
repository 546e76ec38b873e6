"""Generic webhook: the notification itself as JSON, to the URL in ``url_env``."""

from __future__ import annotations

from typing import Any

from engine.config.monitor import WebhookSink
from engine.monitor.sinks._http import post_json, secret


def send(cfg: WebhookSink, note: dict[str, Any]) -> None:
    post_json(cfg, secret(cfg.url_env, "webhook"), note, "webhook")
