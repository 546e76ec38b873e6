"""Registering the search winner and loading models by alias.

The XGBoost *Booster* is logged (not the sklearn wrapper): a pyfunc ``predict`` of an
``XGBClassifier`` returns class labels, the Booster returns probabilities (STACK.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import StateError


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    alias: str | None
    run_id: str
    features: list[str]
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def register_booster(
    *,
    model_name: str,
    model_path: str,
    x_example: Any,
    tags: dict[str, str],
    alias: str,
) -> ModelRef:
    """Log the Booster in the active MLflow run, register it and point ``alias`` at it."""
    import mlflow
    import xgboost as xgb
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    booster = xgb.Booster()
    booster.load_model(model_path)
    features = list(x_example.columns)
    proba = booster.predict(xgb.DMatrix(x_example, feature_names=features))
    info = mlflow.xgboost.log_model(
        booster,
        name="model",
        signature=infer_signature(x_example, proba),
        input_example=x_example.head(3),
        # Explicit requirements: inferring them costs ~7 s per log (STACK.md).
        pip_requirements=[f"xgboost=={xgb.__version__}", f"mlflow=={mlflow.__version__}"],
        registered_model_name=model_name,
        model_format="json",
    )
    client = MlflowClient()
    version = str(info.registered_model_version)
    all_tags = {**tags, "features": json.dumps(features)}
    for k, v in all_tags.items():
        client.set_model_version_tag(model_name, version, k, v)
    client.set_registered_model_alias(model_name, alias, version)
    run_id = info.run_id or ""
    return ModelRef(model_name, version, alias, run_id, features, all_tags)


def resolve(name: str, alias: str) -> ModelRef:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        raise StateError(
            f"no model '{name}' with alias '{alias}' in the registry. "
            "Fix: run `insight train` first (or check train.model_name)."
        ) from None
    tags = dict(mv.tags)
    return ModelRef(
        name, str(mv.version), alias, mv.run_id or "", json.loads(tags["features"]), tags
    )


def load_booster(ref: ModelRef) -> Any:
    import mlflow

    return mlflow.xgboost.load_model(ref.uri)


def predict_proba(booster: Any, features: list[str], rows: np.ndarray) -> np.ndarray:
    import xgboost as xgb

    return np.asarray(booster.predict(xgb.DMatrix(rows, feature_names=features)), dtype=np.float64)
