"""The detached server behind ``insight serve up``, both sides.

The process (``python -m serve.daemon``, :func:`main`) owns a local Ray cluster and the
app, records itself in ``<workspace>/serve/state.json``, and on SIGTERM shuts both down.
The client side (:func:`start_daemon`, :func:`read_state`, :func:`stop_daemon`) starts it
in its own session, reads that file, and stops it by sending SIGTERM to that one PID, so no
other cluster on the machine is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from engine.config.project import ProjectConfig
from engine.errors import InsightError, StateError
from engine.workspace import Workspace, atomic_write_bytes
from serve.deploy import serve_dir


def state_path(ws: Workspace) -> Path:
    return serve_dir(ws) / "state.json"


def read_state(ws: Workspace) -> dict[str, Any] | None:
    p = state_path(ws)
    if not p.is_file():
        return None
    st: dict[str, Any] = json.loads(p.read_text())
    if not _alive(int(st["pid"])):
        p.unlink(missing_ok=True)  # a daemon that died without cleaning up
        return None
    return st


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_daemon(
    project: Path, ws: Workspace, *, alias: str, timeout_s: float = 300
) -> dict[str, Any]:
    """Start ``python -m serve.daemon`` detached; return its state once /healthz answers."""
    if (st := read_state(ws)) is not None:
        raise StateError(
            f"the app is already up at {st['url']} (pid {st['pid']}). Fix: `insight serve down` first."
        )
    log = serve_dir(ws) / "daemon.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "serve.daemon",
        "--project",
        str(project),
        "--workspace",
        str(ws.root),
        "--alias",
        alias,
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = log.read_text(errors="replace").strip().splitlines()
            errors = [ln for ln in lines if ln.startswith("error: ")]
            if errors:
                raise InsightError(errors[-1].removeprefix("error: ") + f" (log: {log})")
            raise InsightError(
                f"the serve daemon exited with code {proc.returncode} before answering. "
                f"Last lines of {log}:\n" + "\n".join(lines[-15:])
            )
        st = read_state(ws)
        if st is not None and st.get("ready"):
            return st
        time.sleep(0.5)
    raise InsightError(
        f"the serve daemon (pid {proc.pid}) was not ready in {timeout_s:.0f} s; see {log}."
    )


def stop_daemon(ws: Workspace, timeout_s: float = 90) -> dict[str, Any] | None:
    """SIGTERM the daemon recorded in state.json and wait for it to exit; None if none ran."""
    st = read_state(ws)
    if st is None:
        return None
    pid = int(st["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.3)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)  # its own session: only what it started
    state_path(ws).unlink(missing_ok=True)
    return st


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
    from serve.deploy import check_servable, serve_down, serve_up

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
