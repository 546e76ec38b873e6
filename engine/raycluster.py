"""Starting Ray: a lean local cluster by default, or an existing cluster by address."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from engine.workspace import Workspace


def ray_env() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Token auth only where a token exists; purely local clusters need none (STACK.md).
    # A token in the environment (RAY_AUTH_TOKEN, e.g. from a cluster's secret) means token auth.
    token = Path.home() / ".ray" / "auth_token"
    has_token = token.exists() or bool(os.environ.get("RAY_AUTH_TOKEN"))
    os.environ.setdefault("RAY_AUTH_MODE", "token" if has_token else "disabled")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # Quiet Tune: the engine draws its own progress bar; the legacy engine honours verbose=0.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


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
        ray.init(address=address, log_to_driver=True)
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
