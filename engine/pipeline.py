"""The stages as library calls: data, features, train, drift. The CLI and jobs call these.

Each stage takes the project config and the workspace, does its work with the real
engines (Spark, Ray Tune, MLflow, Numba) and returns a small result object to print.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from engine.config import ProjectConfig
from engine.data.retail import SIZES, RetailParams, generate_retail
from engine.errors import ConfigError, StateError
from engine.features import snapshot as snap
from engine.monitor.drift import ColumnDrift, drift_check
from engine.workspace import Workspace


def sample_params(cfg: ProjectConfig, size: str | None = None) -> RetailParams:
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
    params = sample_params(cfg, size)
    assert cfg.sample is not None
    out = cfg.resolve_path(cfg.sample.output, ws.root)
    truth = generate_retail(params, out)
    return {"path": str(out), **truth}


def stage_features(cfg: ProjectConfig, ws: Workspace) -> tuple[snap.Snapshot, bool]:
    from engine.features.run import build_snapshot

    return build_snapshot(cfg, ws)


@dataclass
class TrainResult:
    model_name: str
    version: str
    alias: str
    snapshot_id: str
    parent_run_id: str
    trials: int
    errored: int
    best_metrics: dict[str, float]
    best_config: dict[str, Any]
    features: list[str]
    train_rows: int
    valid_rows: int


def stage_train(
    cfg: ProjectConfig,
    ws: Workspace,
    snapshot_id: str | None = None,
    *,
    alias: str = "champion",
    show_progress: bool = True,
) -> TrainResult:
    """Tune search on the connected Ray cluster; the winner is registered under ``alias``."""
    import mlflow

    from engine.registry.models import register_booster
    from engine.tracking import code_version, setup_mlflow
    from engine.train.dataset import load_training_set
    from engine.train.search import run_search

    s = snap.find(ws, cfg.name, snapshot_id)
    ts = load_training_set(cfg, s)
    exp = setup_mlflow(ws, cfg.name)
    t0, t1 = ts.time_range
    tags = {"snapshot_id": s.id, "code_version": code_version(), "project": cfg.name}
    with mlflow.start_run(experiment_id=exp, run_name=f"search-{s.id[:8]}", tags=tags) as run:
        parent = run.info.run_id
        out = run_search(
            cfg,
            ws,
            ts,
            experiment_id=exp,
            parent_run_id=parent,
            tags=tags,
            show_progress=show_progress,
        )
        mlflow.log_params({f"best.{k}": v for k, v in out.best_config.items()})
        mlflow.log_metrics({f"best.{k}": v for k, v in out.best_metrics.items()})
        mlflow.log_metrics({"trials": out.trials, "trials_errored": out.errored})
        x_valid, _ = ts.xy("valid")
        ref = register_booster(
            model_name=cfg.train.model_name,
            model_path=str(out.model_path),
            x_example=x_valid.head(20),
            tags={
                **tags,
                "parent_run_id": parent,
                "train_time_range": json.dumps([t0, t1]),
                "split_time": str(ts.split_time),
                "threshold": str(cfg.serve.threshold),
                "valid_auc": f"{out.best_metrics.get('valid_auc', float('nan')):.6f}",
            },
            alias=alias,
        )
    return TrainResult(
        model_name=ref.name,
        version=ref.version,
        alias=alias,
        snapshot_id=s.id,
        parent_run_id=parent,
        trials=out.trials,
        errored=out.errored,
        best_metrics=out.best_metrics,
        best_config=out.best_config,
        features=ref.features,
        train_rows=len(ts.train),
        valid_rows=len(ts.valid),
    )


@dataclass
class DriftResult:
    snapshot_id: str
    reference_rows: int
    current_rows: int
    columns: list[ColumnDrift]
    report_path: Path

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]


def windows(cfg: ProjectConfig, s: snap.Snapshot) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference = label times up to train.until; current = from drift.current_from."""
    if cfg.drift.current_from is None:
        raise ConfigError(
            "drift.current_from is not set, so there is no current window to compare. "
            "Fix: set drift.current_from to the first date of the current window."
        )
    df = s.read_pandas()
    lt = cfg.label.event_time
    cur = df[df[lt] >= pd.Timestamp(cfg.drift.current_from)]
    if cfg.train.until is not None:
        ref = df[df[lt] < pd.Timestamp(cfg.train.until) + pd.Timedelta(days=1)]
    else:
        ref = df[df[lt] < pd.Timestamp(cfg.drift.current_from)]
    return ref, cur


def stage_drift(cfg: ProjectConfig, ws: Workspace, snapshot_id: str | None = None) -> DriftResult:
    s = snap.find(ws, cfg.name, snapshot_id)
    ref, cur = windows(cfg, s)
    if cur.empty:
        raise StateError(
            f"the current window (label times from {cfg.drift.current_from}) is empty in "
            f"snapshot {s.id}. Fix: move drift.current_from earlier or rebuild features."
        )
    cols = [c for c in cfg.feature_names() if c not in cfg.sensitive]
    result = drift_check(ref, cur, cols, cfg.drift)
    from engine.workspace import atomic_write_text

    path = ws.reports / f"drift-{s.id}.json"
    atomic_write_text(
        path,
        json.dumps(
            {
                "snapshot_id": s.id,
                "reference_rows": len(ref),
                "current_rows": len(cur),
                "rule": cfg.drift.model_dump(mode="json"),
                "columns": [c.as_dict() for c in result],
            },
            indent=2,
        ),
    )
    return DriftResult(s.id, len(ref), len(cur), result, path)
