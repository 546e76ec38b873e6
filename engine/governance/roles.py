"""Who may do what: named tokens with a role (viewer < operator < admin) for the served
apps' admin routes.

``insight tokens add --name ana --role operator`` prints a new token once; the workspace
keeps only its SHA-256 (``secrets/tokens.json``, mode 0600), and replicas see only those
hashes. A presented token is hashed and compared with every stored hash in constant time
(``hmac.compare_digest``, no early exit). Tokens are never logged: the audit records name
the token's holder and role.

Routes: ``GET /admin/status`` needs viewer; ``POST /admin/traffic`` and
``/admin/promote`` need operator. The project's single admin token
(``INSIGHT_ADMIN_TOKEN``) is the role admin, holder ``admin-token``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, StateError


class Role(enum.IntEnum):
    """Each role can do what the ones below it can: a viewer reads; a reviewer also gives
    verdicts on the review queue; an operator also changes serving and consents; an admin
    also erases, applies retention and manages tokens."""

    VIEWER = 1
    REVIEWER = 2
    OPERATOR = 3
    ADMIN = 4

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ConfigError(
                f"role {text!r} is not one of viewer, reviewer, operator, admin. Fix: --role "
                "operator."
            ) from None


def _path(root: Path) -> Path:
    return root / "secrets" / "tokens.json"


def load_tokens(root: Path) -> dict[str, dict[str, str]]:
    """SHA-256 of each token -> its holder and role."""
    p = _path(root)
    if not p.is_file():
        return {}
    data = json.loads(p.read_text())
    return {h: {"name": v["name"], "role": v["role"]} for h, v in data.items()}


def _save(root: Path, data: dict[str, Any]) -> None:
    from engine.workspace import atomic_write_bytes

    p = _path(root)
    atomic_write_bytes(p, json.dumps(data, indent=1, sort_keys=True).encode())
    p.chmod(0o600)


def add_token(root: Path, name: str, role: str) -> str:
    """A new token for ``name`` with ``role``; only its hash is kept. Returns the token."""
    r = Role.parse(role)
    if not name.strip() or not all(ch.isalnum() or ch in "-_." for ch in name.strip()):
        raise ConfigError(f"token name {name!r}: letters, digits, - _ . only. Fix: --name ana.")
    p = _path(root)
    data = json.loads(p.read_text()) if p.is_file() else {}
    if any(v["name"] == name.strip() for v in data.values()):
        raise ConfigError(
            f"a token named {name.strip()!r} exists. Fix: `insight tokens revoke --name "
            f"{name.strip()}` first, or choose another name."
        )
    token = secrets.token_urlsafe(32)
    h = hashlib.sha256(token.encode()).hexdigest()
    data[h] = {"name": name.strip(), "role": r.name.lower(), "created": time.time()}
    _save(root, data)
    return token


def revoke_token(root: Path, name: str) -> None:
    p = _path(root)
    data = json.loads(p.read_text()) if p.is_file() else {}
    keep = {h: v for h, v in data.items() if v["name"] != name.strip()}
    if len(keep) == len(data):
        raise StateError(f"no token named {name.strip()!r}. Fix: `insight tokens list`.")
    _save(root, keep)


def holder(tokens: dict[str, dict[str, str]], presented: str) -> tuple[str, Role] | None:
    """The holder and role of a presented token, comparing its hash with every stored one
    (each comparison constant-time; all are made, found or not)."""
    digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).hexdigest()
    found: tuple[str, Role] | None = None
    for h, v in tokens.items():
        if hmac.compare_digest(digest, h) and found is None:
            found = (v["name"], Role.parse(v["role"]))
    return found


TOKEN_ENV = "INSIGHT_TOKEN"


def cli_actor(root: Path, need: str, by: str | None = None) -> str:
    """Who runs a state-changing command. A workspace without named tokens is one person's:
    the actor is ``by`` or the login name. Once tokens exist, the command needs
    ``INSIGHT_TOKEN`` holding one whose role is at least ``need``, and the actor is its
    holder (a :class:`PolicyError` otherwise, naming the role and the fix)."""
    import getpass
    import os

    from engine.errors import PolicyError

    tokens = load_tokens(root)
    if not tokens:
        if by:
            return by
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"
    presented = os.environ.get(TOKEN_ENV, "")
    who = holder(tokens, presented.strip()) if presented.strip() else None
    if who is None:
        raise PolicyError(
            f"this workspace has named tokens, so this command needs yours: set {TOKEN_ENV} "
            f"(`insight tokens add --name NAME --role {need}` makes one; an admin runs it)."
        )
    if who[1] < Role.parse(need):
        raise PolicyError(
            f"'{who[0]}' holds the role {who[1].name.lower()}; this command needs {need} or "
            "above. Fix: use a token with that role."
        )
    return who[0]
