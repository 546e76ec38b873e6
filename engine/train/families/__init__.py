"""Model families the engine can search, register, serve, explain and card.

A family is one module here behind the :class:`Family` protocol, plus one line in
``FAMILIES``; nothing else in the engine names a family. A family module defines:

- ``NAME``, ``OUTPUT`` (the space its SHAP values add up in: ``log_odds`` or
  ``probability``), ``ROUNDS`` (whether ``fit`` takes the number of boosting rounds the
  search found) and ``DEFAULT_SPACE`` (``{param: [low, high]}``);
- ``space(spec)``: Ray Tune distributions for the search;
- ``train(config, data)``: the Tune function trainable; it reports ``valid_auc`` with
  ``round`` as the time attribute, its last report carries a checkpoint, and it runs the
  trial hooks in ``data["hooks"]`` (engine.train.hooks);
- ``fit(hp, x, y, seed=, nthread=, rounds=, schema=)``: one fit outside Tune (the refit);
- ``load(dir, schema)``: the Scorer a trial checkpointed;
- ``log_model(scorer, **common)`` / ``load_logged(uri, schema)``: MLflow;

Every family takes the model-input frame of an :class:`engine.train.schema.InputSchema`
(numbers and categoricals) and reports SHAP values per original column.
- ``explainer(scorer)``: SHAP values per row and feature (engine.train.explanation);
- ``card_notes(scorer)``: what the model card says about this kind of model.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from engine.train.families import logreg, random_forest, xgboost
from engine.train.schema import InputSchema


class Scorer(Protocol):
    """A trained model: probabilities of the positive class, never labels. ``rows``: a
    frame with the schema's columns (raw or model-input), or a 2-D array of numbers."""

    family: str
    schema: InputSchema

    @property
    def features(self) -> list[str]: ...

    def proba(self, rows: Any) -> NDArray[np.float64]: ...


class Family(Protocol):
    NAME: str
    OUTPUT: str
    ROUNDS: bool
    DEFAULT_SPACE: dict[str, list[float]]

    def space(self, spec: dict[str, list[float]]) -> dict[str, Any]: ...

    def fit(
        self,
        hp: dict[str, Any],
        x: Any,
        y: Any,
        *,
        seed: int,
        nthread: int,
        rounds: int,
        schema: InputSchema | None = None,
    ) -> Any: ...

    def train(self, config: dict[str, Any], data: dict[str, Any]) -> None: ...

    def load(self, directory: Any, schema: InputSchema) -> Any: ...

    def log_model(self, scorer: Any, **common: Any) -> Any: ...

    def load_logged(self, uri: str, schema: InputSchema) -> Any: ...

    def explainer(self, scorer: Any) -> Any: ...

    def card_notes(self, scorer: Any) -> list[str]: ...


_MODULES: tuple[Family, ...] = (xgboost, logreg, random_forest)
FAMILIES: dict[str, Family] = {m.NAME: m for m in _MODULES}


def dispatch(config: dict[str, Any], data: dict[str, Any]) -> None:
    """The one Tune trainable: hands the trial to its family's ``train``. It lives here,
    not in ``engine.train.search``, so a trial worker imports only the families (NumPy,
    XGBoost, scikit-learn), not MLflow and the driver's modules: seconds per worker."""
    if data.get("nodes_log"):
        _record_node(str(data["nodes_log"]))
    FAMILIES[config["family"]].train(config, data)


def _record_node(path: str) -> None:
    """Append which node runs this trial attempt to the search's shared folder (one short
    line, one O_APPEND write: lines from concurrent trials do not interleave)."""
    import json
    import os
    import time

    import ray
    from ray import tune

    ctx = ray.get_runtime_context()
    line = json.dumps(
        {
            "trial_id": str(tune.get_context().get_trial_id() or ""),
            "node_id": ctx.get_node_id(),
            "pid": os.getpid(),
            "from_checkpoint": tune.get_checkpoint() is not None,
            "time": time.time(),
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def explainer_for(scorer: Any) -> Any:
    """The SHAP explainer of a scorer's family (an engine.train.explanation.Explainer)."""
    return family(scorer.family).explainer(scorer)


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"unknown model family '{name}'; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


def default_spaces() -> dict[str, dict[str, list[float]]]:
    return {name: {k: list(v) for k, v in f.DEFAULT_SPACE.items()} for name, f in FAMILIES.items()}


def tune_space(families: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """One Tune space over all families: ``family`` plus each family's own parameters."""
    from ray import tune

    space: dict[str, Any] = {"family": tune.choice(sorted(families))}
    for name, spec in families.items():
        space[name] = family(name).space(spec)
    return space


INTEGER_PARAMS = {"max_depth", "min_child_weight", "max_iter", "n_estimators", "min_samples_leaf"}


def log_uniform_names() -> set[str]:
    return {"eta", "learning_rate", "lambda", "alpha", "C"}


def midpoint(spec: dict[str, list[float]]) -> dict[str, Any]:
    """The middle of each range (geometric for rates, rounded for integers): where the
    search starts each family, and what the family tests fit."""
    mid: dict[str, Any] = {}
    for name, (lo, hi) in spec.items():
        if name in INTEGER_PARAMS and float(lo).is_integer():
            mid[name] = round((lo + hi) / 2)
        elif name in log_uniform_names() and lo > 0:
            mid[name] = float((lo * hi) ** 0.5)
        else:
            mid[name] = (lo + hi) / 2
    return mid


def range_to_tune(name: str, lo: float, hi: float) -> Any:
    """``[low, high]`` -> a Tune distribution: integers stay integers, rates are log-scaled."""
    from ray import tune

    if name in INTEGER_PARAMS and float(lo).is_integer():
        return tune.randint(int(lo), int(hi) + 1)
    if name in log_uniform_names() and lo > 0:
        return tune.loguniform(lo, hi)
    return tune.uniform(lo, hi)
