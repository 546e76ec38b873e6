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
    family: str
    snapshot_id: str
    parent_run_id: str
    trials: int
    errored: int
    stopped_early: int
    best_metrics: dict[str, float]
    best_config: dict[str, Any]
    features: list[str]
    train_rows: int
    valid_rows: int
    test_rows: int
    test_auc: dict[str, float]
    uplift: dict[str, Any] | None
    experiment_path: str


def stage_train(
    cfg: ProjectConfig,
    ws: Workspace,
    snapshot_id: str | None = None,
    *,
    alias: str = "challenger",
    show_progress: bool = True,
    resume: bool = False,
    faults: dict[str, Any] | None = None,
) -> TrainResult:
    """Tune search on the connected Ray cluster. The winner is registered under ``alias``
    with lineage tags and a model card; ``insight models gate`` decides on promotion.

    ``faults`` is for fault-injection tests only: ``{"pid_dir": ..., "round_delay_s": ...}``.
    """
    import mlflow

    from engine.registry.card import build_card, log_card
    from engine.registry.models import load_scorer, register_model
    from engine.tracking import code_version, setup_mlflow
    from engine.train.dataset import load_training_set
    from engine.train.search import pending_search, resume_search, run_search

    exp = setup_mlflow(ws, cfg.name)
    pending = pending_search(ws, cfg.name) if resume else None
    if resume and pending is None:
        raise StateError(
            f"no interrupted search of '{cfg.name}' under {ws.tune}. Fix: run `insight train` "
            "without --resume."
        )
    if pending is not None:
        st = json.loads((pending / "insight-search.json").read_text())
        snapshot_id = st["snapshot_id"]
    s = snap.find(ws, cfg.name, snapshot_id)
    frame = s.read_pandas()  # read once: the training set and the uplift join use it
    ts = load_training_set(cfg, s, frame)
    t0, t1 = ts.time_range
    tags = {"snapshot_id": s.id, "code_version": code_version(), "project": cfg.name}
    if pending is not None:
        run_ctx = mlflow.start_run(run_id=st["parent_run_id"])
    else:
        run_ctx = mlflow.start_run(experiment_id=exp, run_name=f"search-{s.id[:8]}", tags=tags)
    with run_ctx as run:
        parent = run.info.run_id
        if cfg.train.backend == "ray_train" and pending is None:
            from engine.train.distributed import train_distributed
            from engine.train.search import SearchOutcome

            d = train_distributed(cfg, ws, ts, s.path, f"{cfg.name}-dist-{parent[:8]}")
            mlflow.log_params({"backend": "ray_train", "workers": d.workers})
            out = SearchOutcome(
                best_config={"family": "xgboost", **d.params},
                best_metrics=d.metrics,
                family="xgboost",
                model_dir=d.model_dir,
                trials=1,
                errored=0,
                stopped_early=0,
                trial_runs={},
                experiment_path=ws.tune / f"{cfg.name}-dist-{parent[:8]}",
            )
        elif pending is not None:
            out = resume_search(cfg, ws, ts, pending, faults)
        else:
            out = run_search(
                cfg,
                ws,
                ts,
                experiment_id=exp,
                parent_run_id=parent,
                tags=tags,
                show_progress=show_progress,
                faults=faults,
            )
        mlflow.log_params({f"best.{k}": v for k, v in out.best_config.items()})
        mlflow.log_metrics({f"best.{k}": v for k, v in out.best_metrics.items()})
        mlflow.log_metrics(
            {
                "trials": out.trials,
                "trials_errored": out.errored,
                "trials_stopped_early": out.stopped_early,
            }
        )
        uplift = None
        if cfg.treatment is not None and cfg.train.uplift_learners:
            from engine.train.uplift import run_uplift_search, uplift_data

            ud = uplift_data(cfg, ts, frame, ws.root)
            uplift = run_uplift_search(
                cfg,
                ud,
                experiment_id=exp,
                parent_run_id=parent,
                tags=tags,
                tracking_uri=ws.tracking_uri,
            )
            mlflow.log_metrics(
                {
                    "uplift.best_qini_auc": uplift["best_qini"]["estimate"],
                    "uplift.ate": uplift["ate"]["estimate"],
                }
            )
        x_valid, _ = ts.xy("valid")
        ref = register_model(
            model_name=cfg.train.model_name,
            family=out.family,
            model_dir=out.model_dir,
            x_example=x_valid.head(20),
            tags={
                **tags,
                "parent_run_id": parent,
                "train_time_range": json.dumps([t0, t1]),
                "split_time": str(ts.split_time),
                "test_time": str(ts.test_time),
                "threshold": str(cfg.serve.threshold),
                "valid_auc": f"{out.best_metrics.get('valid_auc', float('nan')):.6f}",
            },
            alias=alias,
        )
        card = build_card(
            cfg=cfg,
            ts=ts,
            scorer=load_scorer(ref),
            model={
                "name": ref.name,
                "version": ref.version,
                "family": out.family,
                "params": out.best_config,
                "parent_run_id": parent,
                "run_id": ref.run_id,
                "code_version": tags["code_version"],
                "threshold": cfg.serve.threshold,
            },
            search={
                "trials": out.trials,
                "errored": out.errored,
                "stopped_early": out.stopped_early,
                "backend": cfg.train.backend,
                "searcher": cfg.train.searcher if cfg.train.backend == "tune" else None,
                "scheduler": cfg.train.scheduler if cfg.train.backend == "tune" else None,
                "valid_auc": out.best_metrics.get("valid_auc"),
            },
            uplift=uplift,
            n_boot=cfg.train.gate.n_boot,
        )
        log_card(card, ref.run_id)
        from mlflow.tracking import MlflowClient

        test_auc = card["metrics"]["auc"]
        MlflowClient().set_model_version_tag(
            ref.name, ref.version, "test_auc", f"{test_auc['estimate']:.6f}"
        )
    return TrainResult(
        model_name=ref.name,
        version=ref.version,
        alias=alias,
        family=out.family,
        snapshot_id=s.id,
        parent_run_id=parent,
        trials=out.trials,
        errored=out.errored,
        stopped_early=out.stopped_early,
        best_metrics=out.best_metrics,
        best_config=out.best_config,
        features=ref.features,
        train_rows=len(ts.train),
        valid_rows=len(ts.valid),
        test_rows=len(ts.test),
        test_auc=test_auc,
        uplift=uplift,
        experiment_path=str(out.experiment_path),
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
