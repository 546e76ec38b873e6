"""XGBoost (``hist``), validation AUC reported every boosting round for ASHA.

Checkpoints every ``checkpoint_every`` rounds (the Booster so far). A trial restarted after
a failure resumes from its last checkpoint and trains only the remaining rounds.

Logged to MLflow as the *Booster*, not the sklearn wrapper: a pyfunc ``predict`` of an
``XGBClassifier`` returns class labels, the Booster returns probabilities (STACK.md).
Explained with XGBoost's own TreeSHAP (``pred_contribs``), in log-odds: exact and additive.
``shap.TreeExplainer`` (0.51) gave the same per-feature values but a base value off by a
constant 0.129 log-odds on a model served here (XGBoost 3.2, base_score 0.25, missing
values), so its rows did not add up to the model's margin.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.train.explanation import Explanation
from engine.train.hooks import round_done, trial_started
from engine.train.schema import InputSchema

NAME = "xgboost"
OUTPUT = "log_odds"
ROUNDS = True  # fit() takes the rounds the search found
DEFAULT_SPACE: dict[str, list[float]] = {
    "max_depth": [2.0, 6.0],
    "eta": [0.03, 0.3],
    "subsample": [0.6, 1.0],
    "min_child_weight": [1.0, 10.0],
}


def space(spec: dict[str, list[float]]) -> dict[str, Any]:
    from engine.train.families import range_to_tune

    return {k: range_to_tune(k, lo, hi) for k, (lo, hi) in spec.items()}


def params(config: dict[str, Any], nthread: int, seed: int) -> dict[str, Any]:
    return {
        "objective": "binary:logistic",
        "eval_metric": ["logloss", "auc"],
        "tree_method": "hist",
        "nthread": nthread,
        "seed": seed,
        **config,
    }


def dmatrix(x: Any, schema: InputSchema, label: Any = None) -> Any:
    """A DMatrix of model inputs; categorical columns use XGBoost's native support, with
    the schema's fixed categories (so codes agree between training and serving)."""
    import xgboost as xgb

    return xgb.DMatrix(
        schema.frame(x), label=label, feature_names=schema.names, enable_categorical=True
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
) -> XGBScorer:
    """One fit of ``rounds`` boosting rounds with parameters ``hp`` (no Tune)."""
    import xgboost as xgb

    schema = schema or InputSchema.infer(x, list(x.columns))
    d = dmatrix(x, schema, y)
    return XGBScorer(xgb.train(params(hp, nthread, seed), d, num_boost_round=rounds), schema)


def train(config: dict[str, Any], data: dict[str, Any]) -> None:
    import xgboost as xgb
    from ray import tune

    hp = dict(config[NAME])
    schema: InputSchema = data["schema"]
    dtrain = dmatrix(data["x_train"], schema, data["y_train"])
    dvalid = dmatrix(data["x_valid"], schema, data["y_valid"])
    rounds = int(data["num_boost_round"])
    every = int(data.get("checkpoint_every", 10))
    hooks = data.get("hooks") or ()
    trial_id = trial_started(hooks)

    start, booster = 0, None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            booster = xgb.Booster()
            booster.load_model(str(Path(d) / "model.json"))
            start = json.loads((Path(d) / "state.json").read_text())["round"]

    report_every = int(data.get("report_every") or 0) or max(1, rounds // 40)
    pending: list[list[float]] = []  # (round, valid_auc) since the last report

    class _Report(xgb.callback.TrainingCallback):
        """Every round's validation AUC is kept; a report goes to Tune every
        ``report_every`` rounds (and at checkpoints and the end) carrying the rounds since
        the last one. Each report costs the Tune driver a few ms of CPU: one per round made
        2 parallel trials no faster than 1 on this 2-CPU machine (benchmarks/NOTES.md)."""

        def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
            r = start + epoch + 1
            round_done(hooks, trial_id, r)
            v = evals_log["valid"]
            pending.append([r, float(v["auc"][-1])])
            ckpt = r == rounds or r % every == 0
            if not ckpt and r % report_every:
                return False
            m = {
                "round": r,
                "valid_auc": float(v["auc"][-1]),
                "valid_logloss": float(v["logloss"][-1]),
                "resumed_from_round": start,
                "valid_auc_rounds": list(pending),
            }
            pending.clear()
            if ckpt:
                with tempfile.TemporaryDirectory() as d:
                    model.save_model(str(Path(d) / "model.json"))
                    Path(d, "state.json").write_text(json.dumps({"round": r, "family": NAME}))
                    tune.report(m, checkpoint=tune.Checkpoint.from_directory(d))
            else:
                tune.report(m)
            return False

    if start < rounds:
        xgb.train(
            params(hp, int(data["nthread"]), int(data["seed"])),
            dtrain,
            num_boost_round=rounds - start,
            evals=[(dvalid, "valid")],
            verbose_eval=False,
            callbacks=[_Report()],
            xgb_model=booster,
        )


@dataclass
class XGBScorer:
    booster: Any
    schema: InputSchema
    family: str = NAME

    @property
    def features(self) -> list[str]:
        return self.schema.names

    def proba(self, rows: Any) -> NDArray[np.float64]:
        return np.asarray(self.booster.predict(dmatrix(rows, self.schema)), dtype=np.float64)


def load(directory: str | Path, schema: InputSchema) -> XGBScorer:
    """The model a trial checkpointed."""
    import xgboost as xgb

    b = xgb.Booster()
    b.load_model(str(Path(directory) / "model.json"))
    return XGBScorer(b, schema)


def log_model(scorer: Any, **common: Any) -> Any:
    """Log the Booster in the active MLflow run; ``common``: name, signature, input example,
    registered model name. Requirements are explicit: inferring them costs ~7 s (STACK.md)."""
    import mlflow
    import xgboost as xgb

    return mlflow.xgboost.log_model(
        scorer.booster,
        pip_requirements=[f"xgboost=={xgb.__version__}", f"mlflow=={mlflow.__version__}"],
        model_format="json",
        **common,
    )


def load_logged(uri: str, schema: InputSchema) -> XGBScorer:
    import mlflow

    return XGBScorer(mlflow.xgboost.load_model(uri), schema)


@dataclass
class XGBExplainer:
    scorer: XGBScorer
    output: str = OUTPUT

    def explain(self, x: Any) -> Explanation:
        c = self.scorer.booster.predict(dmatrix(x, self.scorer.schema), pred_contribs=True)
        return Explanation(float(c[0, -1]), np.asarray(c[:, :-1], dtype=np.float64), OUTPUT)


def explainer(scorer: Any) -> XGBExplainer:
    return XGBExplainer(scorer)


def card_notes(scorer: Any) -> list[str]:
    n = int(scorer.booster.num_boosted_rounds())
    cats = scorer.schema.categorical
    enc = f"; {len(cats)} categorical input(s) split natively" if cats else ""
    return [
        f"Gradient-boosted trees (XGBoost hist, {n} rounds{enc}). Missing values (and unseen "
        "categories) follow the branch learned in training; scores are probabilities, SHAP "
        "values log-odds."
    ]
