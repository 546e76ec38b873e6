"""Starting, inspecting and stopping the Serve app (loopback by default).

Two ways to run it:

- in this process (``serve_up``/``serve_down``): the demo, the tests, ``insight serve up
  --foreground``;
- detached (``start_daemon``/``stop_daemon``): ``insight serve up`` starts ``python -m
  serve.daemon`` in its own session, which owns a local Ray cluster and the app and records
  itself in ``<workspace>/serve/state.json``; ``insight serve status`` reads that file and
  asks the app over HTTP; ``insight serve down`` sends SIGTERM to that one process, by
  its PID, which shuts down Serve and the Ray cluster it started; no other cluster on the
  machine is touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import ProjectConfig
from engine.errors import InsightError, StateError
from engine.workspace import Workspace, atomic_write_bytes

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


def serve_dir(ws: Workspace) -> Path:
    return ws.root / "serve"


def admin_token(cfg: ProjectConfig, ws: Workspace, *, create: bool = False) -> str | None:
    """The admin bearer token: ``$INSIGHT_ADMIN_TOKEN`` (the variable named by
    ``serve.admin_token_env``), else ``<workspace>/secrets/admin.token`` (0600), created by
    ``serve up`` when neither exists. Replicas only ever see its SHA-256."""
    env = os.environ.get(cfg.serve.admin_token_env)
    if env:
        return env
    path = ws.root / "secrets" / "admin.token"
    if path.is_file():
        return path.read_text().strip()
    if not create:
        return None
    atomic_write_bytes(path, secrets.token_urlsafe(32).encode())
    path.chmod(0o600)
    return path.read_text().strip()


def app_args(
    cfg: ProjectConfig, ws: Workspace, *, alias: str = "champion", app: str = APP_NAME, **over: Any
) -> dict[str, Any]:
    """The args of ``serve.app:build_app`` for this project (also what config.yaml holds)."""
    from engine.features.online import online_root

    sc = cfg.serve
    pointer = online_root(ws, cfg.name) / "CURRENT"
    online = str(pointer.parent / pointer.read_text().strip()) if pointer.is_file() else None
    token = admin_token(cfg, ws, create=True)
    keys = {e.key for e in cfg.entities.values()}
    pii_cols = {p.split(".", 1)[1] for p in cfg.pii}
    args: dict[str, Any] = {
        "tracking_uri": ws.tracking_uri,
        "model": cfg.train.model_name,
        "champion_alias": alias,
        "challenger_alias": "challenger",
        "threshold": sc.threshold,
        "max_rows": sc.max_rows_per_request,
        "online_path": online,
        "audit_dir": str(ws.audit / app),
        "rollout_path": str(serve_dir(ws) / f"rollout-{app}.json"),
        "workspace": str(ws.root),
        "admin_token_sha256": hashlib.sha256(token.encode()).hexdigest() if token else None,
        "batching": sc.batching,
        "max_batch_size": sc.max_batch_size,
        "batch_wait_timeout_s": sc.batch_wait_timeout_s,
        "app": app,
        "hash_entity_ids": bool(keys & pii_cols),
        "audit_inputs": sc.audit_inputs,
        "audit_fsync": sc.audit_fsync,
        "challenger_percent": sc.challenger_percent,
        "shadow": sc.shadow,
        "autoscaling": sc.autoscaling.model_dump(),
        "max_ongoing_requests": sc.max_ongoing_requests,
        "num_cpus": sc.replica_cpus,
    }
    args.update(over)
    return args


def check_servable(cfg: ProjectConfig, ws: Workspace, alias: str) -> None:
    """Fail fast, before any replica starts, when the registry has nothing to serve."""
    import mlflow

    from engine.registry.models import resolve

    mlflow.set_tracking_uri(ws.tracking_uri)
    mlflow.set_registry_uri(ws.tracking_uri)
    ref = resolve(cfg.train.model_name, alias)  # StateError with the fix when missing
    if ref.family not in ("xgboost", "logreg"):
        raise StateError(
            f"{ref.name} v{ref.version} is a '{ref.family}' model; serving knows xgboost and logreg."
        )


def wait_healthy(url: str, timeout_s: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/healthz", timeout=5)
            if r.status_code == 200:
                return
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise InsightError(
        f"the serve app did not answer on {url}/healthz in {timeout_s:.0f} s (last: {last})."
    )


def serve_up(
    cfg: ProjectConfig,
    ws: Workspace,
    *,
    alias: str = "champion",
    app: str = APP_NAME,
    fresh: bool = True,
    **over: Any,
) -> Endpoint:
    """Deploy the model app on the connected Ray cluster and wait until it answers.

    ``fresh``: start the rollout from the registry's aliases (drop a saved split)."""
    from ray import serve

    from serve.app import build_app

    check_servable(cfg, ws, alias)
    sc = cfg.serve
    args = app_args(cfg, ws, alias=alias, app=app, **over)
    if fresh:
        Path(args["rollout_path"]).unlink(missing_ok=True)
        _kill_rollout(app)
    port = sc.port or free_port(sc.host)
    serve.start(http_options={"host": sc.host, "port": port})
    serve.run(build_app(args), name=app, route_prefix=sc.route_prefix, blocking=False)
    ep = Endpoint(sc.host, port, sc.route_prefix)
    wait_healthy(ep.url)
    return ep


def _kill_rollout(app: str) -> None:
    import ray

    from serve.rollout import NAMESPACE, actor_name

    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(actor_name(app), namespace=NAMESPACE), no_restart=True)


def serve_down(app: str = APP_NAME) -> None:
    from ray import serve

    serve.shutdown()
    _kill_rollout(app)


# ---- detached -------------------------------------------------------------------------


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


def admin_call(
    url: str, token: str | None, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=60)
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        raise InsightError(f"{method} {path} answered {r.status_code}: {detail}")
    return r.json()


def deploy_config(
    cfg: ProjectConfig, ws: Workspace, *, port: int = 8000, alias: str = "champion"
) -> dict[str, Any]:
    """A Serve config (``serve run FILE`` / ``serve deploy FILE``) for this project and
    workspace, with absolute paths. It carries the admin token's SHA-256, never the token."""
    repo = str(Path(__file__).resolve().parent.parent)
    args = app_args(cfg, ws, alias=alias)
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": cfg.serve.host, "port": port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": cfg.serve.route_prefix,
                "import_path": "serve.app:build_app",
                "runtime_env": {"env_vars": {"PYTHONPATH": repo}},
                "args": args,
            }
        ],
    }
