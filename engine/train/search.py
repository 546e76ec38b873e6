"""The train stage: a Ray Tune search over XGBoost, every trial tracked in MLflow."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import ProjectConfig
from engine.errors import InsightError
from engine.train.dataset import TrainingSet
from engine.train.families import train_xgboost, xgboost_space
from engine.train.progress import RichTrialProgress
from engine.train.tracking import MLflowTrialCallback
from engine.workspace import Workspace

METRIC = "valid_auc"


@dataclass
class SearchOutcome:
    best_config: dict[str, Any]
    best_metrics: dict[str, float]
    model_path: Path
    trials: int
    errored: int
    trial_runs: dict[str, str]
    storage: Path


def run_search(
    cfg: ProjectConfig,
    ws: Workspace,
    ts: TrainingSet,
    *,
    experiment_id: str,
    parent_run_id: str,
    tags: dict[str, str],
    verbose: int = 0,
    show_progress: bool = True,
) -> SearchOutcome:
    """Run the search on the Ray cluster this process is connected to."""
    from ray import tune

    tc = cfg.train
    x_tr, y_tr = ts.xy("train")
    x_va, y_va = ts.xy("valid")
    data = {
        "x_train": x_tr,
        "y_train": y_tr,
        "x_valid": x_va,
        "y_valid": y_va,
        "num_boost_round": tc.num_boost_round,
        "nthread": max(1, int(tc.cpus_per_trial)),
        "seed": tc.seed,
    }
    trainable = tune.with_resources(
        tune.with_parameters(train_xgboost, data=data), {"cpu": tc.cpus_per_trial}
    )
    callback = MLflowTrialCallback(ws.tracking_uri, experiment_id, parent_run_id, tags)
    storage = ws.tune.resolve()
    from ray.tune.search.basic_variant import BasicVariantGenerator

    tuner = tune.Tuner(
        trainable,
        param_space=xgboost_space(tc.search_space),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            num_samples=tc.num_samples,
            search_alg=BasicVariantGenerator(
                random_state=tc.seed, max_concurrent=tc.max_concurrent
            ),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"{cfg.name}-{parent_run_id[:8]}",
            storage_path=str(storage),
            callbacks=[callback]
            + ([RichTrialProgress(tc.num_samples, METRIC)] if show_progress else []),
            verbose=verbose,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    results = tuner.fit()
    errored = sum(1 for i in range(len(results)) if results[i].error is not None)
    try:
        best = results.get_best_result(metric=METRIC, mode="max", scope="last")
    except RuntimeError as exc:
        raise InsightError(f"no trial finished ({errored} errored): {exc}") from None
    if best.checkpoint is None:
        raise InsightError("the best trial left no checkpoint; cannot register its model.")
    local = Path(tempfile.mkdtemp(prefix="best-", dir=ws.scratch))
    best.checkpoint.to_directory(str(local))
    metrics = {
        k: float(v)
        for k, v in (best.metrics or {}).items()
        if k in {"valid_auc", "valid_logloss", "train_auc", "best_valid_auc"}
    }
    return SearchOutcome(
        best_config=dict(best.config or {}),
        best_metrics=metrics,
        model_path=local / "model.json",
        trials=len(results),
        errored=errored,
        trial_runs=dict(callback.runs),
        storage=storage,
    )
