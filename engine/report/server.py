"""The live dashboard: the report page served on 127.0.0.1 (unless told otherwise), rebuilt
when the monitor history, the alert state or the control log changed, and reloading itself
every ``refresh_s`` seconds. Read-only (GET and HEAD; anything else is 405), except the
reviewer's page ``/review`` (engine.report.review_page), which takes verdicts from a named
token with the role reviewer. The report pages show aggregates only, so they need no token; a deployment that wants one
anyway sets ``token`` (``INSIGHT_DASHBOARD_TOKEN``) and every request must then carry it
(``Authorization: Bearer ...`` or ``?token=...`` once, which sets a cookie).
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from engine.config.project import ProjectConfig
from engine.workspace import Workspace


class Pages:
    """The current pages, rebuilt at most once per change of their inputs."""

    def __init__(
        self,
        cfg: ProjectConfig,
        ws: Workspace,
        model: str | None,
        refresh_s: int,
        log: Callable[[str], None],
    ) -> None:
        self.cfg, self.ws, self.model, self.refresh_s, self.log = cfg, ws, model, refresh_s, log
        self._lock = threading.Lock()
        self._stamp: tuple[float, ...] | None = None
        self._checked = 0.0
        self.pages: dict[str, tuple[str, bytes]] = {}
        self.built_at = 0.0

    def _inputs(self) -> tuple[float, ...]:
        from engine.monitor.store import monitor_dir

        m = monitor_dir(self.ws)
        paths = [m / "history.jsonl", m / "state.json", self.ws.audit / "control"]
        out = []
        for p in paths:
            try:
                out.append(p.stat().st_mtime)
            except OSError:
                out.append(0.0)
        # Registry changes (a new version, an alias) show at the latest after `refresh_s`.
        out.append(float(int(time.time() // max(self.refresh_s, 1))))
        return tuple(out)

    def get(self) -> dict[str, tuple[str, bytes]]:
        with self._lock:
            now = time.monotonic()
            if self.pages and now - self._checked < 1.0:
                return self.pages
            self._checked = now
            stamp = self._inputs()
            if stamp != self._stamp or not self.pages:
                from engine.report import build

                t = time.monotonic()
                data, page, cards = build(self.cfg, self.ws, self.model, refresh_s=self.refresh_s)
                html = "text/html; charset=utf-8"
                pages = {"/": (html, page.encode()), "/report.html": (html, page.encode())}
                pages["/data.json"] = (
                    "application/json",
                    json.dumps(data, default=str).encode(),
                )
                for href, text in cards.items():
                    pages["/" + href] = (html, text.encode())
                self.pages, self._stamp, self.built_at = pages, stamp, time.time()
                self.log(f"dashboard: pages rebuilt in {time.monotonic() - t:.1f} s")
            return self.pages


def allowed_hosts(bound: str) -> set[str]:
    """Host names a request may use: the bound address, and the loopback names where it is
    a loopback address."""
    out = {bound.strip("[]")}
    if bound in ("127.0.0.1", "localhost", "::1") or bound.startswith("127."):
        out |= {"127.0.0.1", "localhost", "::1"}
    return out


def token_ok(token: str | None, path: str, headers: Any) -> tuple[bool, str | None]:
    """Whether a request carries the token (query, bearer header or cookie); the token to
    set as a cookie when it came in the query."""
    if not token:
        return True, None
    q = parse_qs(urlparse(path).query).get("token", [None])[0]
    auth = headers.get("Authorization", "")
    cookie = headers.get("Cookie", "")
    given = [
        q,
        auth[7:] if auth.startswith("Bearer ") else None,
        *[c.split("=", 1)[1] for c in cookie.split("; ") if c.startswith("insight_token=")],
    ]
    # bytes, not str: compare_digest refuses non-ASCII text (a TypeError that dropped the
    # connection); any byte string is just a wrong token (a 401)
    want = token.encode("utf-8", "surrogateescape")
    ok = any(g and hmac.compare_digest(g.encode("utf-8", "surrogateescape"), want) for g in given)
    return ok, q if ok and q else None


def host_allowed(host: str | None, allowed: set[str] | frozenset[str]) -> bool:
    """The Host header names the bound address (or, on loopback, localhost): a page asked
    for under another name (DNS rebinding) is refused."""
    if host is None:
        return True  # HTTP/1.0 without Host: nothing to check
    return (urlparse(f"//{host}").hostname or "") in allowed


def current_pages(pages: Pages) -> tuple[dict[str, tuple[str, bytes]] | None, str]:
    """The pages, rebuilt if their inputs changed; on a failed rebuild the last good pages
    (a broken input must not take the server down), or None and why when there are none."""
    try:
        return pages.get(), ""
    except Exception as exc:
        pages.log(f"dashboard: rebuild failed: {type(exc).__name__}: {exc}")
        if pages.pages:
            return pages.pages, ""
        return None, f"the report could not be built: {type(exc).__name__}: {exc}\n"


def _csp(forms: bool) -> str:
    """Everything is inline: no script or style from anywhere else may run; a form posts
    only to this server, and only the review page has one."""
    return (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src data:; base-uri 'none'; "
        + ("form-action 'self'" if forms else "form-action 'none'")
    )


class _ReviewRoutes:
    """The review page's routes (engine.report.review_page), mixed into the handler: GET
    and POST ``/review``; any other POST is refused as the rest of the dashboard is
    read-only."""

    review_ws: Workspace
    path: str
    headers: Any
    rfile: Any

    def do_POST(self) -> None:
        if urlparse(self.path).path != "/review":
            return self._refuse()  # type: ignore[attr-defined,no-any-return]
        n = min(int(self.headers.get("Content-Length") or 0), 16_385)
        return self._review(self.rfile.read(n))

    def _review(self, posted: bytes | None) -> None:
        from engine.report.review_page import answer

        send = self._send  # type: ignore[attr-defined]
        if not self._host_ok():  # type: ignore[attr-defined]
            return send(403, "text/plain; charset=utf-8", b"wrong Host\n")  # type: ignore[no-any-return]
        code, ctype, body, cookie = answer(self.review_ws, self.path, self.headers, posted)
        send(code, ctype, body, cookie, forms=True, cookie_name="insight_reviewer")


def make_handler(
    pages: Pages, token: str | None, bound: str = "127.0.0.1"
) -> type[BaseHTTPRequestHandler]:
    allowed = allowed_hosts(bound)

    class Handler(_ReviewRoutes, BaseHTTPRequestHandler):
        server_version = "insight-dashboard"

        def log_message(self, format: str, *args: Any) -> None:  # quiet; no request log
            return

        def _authorized(self) -> tuple[bool, str | None]:
            return token_ok(token, self.path, self.headers)

        def _host_ok(self) -> bool:
            return host_allowed(self.headers.get("Host"), allowed)

        def _send(
            self,
            code: int,
            ctype: str,
            body: bytes,
            cookie: str | None = None,
            *,
            forms: bool = False,
            cookie_name: str = "insight_token",
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            # Everything is inline: no script or style from anywhere else may run.
            self.send_header("Content-Security-Policy", _csp(forms))
            if cookie:
                self.send_header(
                    "Set-Cookie", f"{cookie_name}={cookie}; HttpOnly; SameSite=Strict; Path=/"
                )
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if not self._host_ok():
                return self._send(
                    403,
                    "text/plain; charset=utf-8",
                    b"this dashboard answers only to the address it is bound to (Host header)\n",
                )
            if path == "/healthz":
                return self._send(200, "text/plain", b"ok\n")
            if path == "/review":
                return self._review(None)
            ok, cookie = self._authorized()
            if not ok:
                return self._send(
                    401,
                    "text/plain; charset=utf-8",
                    b"the dashboard needs its token: Authorization: Bearer <token>, or "
                    b"?token=<token> once (INSIGHT_DASHBOARD_TOKEN where it runs)\n",
                )
            current, failure = current_pages(pages)
            if current is None:
                return self._send(503, "text/plain; charset=utf-8", failure.encode())
            if path not in current:
                known = ", ".join(sorted(current))
                return self._send(
                    404, "text/plain; charset=utf-8", f"no page {path}; pages: {known}\n".encode()
                )
            ctype, body = current[path]
            self._send(200, ctype, body, cookie)

        do_HEAD = do_GET

        def _refuse(self) -> None:
            self._send(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                b"the dashboard is read-only: GET and HEAD only\n",
            )

        do_PUT = do_DELETE = do_PATCH = _refuse
        review_ws = pages.ws

    return Handler


def serve_dashboard(
    cfg: ProjectConfig,
    ws: Workspace,
    *,
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8050,
    refresh_s: int = 30,
    token: str | None = None,
    log: Callable[[str], None] = print,
) -> ThreadingHTTPServer:
    """Build the pages once (errors surface here, before the port opens), then return the
    server (bound, not yet serving: call ``serve_forever``)."""
    pages = Pages(cfg, ws, model, refresh_s, log)
    pages.get()
    server = ThreadingHTTPServer((host, port), make_handler(pages, token, host))
    server.daemon_threads = True
    return server


def dashboard_url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}/"
