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


def authorize(
    tokens: dict[str, dict[str, str]], admin_sha256: str | None, authorization: str, need: str
) -> tuple[str, str]:
    """The caller of an admin route, by the ``Authorization`` header: their holder name
    and role if the role is at least ``need`` (engine.governance.roles; the project's admin
    token is the role admin, holder ``admin-token``). 401 without a known token, compared
    in constant time; 403 with too small a role. Every served app's admin routes use it."""
    from fastapi import HTTPException

    from engine.governance.roles import Role, holder

    known = dict(tokens)
    if admin_sha256:
        known[admin_sha256] = {"name": "admin-token", "role": "admin"}
    if not known:
        raise HTTPException(
            401,
            "admin routes are disabled: no admin token was configured. Fix: set "
            "INSIGHT_ADMIN_TOKEN before `insight serve up`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    scheme, _, token = authorization.partition(" ")
    who = holder(known, token.strip()) if scheme.lower() == "bearer" else None
    if who is None:
        raise HTTPException(
            401,
            "missing or wrong admin token. Fix: send 'Authorization: Bearer <token>' "
            "with the value of INSIGHT_ADMIN_TOKEN or a token of `insight tokens add`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    name, role = who
    if role < Role.parse(need):
        raise HTTPException(
            403,
            f"'{name}' holds the role {role.name.lower()}; this needs {need} or above. "
            "Fix: use a token with that role (`insight tokens add --role ...`).",
        )
    return name, role.name.lower()


def admin_record(actor: tuple[str, str], action: str, change: Any, model: str) -> dict[str, Any]:
    """An admin action's audit record: its actor and role, never a token."""
    import time

    return {
        "kind": "admin",
        "action": action,
        "actor": actor[0],
        "role": actor[1],
        "change": change,
        "model": model,
        "time": time.time(),
    }
