"""Starting and stopping the Serve app (loopback by default), for the CLI and jobs."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from engine.config import ProjectConfig
from engine.errors import InsightError
from engine.workspace import Workspace

APP_NAME = "insight"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    prefix: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix.rstrip('/')}"


def serve_up(cfg: ProjectConfig, ws: Workspace, *, alias: str = "champion") -> Endpoint:
    """Deploy the model app on the connected Ray cluster and wait until it answers."""
    import httpx
    from ray import serve

    from serve.app import build_app

    sc = cfg.serve
    port = sc.port or free_port(sc.host)
    serve.start(http_options={"host": sc.host, "port": port})
    app = build_app(
        {
            "tracking_uri": ws.tracking_uri,
            "model": cfg.train.model_name,
            "alias": alias,
            "threshold": sc.threshold,
            "max_rows": sc.max_rows_per_request,
        }
    )
    serve.run(app, name=APP_NAME, route_prefix=sc.route_prefix, blocking=False)
    ep = Endpoint(sc.host, port, sc.route_prefix)
    deadline = time.monotonic() + 120
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{ep.url}/healthz", timeout=5)
            if r.status_code == 200:
                return ep
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise InsightError(f"the serve app did not answer on {ep.url}/healthz in 120 s (last: {last}).")


def serve_down() -> None:
    from ray import serve

    serve.shutdown()
