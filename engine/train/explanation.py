"""SHAP values per prediction, for every model family the registry serves.

Each family computes its own (``explainer(scorer)`` in its module under
``engine.train.families``; ``engine.train.families.explainer_for`` finds it); this module
holds what they share, and imports no family (so there is no import circle). The values are additive in the family's ``output`` space, for every row (tested):

- ``log_odds`` (XGBoost, logistic regression): ``base_value + sum(values) == logit(score)``;
- ``probability`` (random forest): ``base_value + sum(values) == score``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray


@dataclass
class Explanation:
    base_value: float
    values: NDArray[np.float64]  # rows x features
    output: str = "log_odds"  # the space the values add up in: log_odds | probability

    def total(self) -> NDArray[np.float64]:
        """base + sum of values per row: the model's output in ``output`` space."""
        return self.base_value + self.values.sum(axis=1)


class Explainer(Protocol):
    output: str

    def explain(self, x: Any) -> Explanation: ...


def to_output(score: NDArray[np.float64], output: str) -> NDArray[np.float64]:
    """A probability in the space an explanation adds up in."""
    if output == "probability":
        return score
    p = np.clip(score, 1e-15, 1 - 1e-15)
    return np.asarray(np.log(p / (1 - p)), dtype=np.float64)
