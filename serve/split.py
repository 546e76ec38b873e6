"""Rollout state shared by every replica: which versions serve, the challenger's traffic
share, shadow mode, and a generation number.

One named Ray actor per app holds it and persists it (atomic file write) so a restarted
actor resumes where it was. Replicas poll it every ``POLL_S`` from a thread, load any model
version they lack *before* switching, then swap one reference: a change of split or a
promotion is a reconfigure of live replicas, never a restart, and no request sees a
half-applied state. Routing is sticky: a row goes to the challenger when
``bucket(entity id) < challenger_percent``, with ``bucket`` a hash of the id in [0, 100).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import ray

from engine.workspace import atomic_write_bytes

POLL_S = 0.5
NAMESPACE = "insight"


def actor_name(app: str) -> str:
    return f"insight-rollout-{app}"


def bucket(key: str, salt: str) -> float:
    """Position of ``key`` in [0, 100): the same key always lands in the same place."""
    h = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 * 100.0


def validate_change(state: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    allowed = {"champion", "challenger", "challenger_percent", "shadow"}
    unknown = sorted(set(change) - allowed)
    if unknown:
        raise ValueError(f"unknown rollout field(s) {unknown}; allowed: {sorted(allowed)}")
    new = {**state, **change}
    pct = new.get("challenger_percent", 0.0)
    if not isinstance(pct, int | float) or isinstance(pct, bool) or not 0.0 <= pct <= 100.0:
        raise ValueError(f"challenger_percent must be a number in [0, 100], got {pct!r}")
    if (pct > 0 or new.get("shadow")) and not new.get("challenger"):
        raise ValueError("a traffic share or shadow mode needs a challenger version")
    if not new.get("champion"):
        raise ValueError("a champion version is needed")
    return new


@ray.remote(num_cpus=0, max_restarts=-1)
class RolloutStore:
    def __init__(self, path: str, initial: dict[str, Any]) -> None:
        self.path = Path(path)
        if self.path.is_file():
            self.state = json.loads(self.path.read_text())
        else:
            self.state = {**initial, "generation": 1, "updated_at": _now()}
            self._save()
        self.seen: dict[str, dict[str, Any]] = {}

    def _save(self) -> None:
        atomic_write_bytes(self.path, json.dumps(self.state, indent=2).encode())

    def get(self, replica: str = "", pid: int = 0, applied: int = 0) -> dict[str, Any]:
        if replica:
            self.seen[replica] = {"pid": pid, "applied": applied, "seen": time.time()}
        return dict(self.state)

    def set(self, change: dict[str, Any]) -> dict[str, Any]:
        new = validate_change(self.state, change)
        new["generation"] = int(self.state["generation"]) + 1
        new["updated_at"] = _now()
        self.state = new
        self._save()
        return dict(self.state)

    def replicas(self, max_age_s: float = 5.0) -> dict[str, dict[str, Any]]:
        now = time.time()
        return {r: v for r, v in self.seen.items() if now - v["seen"] <= max_age_s}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def get_or_create(app: str, path: str, initial: dict[str, Any]) -> Any:
    return RolloutStore.options(  # type: ignore[attr-defined]
        name=actor_name(app), namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(path, initial)
