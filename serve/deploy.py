"""Deploying the Serve app on the connected Ray cluster (loopback by default), waiting until
it answers, tearing it down, and writing it as a Serve config (``serve run``/``deploy``).

Used in-process by the demo, the tests, ``insight serve up --foreground`` and the detached
daemon (serve.daemon).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.project import ProjectConfig
from engine.errors import InsightError, StateError
from engine.workspace import Workspace
from serve.admin import admin_token
from serve.inputs import row_fields
from serve.settings import ServeSettings

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
    return ws.serve


def settings_for(
    cfg: ProjectConfig, ws: Workspace, *, alias: str = "champion", app: str = APP_NAME, **over: Any
) -> ServeSettings:
    """The app's settings for this project and workspace (``over``: any field replaced)."""
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
        "sensitive": list(cfg.sensitive),
        "rows": row_fields(cfg),
        "audit_inputs": sc.audit_inputs,
        "audit_fsync": sc.audit_fsync,
        "audit_format": sc.audit_format,
        "challenger_percent": sc.challenger_percent,
        "shadow": sc.shadow,
        "autoscaling": sc.autoscaling,
        "max_ongoing_requests": sc.max_ongoing_requests,
        "num_cpus": sc.replica_cpus,
    }
    args["consent"] = consent_settings(cfg, ws.root)
    args["seal"] = cfg.governance.erasure.seal_audit
    from engine.governance.roles import load_tokens

    args["tokens"] = load_tokens(ws.root)
    args.update(over)
    return ServeSettings.parse(args)


def consent_settings(cfg: ProjectConfig, root: Path) -> dict[str, Any] | None:
    """What replicas check before a decision, as the governance policy decides for the
    serving purpose (a policy that does not allow serving stops the deploy here)."""
    from engine.governance.enforce import decide

    d = decide(cfg, "serve", cfg.governance.purposes.serving, root=root)
    purposes = d.consent_purposes()
    if not purposes:
        return None
    c = cfg.governance.consent
    return {
        "purposes": purposes,
        "policy_version": d.policy_version,
        "consent": c.model_dump(mode="json") if c else None,
        "source_name": c.source if c else None,
        # the path absolute: replicas read it without the project file
        "source": cfg.sources[c.source]
        .model_copy(update={"path": str(cfg.resolve_path(cfg.sources[c.source].path, root))})
        .model_dump(mode="json")
        if c
        else None,
    }


def check_servable(cfg: ProjectConfig, ws: Workspace, alias: str) -> None:
    """Fail fast, before any replica starts, when the registry has nothing to serve."""
    import mlflow

    from engine.registry.models import resolve
    from engine.train.families import FAMILIES

    mlflow.set_tracking_uri(ws.tracking_uri)
    mlflow.set_registry_uri(ws.tracking_uri)
    ref = resolve(cfg.train.model_name, alias)  # StateError with the fix when missing
    if ref.family not in FAMILIES:
        raise StateError(
            f"{ref.name} v{ref.version} is a '{ref.family}' model; this engine serves "
            f"{', '.join(sorted(FAMILIES))}. Fix: serve a version of a known family "
            "(`insight models list`)."
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
    settings = settings_for(cfg, ws, alias=alias, app=app, **over)
    if fresh:
        Path(settings.rollout_path).unlink(missing_ok=True)
        kill_rollout(app)
    port = sc.port or free_port(sc.host)
    serve.start(proxy_location=sc.proxy_location, http_options={"host": sc.host, "port": port})
    serve.run(build_app(settings), name=app, route_prefix=sc.route_prefix, blocking=False)
    ep = Endpoint(sc.host, port, sc.route_prefix)
    wait_healthy(ep.url)
    return ep


def kill_rollout(app: str) -> None:
    """End the app's rollout actor (detached: it outlives Serve otherwise)."""
    import ray

    from serve.split import NAMESPACE, actor_name

    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(actor_name(app), namespace=NAMESPACE), no_restart=True)


def serve_down(app: str = APP_NAME) -> None:
    from ray import serve

    serve.shutdown()
    kill_rollout(app)


def deploy_config(
    cfg: ProjectConfig, ws: Workspace, *, port: int = 8000, alias: str = "champion"
) -> dict[str, Any]:
    """A Serve config (``serve run FILE`` / ``serve deploy FILE``) for this project and
    workspace, with absolute paths. It carries the admin token's SHA-256, never the token."""
    repo = str(Path(__file__).resolve().parent.parent)
    settings = settings_for(cfg, ws, alias=alias)
    return {
        "proxy_location": cfg.serve.proxy_location,
        "http_options": {"host": cfg.serve.host, "port": port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": cfg.serve.route_prefix,
                "import_path": "serve.app:build_app",
                "runtime_env": {"env_vars": {"PYTHONPATH": repo}},
                "args": settings.model_dump(mode="json"),
            }
        ],
    }
