"""MLflow tracking of a Tune search from the driver.

Every trial becomes an MLflow run nested under one parent run (tag
``mlflow.parentRunId``). All writes happen in the driver through this Tune callback, so
the sqlite backend never sees concurrent writers from trial processes.
"""

from __future__ import annotations

import time
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback

_SKIP = {
    "time_this_iter_s",
    "time_total_s",
    "timestamp",
    "training_iteration",
    "pid",
    "time_since_restore",
    "iterations_since_restore",
    "done",
}


class MLflowTrialCallback(Callback):
    def __init__(
        self, tracking_uri: str, experiment_id: str, parent_run_id: str, tags: dict[str, str]
    ) -> None:
        self.client = MlflowClient(tracking_uri)
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.tags = tags
        self.runs: dict[str, str] = {}

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if trial.trial_id in self.runs:  # restarted after a failure: same run
            return
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            "trial_id": trial.trial_id,
            **self.tags,
        }
        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{trial.trial_id}", tags=tags
        )
        self.runs[trial.trial_id] = run.info.run_id
        params = [Param(k, str(v)) for k, v in sorted(trial.config.items())]
        self.client.log_batch(run.info.run_id, params=params)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        run_id = self.runs.get(trial.trial_id)
        if run_id is None:
            return
        step = int(result.get("round", result.get("training_iteration", 0)))
        ts = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), ts, step)
            for k, v in result.items()
            if k not in _SKIP and isinstance(v, int | float) and not isinstance(v, bool)
        ]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._end(trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._end(trial, "FAILED")

    def _end(self, trial: Any, status: str) -> None:
        run_id = self.runs.get(trial.trial_id)
        if run_id is not None:
            self.client.log_batch(run_id, tags=[RunTag("final_status", status)])
            self.client.set_terminated(run_id, status)
