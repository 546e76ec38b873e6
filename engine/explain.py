"""SHAP values per prediction, in log-odds, for every model family the registry serves.

- XGBoost: XGBoost's own TreeSHAP (``predict(pred_contribs=True)``), exact and additive by
  construction. ``shap.TreeExplainer`` (0.51) gave the same per-feature values but a base
  value off by a constant 0.129 log-odds on a model served here (XGBoost 3.2, base_score
  0.25, missing values), so its rows did not add up to the model's margin.
- Logistic baseline (imputer -> scaler -> logistic regression): ``shap.LinearExplainer`` on
  the standardized inputs with the training mean as background (the scaler centres the
  training data, so the background mean is 0 and the base value is the intercept).

Either way ``base_value + sum(values) == logit(score)`` for every row (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass
class Explanation:
    base_value: float
    values: NDArray[np.float64]  # rows x features, log-odds


class Explainer:
    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer
        self.features: list[str] = list(scorer.features)
        self._linear: Any = None
        if scorer.family == "xgboost":
            self.base_value = float("nan")  # per call: the bias column of pred_contribs
        else:
            import shap

            k = len(self.features)
            lr = scorer.model[-1]
            self._pre = scorer.model[:-1]
            self._linear = shap.LinearExplainer(lr, (np.zeros(k), np.eye(k)))
            self.base_value = float(np.ravel(self._linear.expected_value)[0])

    def explain(self, x: NDArray[np.float64]) -> Explanation:
        if self._linear is None:
            import xgboost as xgb

            c = self.scorer.booster.predict(
                xgb.DMatrix(x, feature_names=self.features), pred_contribs=True
            )
            return Explanation(float(c[0, -1]), np.asarray(c[:, :-1], dtype=np.float64))
        else:
            import pandas as pd

            z = self._pre.transform(pd.DataFrame(x, columns=self.features))
            vals = self._linear.shap_values(np.asarray(z, dtype=np.float64))
        return Explanation(self.base_value, np.asarray(vals, dtype=np.float64).reshape(len(x), -1))
