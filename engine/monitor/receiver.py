"""Local receivers on 127.0.0.1 for the alert sinks, for the demo and the tests (no
service outside this machine can be reached, so these stand in for Slack, PagerDuty and a
mail server, speaking their protocols): an HTTP server that records every request and
answers the status codes queued for it (429, 500, 400, ...; 202 otherwise), and an SMTP
server (aiosmtpd, a development dependency) that records every message."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HTTPReceiver:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.codes: list[int] = []  # answered in order; 202 once empty
        self.delay_s = 0.0
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                import time

                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if rec.delay_s:
                    time.sleep(rec.delay_s)
                with rec.lock:
                    code = rec.codes.pop(0) if rec.codes else 202
                    rec.requests.append(
                        {"path": self.path, "code": code, "json": json.loads(body or b"null")}
                    )
                self.send_response(code)
                if code == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status":"ok"}' if code < 300 else b'{"error":"no"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                r for r in self.requests if r["code"] < 300 and (path is None or r["path"] == path)
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def http_receiver() -> Iterator[HTTPReceiver]:
    r = HTTPReceiver()
    try:
        yield r
    finally:
        r.close()


@contextmanager
def smtp_receiver() -> Iterator[Any]:
    """aiosmtpd on a free port; ``.messages`` holds (envelope from, to, message text)."""
    import socket

    from aiosmtpd.controller import Controller

    class Handler:
        def __init__(self) -> None:
            self.messages: list[tuple[str, list[str], str]] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages.append(
                (
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.content.decode("utf-8", "replace"),
                )
            )
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    h = Handler()
    c = Controller(h, hostname="127.0.0.1", port=port)
    c.start()
    try:
        h.port = port  # type: ignore[attr-defined]
        yield h
    finally:
        c.stop()
