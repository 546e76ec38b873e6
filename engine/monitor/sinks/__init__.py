"""Alert sinks: one small module each, listed here (no registration by import).

``send(name, cfg, note)`` delivers one notification (a firing or a resolve) or raises
:class:`SinkError`; ``retryable`` says whether trying again later could help (a 429, a 5xx,
a refused connection) or not (a 400: the request is wrong and will stay wrong). Secrets come
from the environment at send time and are never in a message or an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.config.monitor import SinkConfig
from engine.monitor.sinks import email, pagerduty, slack, webhook
from engine.monitor.sinks._http import SinkError

# The explicit list: a sink is one module and one config type (engine.config.monitor); the
# config's `type` picks the module, so each send takes its own config type.
SINKS: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "slack": slack.send,
    "pagerduty": pagerduty.send,
    "email": email.send,
    "webhook": webhook.send,
}

__all__ = ["SINKS", "SinkError", "send"]


def send(cfg: SinkConfig, note: dict[str, Any]) -> None:
    """Deliver one notification with the module its config type names."""
    SINKS[cfg.type](cfg, note)
