"""XGBoost (``hist``), validation AUC reported every boosting round for ASHA.

Checkpoints every ``checkpoint_every`` rounds (the Booster so far). A trial restarted after
a failure resumes from its last checkpoint and trains only the remaining rounds.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

NAME = "xgboost"
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


def train(config: dict[str, Any], data: dict[str, Any]) -> None:
    import xgboost as xgb
    from ray import tune

    hp = dict(config[NAME])
    x_tr = data["x_train"]
    names = list(x_tr.columns)
    dtrain = xgb.DMatrix(x_tr, label=data["y_train"], feature_names=names)
    dvalid = xgb.DMatrix(data["x_valid"], label=data["y_valid"], feature_names=names)
    rounds = int(data["num_boost_round"])
    every = int(data.get("checkpoint_every", 10))
    # Fault-injection knobs (tests/test_train_faults.py): where to write this worker's pid
    # so a test can SIGKILL it mid-trial, and a pause per round so there is a "mid".
    pid_dir = data.get("pid_dir")
    delay = float(data.get("round_delay_s") or 0.0)
    if pid_dir:
        Path(pid_dir, f"{os.getpid()}.pid").write_text(str(tune.get_context().get_trial_id()))

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
            if delay:
                time.sleep(delay)
            r = start + epoch + 1
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
    features: list[str]
    family: str = NAME

    def proba(self, rows: NDArray[np.float64]) -> NDArray[np.float64]:
        import xgboost as xgb

        d = xgb.DMatrix(rows, feature_names=self.features)
        return np.asarray(self.booster.predict(d), dtype=np.float64)


def load(directory: str | Path, features: list[str]) -> XGBScorer:
    import xgboost as xgb

    b = xgb.Booster()
    b.load_model(str(Path(directory) / "model.json"))
    return XGBScorer(b, features)
