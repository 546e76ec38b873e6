"""Starting Ray: a lean local cluster by default, or an existing cluster by address."""

from __future__ import annotations

import logging
import os

from engine.rayenv import ray_env
from engine.workspace import Workspace

__all__ = ["ray_env", "start_ray", "stop_ray"]


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
    ctx = ray.init(
        num_cpus=num_cpus or os.cpu_count() or 2,
        include_dashboard=False,
        object_store_memory=object_store_mb * 1024 * 1024,
        _temp_dir=str(ws.ray_temp_dir()),
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        configure_logging=True,
        logging_level=logging.WARNING,
    )
    info = getattr(ctx, "address_info", {})
    return {"address": info.get("gcs_address"), "started": True}


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
