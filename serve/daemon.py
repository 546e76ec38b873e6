"""The detached server behind ``insight serve up``: owns a local Ray cluster and the app,
records itself in ``<workspace>/serve/state.json``, and on SIGTERM shuts both down."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from pathlib import Path

from engine.config import ProjectConfig
from engine.workspace import Workspace, atomic_write_bytes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--alias", default="champion")
    a = ap.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    from engine.errors import InsightError
    from engine.raycluster import start_ray, stop_ray
    from serve.control import check_servable, serve_down, serve_up, state_path

    try:
        cfg = ProjectConfig.load(a.project)
        ws = Workspace(a.workspace).ensure()
        check_servable(cfg, ws, a.alias)
    except InsightError as exc:
        print(f"error: {exc}", flush=True)  # the CLI shows this line
        return 2
    path = state_path(ws)
    info = start_ray(ws)
    try:
        ep = serve_up(cfg, ws, alias=a.alias)
        state = {
            "pid": os.getpid(),
            "url": ep.url,
            "ray_address": info.get("address"),
            "project": str(a.project.resolve()),
            "started_at": time.time(),
            "ready": True,
        }
        atomic_write_bytes(path, json.dumps(state, indent=2).encode())
        print(f"serving at {ep.url}", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        path.unlink(missing_ok=True)
        try:
            serve_down()
        finally:
            stop_ray()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
