"""Model families the search can try: one small plugin module per family.

A family module defines ``NAME``, ``DEFAULT_SPACE`` (``{param: [low, high]}``),
``space(spec) -> dict`` (Ray Tune distributions), ``train(config, data)`` (a Tune function
trainable reporting ``valid_auc`` with ``round`` as its time attribute; its last report
carries a checkpoint) and ``load(dir) -> Scorer``. Register a new family by adding it to
``FAMILIES``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from engine.train.families import logreg, xgboost

FAMILIES: dict[str, ModuleType] = {m.NAME: m for m in (xgboost, logreg)}


class Scorer(Protocol):
    """A trained model: probabilities of the positive class, never labels."""

    family: str
    features: list[str]

    def proba(self, rows: NDArray[np.float64]) -> NDArray[np.float64]: ...


def dispatch(config: dict[str, Any], data: dict[str, Any]) -> None:
    """The one Tune trainable: hands the trial to its family's ``train``. It lives here,
    not in ``engine.train.search``, so a trial worker imports only the families (NumPy,
    XGBoost, scikit-learn), not MLflow and the driver's modules: seconds per worker."""
    FAMILIES[config["family"]].train(config, data)


def family(name: str) -> ModuleType:
    if name not in FAMILIES:
        raise KeyError(f"unknown model family '{name}'; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


def tune_space(families: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """One Tune space over all families: ``family`` plus each family's own parameters."""
    from ray import tune

    space: dict[str, Any] = {"family": tune.choice(sorted(families))}
    for name, spec in families.items():
        space[name] = family(name).space(spec)
    return space


def log_uniform_names() -> set[str]:
    return {"eta", "learning_rate", "lambda", "alpha", "C"}


def range_to_tune(name: str, lo: float, hi: float) -> Any:
    """``[low, high]`` -> a Tune distribution: integers stay integers, rates are log-scaled."""
    from ray import tune

    if name in {"max_depth", "min_child_weight", "max_iter"} and float(lo).is_integer():
        return tune.randint(int(lo), int(hi) + 1)
    if name in log_uniform_names() and lo > 0:
        return tune.loguniform(lo, hi)
    return tune.uniform(lo, hi)
