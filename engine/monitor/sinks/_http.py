"""JSON over HTTP with retries: backoff on 429 and 5xx (and on connection errors), never on
another 4xx. ``Retry-After`` is honoured (capped)."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from engine.config.monitor import _Sink


class SinkError(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def secret(name: str | None, what: str) -> str:
    value = os.environ.get(name or "")
    if not value:
        raise SinkError(
            f"{what}: environment variable {name} is not set. Fix: export it before the monitor "
            "runs (secrets never go in the project file).",
            retryable=False,
        )
    return value


def post_json(cfg: _Sink, url: str, body: dict[str, Any], what: str) -> int:
    """POST ``body``; the status on success. Errors name ``what``, never the URL (it may
    hold a token, as Slack's webhook URLs do)."""
    import httpx

    attempt = 0
    while True:
        try:
            r = httpx.post(url, json=body, timeout=cfg.timeout_s)
            code = r.status_code
            if code < 300:
                return code
            retryable = code == 429 or code >= 500
            msg = f"{what} answered {code}"
            wait = r.headers.get("retry-after")
        except httpx.HTTPError as exc:
            retryable, msg, wait = True, f"{what} unreachable ({type(exc).__name__})", None
        if not retryable or attempt >= cfg.retries:
            raise SinkError(
                msg + (f" after {attempt + 1} attempts" if retryable else ""), retryable
            )
        delay = cfg.backoff_s * (2**attempt)
        if wait is not None:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(wait), 30.0))
        time.sleep(delay)
        attempt += 1
