"""Logistic regression baseline: numeric inputs median-imputed and standardized,
categorical inputs one-hot encoded (and centred), L2-penalized logit.

One fit is cheap, so it reports once, at the full budget (``round = num_boost_round``);
ASHA never needs to stop it. Logged with skops (MLflow's safe format).

Explained with ``shap.LinearExplainer`` on the transformed inputs with the training mean as
background: every transformed column is centred on the training data (the scaler for
numbers, a mean-only scaler after the one-hot encoder), so the background is 0, the base
value is the intercept and each value is ``coef * transformed value``. The values of one
categorical feature's one-hot columns are summed: one SHAP value per original column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.train.explanation import Explanation
from engine.train.families import _sklearn as sk
from engine.train.schema import InputSchema

NAME = "logreg"
OUTPUT = "log_odds"
ROUNDS = False  # fit() takes the rounds the search found
DEFAULT_SPACE: dict[str, list[float]] = {"C": [0.001, 10.0]}


def space(spec: dict[str, list[float]]) -> dict[str, Any]:
    from engine.train.families import range_to_tune

    return {k: range_to_tune(k, lo, hi) for k, (lo, hi) in spec.items()}


def pipeline(hp: dict[str, Any], seed: int, schema: InputSchema) -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    def onehot(cats: list[list[str]]) -> Any:
        return make_pipeline(
            OneHotEncoder(categories=cats, handle_unknown="ignore", sparse_output=False),
            StandardScaler(with_std=False),
        )

    return make_pipeline(
        sk.transformer(
            schema,
            make_pipeline(
                SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
            ),
            onehot,
        ),
        LogisticRegression(C=float(hp.get("C", 1.0)), max_iter=1000, random_state=seed),
    )


def fit(
    hp: dict[str, Any],
    x: Any,
    y: NDArray[np.float64],
    *,
    seed: int,
    nthread: int,
    rounds: int,
    schema: InputSchema | None = None,
) -> sk.SklearnScorer:
    """One fit with parameters ``hp`` (``nthread`` and ``rounds`` do not apply)."""
    schema = schema or InputSchema.infer(x, list(x.columns))
    return sk.fit_pipeline(pipeline(hp, seed, schema), x, y, schema, NAME)


def train(config: dict[str, Any], data: dict[str, Any]) -> None:
    sk.tune_trial(NAME, pipeline(config[NAME], int(data["seed"]), data["schema"]), data)


def load(directory: Any, schema: InputSchema) -> sk.SklearnScorer:
    """The model a trial checkpointed."""
    return sk.load_checkpoint(directory, schema, NAME)


def log_model(scorer: Any, **common: Any) -> Any:
    return sk.log_sklearn(scorer, **common)


def load_logged(uri: str, schema: InputSchema) -> sk.SklearnScorer:
    return sk.load_logged(uri, schema, NAME)


class LinearShap:
    output = OUTPUT

    def __init__(self, scorer: sk.SklearnScorer) -> None:
        import shap

        self.scorer = scorer
        self._pre = scorer.model[:-1]
        self._owners = sk.encoded_owner(scorer.schema, onehot=True)
        k = self._owners.size
        self._linear = shap.LinearExplainer(scorer.model[-1], (np.zeros(k), np.eye(k)))
        self.base_value = float(np.ravel(self._linear.expected_value)[0])

    def explain(self, x: Any) -> Explanation:
        s = self.scorer
        z = np.asarray(
            self._pre.transform(sk.prepare(s.schema.frame(x), s.schema)), dtype=np.float64
        )
        vals = np.asarray(self._linear.shap_values(z), dtype=np.float64).reshape(len(z), -1)
        return Explanation(
            self.base_value, sk.per_feature(vals, self._owners, len(s.features)), OUTPUT
        )


def explainer(scorer: Any) -> LinearShap:
    return LinearShap(scorer)


def card_notes(scorer: Any) -> list[str]:
    c = float(scorer.model[-1].C)
    cats = scorer.schema.categorical
    enc = f"; {len(cats)} categorical input(s) one-hot encoded" if cats else ""
    return [
        f"Logistic regression (L2, C={c:.4g}) on median-imputed, standardized numbers{enc}: "
        "effects are linear in the log-odds; interactions are not modelled."
    ]
