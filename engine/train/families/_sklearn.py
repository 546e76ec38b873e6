"""What the scikit-learn families share: the column transformer over the input schema,
the scorer, the single-fit Tune trial, MLflow logging with skops, and mapping SHAP values of
encoded columns back to the original features.

Categorical inputs reach a pipeline as text with missing (and unseen) values spelled
``MISSING``, one of the categories the encoders know: so a value never seen in training is
scored as a missing one, never an error, and no custom function sits inside the pipeline
(skops loads only types it is told to trust).
"""

from __future__ import annotations

import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from engine.train.hooks import round_done, trial_started
from engine.train.schema import InputSchema

MISSING = "(missing)"
# Types outside scikit-learn's own that these pipelines hold (skops refuses anything else).
TRUSTED = ["numpy.dtype", "sklearn.tree._tree.Tree", "builtins.slice"]


def prepare(x: pd.DataFrame, schema: InputSchema) -> pd.DataFrame:
    """The model-input frame as the pipelines take it: categoricals as text, MISSING for
    missing values."""
    out = x.copy()
    for c in schema.categorical:
        out[c] = out[c].astype(object).where(out[c].notna(), MISSING)
    return out


def transformer(schema: InputSchema, numeric: Any, categorical: Any) -> Any:
    """A ColumnTransformer: ``numeric`` on the numeric features, ``categorical(categories)``
    on the categorical ones (each given its training categories plus MISSING)."""
    from sklearn.compose import ColumnTransformer

    parts: list[tuple[str, Any, list[str]]] = []
    if schema.numeric_names:
        parts.append(("num", numeric, schema.numeric_names))
    if schema.categorical:
        cats = [[*schema.spec(c).categories, MISSING] for c in schema.categorical]
        parts.append(("cat", categorical(cats), schema.categorical))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def encoded_owner(schema: InputSchema, onehot: bool) -> NDArray[np.int64]:
    """For each column the transformer outputs, the index (in schema order) of the original
    feature it encodes: numeric columns first, then each categorical's one-hot block (its
    categories plus MISSING) or its one ordinal column."""
    order = {n: i for i, n in enumerate(schema.names)}
    owners: list[int] = [order[n] for n in schema.numeric_names]
    for c in schema.categorical:
        owners += [order[c]] * ((len(schema.spec(c).categories) + 1) if onehot else 1)
    return np.asarray(owners, dtype=np.int64)


def per_feature(
    values: NDArray[np.float64], owners: NDArray[np.int64], k: int
) -> NDArray[np.float64]:
    """SHAP values of encoded columns summed into one value per original feature."""
    out = np.zeros((values.shape[0], k))
    for j, o in enumerate(owners):
        out[:, o] += values[:, j]
    return out


@dataclass
class SklearnScorer:
    """A fitted pipeline (transformer, then estimator) over ``schema``."""

    model: Any
    schema: InputSchema
    family: str

    @property
    def features(self) -> list[str]:
        return self.schema.names

    def proba(self, rows: Any) -> NDArray[np.float64]:
        x = prepare(self.schema.frame(rows), self.schema)
        return np.asarray(self.model.predict_proba(x)[:, 1], dtype=np.float64)


def fit_pipeline(
    pipe: Any, x: pd.DataFrame, y: Any, schema: InputSchema, family: str
) -> SklearnScorer:
    return SklearnScorer(pipe.fit(prepare(schema.frame(x), schema), y), schema, family)


def tune_trial(family: str, pipe: Any, data: dict[str, Any]) -> None:
    """One fit, reported once at the full budget with a checkpoint (no rounds to stop)."""
    from ray import tune
    from sklearn.metrics import log_loss, roc_auc_score

    hooks = data.get("hooks") or ()
    trial_id = trial_started(hooks)
    schema: InputSchema = data["schema"]
    scorer = fit_pipeline(pipe, data["x_train"], data["y_train"], schema, family)
    round_done(hooks, trial_id, int(data["num_boost_round"]))
    p = scorer.proba(data["x_valid"])
    with tempfile.TemporaryDirectory() as d:
        Path(d, "model.pkl").write_bytes(pickle.dumps(scorer.model))
        tune.report(
            {
                "round": int(data["num_boost_round"]),
                "valid_auc": float(roc_auc_score(data["y_valid"], p)),
                "valid_logloss": float(log_loss(data["y_valid"], np.clip(p, 1e-15, 1 - 1e-15))),
                "resumed_from_round": 0,
            },
            checkpoint=tune.Checkpoint.from_directory(d),
        )


def load_checkpoint(directory: str | Path, schema: InputSchema, family: str) -> SklearnScorer:
    return SklearnScorer(pickle.loads(Path(directory, "model.pkl").read_bytes()), schema, family)


def log_sklearn(scorer: SklearnScorer, **common: Any) -> Any:
    """Log the pipeline in the active MLflow run with skops, MLflow's safe format, which
    loads only the types listed as trusted."""
    import mlflow
    import sklearn

    return mlflow.sklearn.log_model(
        scorer.model,
        skops_trusted_types=TRUSTED,
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"mlflow=={mlflow.__version__}"],
        **common,
    )


def load_logged(uri: str, schema: InputSchema, family: str) -> SklearnScorer:
    import mlflow

    return SklearnScorer(mlflow.sklearn.load_model(uri), schema, family)
