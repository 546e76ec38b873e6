"""Random forest (scikit-learn ``RandomForestClassifier``), the seed example's model.

Median imputation, then the forest (fitted on ``cpus_per_trial`` cores). One fit per trial,
reported once at the full budget like the logistic baseline (a forest has no rounds for
ASHA to stop). Logged with skops. Explained with ``shap.TreeExplainer`` (exact TreeSHAP
for sklearn trees) on the imputed inputs: values are in *probability* (a forest averages
its trees' class probabilities), so ``base_value + sum(values) == score``, not its logit.
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

NAME = "random_forest"
OUTPUT = "probability"
DEFAULT_SPACE: dict[str, list[float]] = {
    "n_estimators": [50.0, 300.0],
    "max_depth": [3.0, 12.0],
    "min_samples_leaf": [1.0, 20.0],
    "max_features": [0.3, 1.0],
}


def space(spec: dict[str, list[float]]) -> dict[str, Any]:
    from engine.train.families import range_to_tune

    return {k: range_to_tune(k, lo, hi) for k, (lo, hi) in spec.items()}


def pipeline(hp: dict[str, Any], seed: int, n_jobs: int = 1) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    def whole(name: str, default: int) -> int:
        return round(float(hp.get(name, default)))

    return make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        RandomForestClassifier(
            n_estimators=whole("n_estimators", 200),
            max_depth=whole("max_depth", 8),
            min_samples_leaf=whole("min_samples_leaf", 1),
            max_features=float(hp.get("max_features", 1.0)),
            n_jobs=n_jobs,
            random_state=seed,
        ),
    )


def fit(
    hp: dict[str, Any], x: Any, y: NDArray[np.float64], *, seed: int, nthread: int, rounds: int
) -> ForestScorer:
    """One fit with parameters ``hp`` on ``nthread`` cores (``rounds`` does not apply)."""
    return ForestScorer(pipeline(hp, seed, nthread).fit(x, y), list(x.columns))


def train(config: dict[str, Any], data: dict[str, Any]) -> None:
    from ray import tune
    from sklearn.metrics import log_loss, roc_auc_score

    hooks = data.get("hooks") or ()
    trial_id = trial_started(hooks)
    model = pipeline(config[NAME], int(data["seed"]), int(data["nthread"]))
    model.fit(data["x_train"], data["y_train"])
    round_done(hooks, trial_id, int(data["num_boost_round"]))
    p = model.predict_proba(data["x_valid"])[:, 1]
    with tempfile.TemporaryDirectory() as d:
        Path(d, "model.pkl").write_bytes(pickle.dumps(model))
        tune.report(
            {
                "round": int(data["num_boost_round"]),
                "valid_auc": float(roc_auc_score(data["y_valid"], p)),
                "valid_logloss": float(log_loss(data["y_valid"], np.clip(p, 1e-15, 1 - 1e-15))),
                "resumed_from_round": 0,
            },
            checkpoint=tune.Checkpoint.from_directory(d),
        )


@dataclass
class ForestScorer:
    model: Any
    features: list[str]
    family: str = NAME

    def proba(self, rows: NDArray[np.float64]) -> NDArray[np.float64]:
        import pandas as pd

        x = pd.DataFrame(np.asarray(rows, dtype=np.float64), columns=self.features)
        return np.asarray(self.model.predict_proba(x)[:, 1], dtype=np.float64)


def load(directory: str | Path, features: list[str]) -> ForestScorer:
    """The model a trial checkpointed."""
    return ForestScorer(pickle.loads(Path(directory, "model.pkl").read_bytes()), features)


def log_model(scorer: Any, **common: Any) -> Any:
    from engine.train.families.logreg import log_sklearn

    return log_sklearn(scorer.model, ["numpy.dtype", "sklearn.tree._tree.Tree"], **common)


def load_logged(uri: str, features: list[str]) -> ForestScorer:
    import mlflow

    return ForestScorer(mlflow.sklearn.load_model(uri), features)


class ForestShap:
    output = OUTPUT

    def __init__(self, scorer: Any) -> None:
        import shap

        self.scorer = scorer
        self._pre = scorer.model[:-1]
        self._tree = shap.TreeExplainer(scorer.model[-1])
        self.base_value = float(np.ravel(self._tree.expected_value)[-1])

    def explain(self, x: NDArray[np.float64]) -> Explanation:
        import pandas as pd

        z = np.asarray(self._pre.transform(pd.DataFrame(x, columns=self.scorer.features)))
        vals = np.asarray(self._tree.shap_values(z, check_additivity=False), dtype=np.float64)
        if vals.ndim == 3:  # (rows, features, classes): the positive class
            vals = vals[:, :, 1]
        return Explanation(self.base_value, vals.reshape(len(x), -1), OUTPUT)


def explainer(scorer: Any) -> ForestShap:
    return ForestShap(scorer)


def card_notes(scorer: Any) -> list[str]:
    rf = scorer.model[-1]
    return [
        f"Random forest of {rf.n_estimators} trees (max depth {rf.max_depth}) on "
        "median-imputed inputs; scores are averaged tree probabilities, and SHAP values are "
        "in probability, not log-odds."
    ]
