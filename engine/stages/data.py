"""Stage: generate the project's sample data (deterministic, with ground truth)."""

from __future__ import annotations

from typing import Any

from engine.config.project import ProjectConfig
from engine.data.retail import SIZES, RetailParams, generate_retail
from engine.errors import ConfigError
from engine.workspace import Workspace


def sample_params(cfg: ProjectConfig, size: str | None = None) -> RetailParams:
    """The generator's parameters: the project's ``sample:`` block, resized by ``size``."""
    if cfg.sample is None:
        raise ConfigError(
            "the project file has no 'sample:' block, so there is no sample data to generate. "
            "Fix: add one (see examples/retail/insight.yaml) or point sources at your data."
        )
    customers = cfg.sample.customers
    if size is not None:
        if size not in SIZES:
            raise ConfigError(f"--size '{size}' is unknown. Fix: use one of {', '.join(SIZES)}.")
        customers = SIZES[size]
    return RetailParams(customers=customers, days=cfg.sample.days, seed=cfg.sample.seed)


def stage_data(cfg: ProjectConfig, ws: Workspace, size: str | None = None) -> dict[str, Any]:
    """Write the sample tables (reused when already there) and return their ground truth."""
    params = sample_params(cfg, size)
    assert cfg.sample is not None
    out = cfg.resolve_path(cfg.sample.output, ws.root)
    truth = generate_retail(params, out)
    return {"path": str(out), **truth}
