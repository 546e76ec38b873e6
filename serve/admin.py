"""The admin side of a running app: its bearer token and calls to its admin routes."""

from __future__ import annotations

import os
import secrets
from typing import Any

from engine.config.project import ProjectConfig
from engine.errors import InsightError
from engine.workspace import Workspace, atomic_write_bytes


def admin_token(cfg: ProjectConfig, ws: Workspace, *, create: bool = False) -> str | None:
    """The admin bearer token: ``$INSIGHT_ADMIN_TOKEN`` (the variable named by
    ``serve.admin_token_env``), else ``<workspace>/secrets/admin.token`` (0600), created by
    ``serve up`` when neither exists. Replicas only ever see its SHA-256."""
    env = os.environ.get(cfg.serve.admin_token_env)
    if env:
        return env
    path = ws.secrets / "admin.token"
    if path.is_file():
        return path.read_text().strip()
    if not create:
        return None
    atomic_write_bytes(path, secrets.token_urlsafe(32).encode())
    path.chmod(0o600)
    return path.read_text().strip()


def admin_call(
    url: str, token: str | None, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    """One call to an admin route; a 4xx/5xx becomes an InsightError with the app's detail."""
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
