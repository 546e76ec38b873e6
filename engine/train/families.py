"""Model families the search can try. One entry per family, listed explicitly."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray import tune


def xgboost_space(space: dict[str, list[float]]) -> dict[str, Any]:
    """Ray Tune search space from ``{param: [low, high]}`` (log scale for the learning rate)."""
    out: dict[str, Any] = {}
    for name, (lo, hi) in space.items():
        if name in {"max_depth", "min_child_weight"} and float(lo).is_integer():
            out[name] = tune.randint(int(lo), int(hi) + 1)
        elif name in {"eta", "learning_rate", "lambda", "alpha"} and lo > 0:
            out[name] = tune.loguniform(lo, hi)
        else:
            out[name] = tune.uniform(lo, hi)
    return out


def train_xgboost(
    config: dict[str, Any],
    data: dict[str, Any],
) -> None:
    """Tune function trainable: XGBoost, validation AUC/logloss reported every few rounds.

    The final report carries a checkpoint holding ``model.json`` (the Booster), so the
    driver can register exactly the model that produced the metric.
    """
    import xgboost as xgb

    x_tr: pd.DataFrame = data["x_train"]
    dtrain = xgb.DMatrix(x_tr, label=data["y_train"], feature_names=list(x_tr.columns))
    dvalid = xgb.DMatrix(data["x_valid"], label=data["y_valid"], feature_names=list(x_tr.columns))
    rounds = int(data["num_boost_round"])
    every = max(1, rounds // 12)
    params = {
        "objective": "binary:logistic",
        "eval_metric": ["logloss", "auc"],
        "tree_method": "hist",
        "nthread": int(data["nthread"]),
        "seed": int(data["seed"]),
        **config,
    }

    class _Report(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
            r = epoch + 1
            if r % every == 0 and r < rounds:
                v = evals_log["valid"]
                tune.report(
                    {"round": r, "valid_auc": v["auc"][-1], "valid_logloss": v["logloss"][-1]}
                )
            return False

    evals_result: dict[str, Any] = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=rounds,
        evals=[(dtrain, "train"), (dvalid, "valid")],
        evals_result=evals_result,
        verbose_eval=False,
        callbacks=[_Report()],
    )
    with tempfile.TemporaryDirectory() as d:
        booster.save_model(str(Path(d) / "model.json"))
        v, t = evals_result["valid"], evals_result["train"]
        tune.report(
            {
                "round": rounds,
                "valid_auc": float(v["auc"][-1]),
                "valid_logloss": float(v["logloss"][-1]),
                "train_auc": float(t["auc"][-1]),
                "best_valid_auc": float(np.max(v["auc"])),
            },
            checkpoint=tune.Checkpoint.from_directory(d),
        )
