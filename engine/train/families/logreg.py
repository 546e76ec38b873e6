"""Logistic regression baseline: median imputation, standardization, L2-penalized logit.

One fit is cheap, so it reports once, at the full budget (``round = num_boost_round``);
ASHA never needs to stop it.
"""

from __future__ import annotations

import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

NAME = "logreg"
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


def train(config: dict[str, Any], data: dict[str, Any]) -> None:
    from ray import tune
    from sklearn.metrics import log_loss, roc_auc_score

    model = pipeline(config[NAME], int(data["seed"]))
    model.fit(data["x_train"], data["y_train"])  # fitted with feature names
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
    return LogRegScorer(pickle.loads(Path(directory, "model.pkl").read_bytes()), features)
