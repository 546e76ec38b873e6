"""Starting Ray: a lean local cluster by default, or an existing cluster by address."""

from __future__ import annotations

import logging
import os
from typing import Any

from engine.rayenv import ray_env
from engine.workspace import Workspace

__all__ = ["ray_env", "ray_wanted", "start_ray", "stop_ray"]


def start_ray(
    ws: Workspace,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_mb: int = 384,
) -> dict[str, object]:
    """``ray.init`` once per process. Joins a cluster when an address is given, the
    workspace's profile names one, or ``RAY_ADDRESS`` is set (inside a Ray job); otherwise a
    private local cluster: loopback, no dashboard, small object store."""
    import ray

    ray_env()
    address = address or ws.ray_address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return {"address": ray.get_runtime_context().gcs_address, "started": False}
    if address:
        try:
            ray.init(address=address, log_to_driver=True)
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            from engine.errors import ServiceError

            raise ServiceError(
                f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0][:300]}. "
                "Fix: check that its head is up and the address (--address, the profile's "
                "ray:, or RAY_ADDRESS); with token auth export RAY_AUTH_TOKEN."
            ) from None
        return {"address": address, "started": False}
    temp = str(ws.ray_temp_dir())
    kw: dict[str, Any] = {
        "num_cpus": num_cpus or os.cpu_count() or 2,
        "include_dashboard": False,
        "object_store_memory": object_store_mb * 1024 * 1024,
        "_temp_dir": temp,
        "log_to_driver": False,
        "_node_ip_address": "127.0.0.1",
        "configure_logging": True,
        "logging_level": logging.WARNING,
    }
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            ctx = ray.init(**kw)
            break
        except Exception as exc:
            # Ray gives a new node 30 s (fixed in ray._private.node) to register; on a
            # loaded machine its Python agents can take longer to import. The half-started
            # node's processes are this process's children: end them, then start again.
            if "timed out during startup" not in str(exc) or attempt == START_ATTEMPTS:
                raise
            _end_children_under(temp)
            log.warning(
                "Ray's local node did not register within Ray's 30 s start-up limit (a "
                "loaded machine?); starting it again (attempt %d of %d)",
                attempt + 1,
                START_ATTEMPTS,
            )
    info = getattr(ctx, "address_info", {})
    return {"address": info.get("gcs_address"), "started": True}


START_ATTEMPTS = 2
log = logging.getLogger(__name__)


def _end_children_under(temp: str) -> None:
    """End the processes this process started for a Ray session under ``temp`` (its GCS,
    raylet and agents carry the folder on their command lines) and wait for them."""
    import psutil

    from engine.procs import children_alive

    mine = []
    for p in children_alive():
        try:
            if temp in " ".join(p.cmdline()):
                mine.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for p in mine:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(mine, timeout=10)


def ray_wanted(ws: Workspace) -> bool:
    """Whether work that could run in this process should go to Ray anyway: Ray is already
    up here, or a cluster is named (the profile's ``ray:``, ``RAY_ADDRESS``, so every
    submitted job). A caller adds its own size threshold (batch scoring, batch forecast)."""
    import sys

    ray = sys.modules.get("ray")  # not imported: not up (and no import to pay)
    if ray is not None and ray.is_initialized():
        return True
    return bool(ws.ray_address or os.environ.get("RAY_ADDRESS"))


def stop_ray() -> None:
    import sys

    ray = sys.modules.get("ray")  # not imported: nothing started (and no import to pay)
    if ray is not None and ray.is_initialized():
        ray.shutdown()
