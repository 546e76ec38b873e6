"""Random forest (scikit-learn ``RandomForestClassifier``), the seed example's model.

Numeric inputs median-imputed, categorical inputs ordinal-encoded (one column each; a
missing or unseen value is its own code), then the forest (fitted on ``cpus_per_trial``
cores). One fit per trial, reported once at the full budget like the logistic baseline (a
forest has no rounds for ASHA to stop). Logged with skops. Explained with
``shap.TreeExplainer`` (exact TreeSHAP for sklearn trees) on the encoded inputs, one value
per original column: values are in *probability* (a forest averages its trees' class
probabilities), so ``base_value + sum(values) == score``, not its logit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.train.explanation import Explanation
from engine.train.families import _sklearn as sk
from engine.train.schema import InputSchema

NAME = "random_forest"
OUTPUT = "probability"
ROUNDS = False  # fit() takes the rounds the search found
DEFAULT_SPACE: dict[str, list[float]] = {
    "n_estimators": [50.0, 300.0],
    "max_depth": [3.0, 12.0],
    "min_samples_leaf": [1.0, 20.0],
    "max_features": [0.3, 1.0],
}


def space(spec: dict[str, list[float]]) -> dict[str, Any]:
    from engine.train.families import range_to_tune

    return {k: range_to_tune(k, lo, hi) for k, (lo, hi) in spec.items()}


def pipeline(hp: dict[str, Any], seed: int, schema: InputSchema, n_jobs: int = 1) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    def whole(name: str, default: int) -> int:
        return round(float(hp.get(name, default)))

    def ordinal(cats: list[list[str]]) -> Any:
        return OrdinalEncoder(categories=cats, handle_unknown="use_encoded_value", unknown_value=-1)

    return make_pipeline(
        sk.transformer(schema, SimpleImputer(strategy="median", keep_empty_features=True), ordinal),
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
    hp: dict[str, Any],
    x: Any,
    y: NDArray[np.float64],
    *,
    seed: int,
    nthread: int,
    rounds: int,
    schema: InputSchema | None = None,
) -> sk.SklearnScorer:
    """One fit with parameters ``hp`` on ``nthread`` cores (``rounds`` does not apply)."""
    schema = schema or InputSchema.infer(x, list(x.columns))
    return sk.fit_pipeline(pipeline(hp, seed, schema, nthread), x, y, schema, NAME)


def train(config: dict[str, Any], data: dict[str, Any]) -> None:
    pipe = pipeline(config[NAME], int(data["seed"]), data["schema"], int(data["nthread"]))
    sk.tune_trial(NAME, pipe, data)


def load(directory: Any, schema: InputSchema) -> sk.SklearnScorer:
    """The model a trial checkpointed."""
    return sk.load_checkpoint(directory, schema, NAME)


def log_model(scorer: Any, **common: Any) -> Any:
    return sk.log_sklearn(scorer, **common)


def load_logged(uri: str, schema: InputSchema) -> sk.SklearnScorer:
    return sk.load_logged(uri, schema, NAME)


class ForestShap:
    output = OUTPUT

    def __init__(self, scorer: sk.SklearnScorer) -> None:
        import shap

        self.scorer = scorer
        self._pre = scorer.model[:-1]
        self._owners = sk.encoded_owner(scorer.schema, onehot=False)
        self._tree = shap.TreeExplainer(scorer.model[-1])
        self.base_value = float(np.ravel(self._tree.expected_value)[-1])

    def explain(self, x: Any) -> Explanation:
        s = self.scorer
        z = np.asarray(
            self._pre.transform(sk.prepare(s.schema.frame(x), s.schema)), dtype=np.float64
        )
        vals = np.asarray(self._tree.shap_values(z, check_additivity=False), dtype=np.float64)
        if vals.ndim == 3:  # (rows, features, classes): the positive class
            vals = vals[:, :, 1]
        vals = vals.reshape(len(z), -1)
        return Explanation(
            self.base_value, sk.per_feature(vals, self._owners, len(s.features)), OUTPUT
        )


def explainer(scorer: Any) -> ForestShap:
    return ForestShap(scorer)


def card_notes(scorer: Any) -> list[str]:
    rf = scorer.model[-1]
    cats = scorer.schema.categorical
    enc = f" ({len(cats)} categorical input(s) ordinal-encoded)" if cats else ""
    return [
        f"Random forest of {rf.n_estimators} trees (max depth {rf.max_depth}) on "
        f"median-imputed inputs{enc}; scores are averaged tree probabilities, and SHAP values "
        "are in probability, not log-odds."
    ]
