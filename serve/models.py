"""What a replica holds: the model versions it has loaded, the rollout state it serves, and
the scoring that is independent of HTTP (one model call per distinct model in a batch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Loaded:
    version: str
    ref: Any  # engine.registry.models.ModelRef
    scorer: Any  # a Scorer: probabilities, never labels
    explainer: Any = None  # engine.train.explanation.Explainer, built on the first /explain


@dataclass
class Active:
    """One consistent rollout state: a request reads it once and uses it throughout."""

    state: dict[str, Any]
    champion: Loaded
    challenger: Loaded | None


def score_many(items: list[tuple[Loaded, pd.DataFrame]]) -> list[np.ndarray]:
    """One model call per distinct model across the items, split back per item."""
    out: list[np.ndarray | None] = [None] * len(items)
    by_model: dict[str, list[int]] = {}
    for i, (m, _) in enumerate(items):
        by_model.setdefault(m.version, []).append(i)
    for idx in by_model.values():
        m = items[idx[0]][0]
        x = (
            pd.concat([items[i][1] for i in idx], ignore_index=True)
            if len(idx) > 1
            else items[idx[0]][1]
        )
        p = m.scorer.proba(x)
        start = 0
        for i in idx:
            k = items[i][1].shape[0]
            out[i] = p[start : start + k]
            start += k
    return [o if o is not None else np.empty(0) for o in out]


def explain_rows(m: Loaded, x: pd.DataFrame) -> tuple[Any, np.ndarray]:
    """SHAP values and scores of ``x`` under ``m`` (run in a worker thread)."""
    return m.explainer.explain(x), m.scorer.proba(x)
