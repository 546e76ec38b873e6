"""Logistic regression baseline: median imputation, standardization, L2-penalized logit.

One fit is cheap, so it reports once, at the full budget (``round = num_boost_round``);
ASHA never needs to stop it. Logged with skops (MLflow's safe format). Explained with
``shap.LinearExplainer`` on the standardized inputs, the training mean as background (the
scaler centres the training data, so the background is 0 and the base value is the
intercept): values in log-odds, ``coef * standardized value``.
"""

from __future__ import annotations

import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.explain import Explanation
from engine.train.hooks import round_done, trial_started

NAME = "logreg"
OUTPUT = "log_odds"
DEFAULT_SPACE: dict[str, list[float]] = {"C": [0.001, 10.0]}


def space(spec: dict[str, list[float]]) -> dict[str, Any]:
    from engine.train.families import range_to_tune

    return {k: range_to_tune(k, lo, hi) for k, (lo, hi) in spec.items()}


def pipeline(hp: dict[str, Any], seed: int) -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=float(hp.get("C", 1.0)), max_iter=500, random_state=seed),
    )


def fit(
    hp: dict[str, Any], x: Any, y: NDArray[np.float64], *, seed: int, nthread: int, rounds: int
) -> LogRegScorer:
    """One fit with parameters ``hp`` (``nthread`` and ``rounds`` do not apply)."""
    return LogRegScorer(pipeline(hp, seed).fit(x, y), list(x.columns))


def train(config: dict[str, Any], data: dict[str, Any]) -> None:
    from ray import tune
    from sklearn.metrics import log_loss, roc_auc_score

    hooks = data.get("hooks") or ()
    trial_id = trial_started(hooks)
    model = pipeline(config[NAME], int(data["seed"]))
    model.fit(data["x_train"], data["y_train"])  # fitted with feature names
    round_done(hooks, trial_id, int(data["num_boost_round"]))
    p = model.predict_proba(data["x_valid"])[:, 1]
    with tempfile.TemporaryDirectory() as d:
        Path(d, "model.pkl").write_bytes(pickle.dumps(model))
        tune.report(
            {
                "round": int(data["num_boost_round"]),
                "valid_auc": float(roc_auc_score(data["y_valid"], p)),
                "valid_logloss": float(log_loss(data["y_valid"], p)),
                "resumed_from_round": 0,
            },
            checkpoint=tune.Checkpoint.from_directory(d),
        )


@dataclass
class LogRegScorer:
    model: Any
    features: list[str]
    family: str = NAME

    def proba(self, rows: NDArray[np.float64]) -> NDArray[np.float64]:
        import pandas as pd

        x = pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=self.features)
        return np.asarray(self.model.predict_proba(x)[:, 1], dtype=np.float64)


def load(directory: str | Path, features: list[str]) -> LogRegScorer:
    """The model a trial checkpointed."""
    return LogRegScorer(pickle.loads(Path(directory, "model.pkl").read_bytes()), features)


def log_sklearn(model: Any, trusted: list[str], **common: Any) -> Any:
    """Log a scikit-learn pipeline in the active MLflow run with skops, MLflow's safe
    format, which loads only the types listed in ``trusted``."""
    import mlflow
    import sklearn

    return mlflow.sklearn.log_model(
        model,
        skops_trusted_types=trusted,
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"mlflow=={mlflow.__version__}"],
        **common,
    )


def log_model(scorer: Any, **common: Any) -> Any:
    return log_sklearn(scorer.model, ["numpy.dtype"], **common)


def load_logged(uri: str, features: list[str]) -> LogRegScorer:
    import mlflow

    return LogRegScorer(mlflow.sklearn.load_model(uri), features)


class LinearShap:
    output = OUTPUT

    def __init__(self, scorer: Any) -> None:
        import shap

        k = len(scorer.features)
        self.scorer = scorer
        self._pre = scorer.model[:-1]
        self._linear = shap.LinearExplainer(scorer.model[-1], (np.zeros(k), np.eye(k)))
        self.base_value = float(np.ravel(self._linear.expected_value)[0])

    def explain(self, x: NDArray[np.float64]) -> Explanation:
        import pandas as pd

        z = self._pre.transform(pd.DataFrame(x, columns=self.scorer.features))
        vals = self._linear.shap_values(np.asarray(z, dtype=np.float64))
        return Explanation(
            self.base_value, np.asarray(vals, dtype=np.float64).reshape(len(x), -1), OUTPUT
        )


def explainer(scorer: Any) -> LinearShap:
    return LinearShap(scorer)


def card_notes(scorer: Any) -> list[str]:
    c = float(scorer.model[-1].C)
    return [
        f"Logistic regression (L2, C={c:.4g}) on median-imputed, standardized inputs: "
        "effects are linear in the log-odds; interactions are not modelled."
    ]
