"""Training on a real local Ray cluster, tracked in a real MLflow (sqlite) registry."""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from engine.config import ProjectConfig
from engine.workspace import Workspace

pytestmark = [pytest.mark.ray, pytest.mark.spark]


def test_search_tracks_every_trial_and_registers_champion(
    example_cfg: ProjectConfig, tiny_ws: Workspace, tiny_snapshot: Any, ray_local: Workspace
) -> None:
    from engine.pipeline import stage_train
    from engine.registry.models import load_booster, predict_proba, resolve
    from engine.train.dataset import load_training_set

    ws = Workspace(ray_local.root.parent / "train-ws").ensure()
    shutil.copytree(tiny_ws.features, ws.features, dirs_exist_ok=True)
    cfg = example_cfg.model_copy(
        update={
            "train": example_cfg.train.model_copy(update={"num_samples": 3, "num_boost_round": 20})
        }
    )
    r = stage_train(cfg, ws, tiny_snapshot.id, show_progress=False)
    assert r.trials == 3 and r.errored == 0
    assert 0.6 < r.best_metrics["valid_auc"] <= 1.0
    assert "gender" not in r.features, "sensitive attributes are never model inputs"

    client = MlflowClient(ws.tracking_uri)
    exp = client.get_experiment_by_name(cfg.name)
    runs = client.search_runs([exp.experiment_id])
    children = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == r.parent_run_id]
    assert len(children) == 3
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["snapshot_id"] == tiny_snapshot.id
        assert {"max_depth", "eta", "subsample", "min_child_weight"} <= set(child.data.params)
        hist = client.get_metric_history(child.info.run_id, "valid_auc")
        assert len(hist) >= 5 and hist[-1].step == 20, "per-round metrics with their round"
    best_child = max(children, key=lambda c: c.data.metrics["valid_auc"])
    assert best_child.data.metrics["valid_auc"] == pytest.approx(r.best_metrics["valid_auc"])

    import mlflow

    mlflow.set_tracking_uri(ws.tracking_uri)
    mlflow.set_registry_uri(ws.tracking_uri)
    ref = resolve(cfg.train.model_name, "champion")
    assert ref.version == r.version and ref.tags["snapshot_id"] == tiny_snapshot.id
    assert ref.tags["parent_run_id"] == r.parent_run_id
    booster = load_booster(ref)
    ts = load_training_set(cfg, tiny_snapshot)
    x, y = ts.xy("valid")
    p = predict_proba(booster, ref.features, x.to_numpy())
    assert p.shape == (len(x),) and ((p >= 0) & (p <= 1)).all()
    assert not np.array_equal(np.unique(p), np.array([0.0, 1.0])), "probabilities, not labels"
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, p) == pytest.approx(r.best_metrics["valid_auc"], abs=1e-6)
