"""MLflow tracking of a Tune search from the driver.

Every trial becomes an MLflow run nested under one parent run (tag
``mlflow.parentRunId``). All writes happen in the driver through this Tune callback, so
the sqlite backend never sees concurrent writers from trial processes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from engine.workspace import atomic_write_text

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
    """Tune pickles callbacks with the experiment, so the client is built lazily and the
    trial -> run map is also kept in ``runs_file`` (a resumed search reuses the runs)."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        tags: dict[str, str],
        runs_file: Path | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.tags = tags
        self.runs_file = runs_file
        self.runs: dict[str, str] = self.load_runs()
        self._client: MlflowClient | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_client"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Tuner.restore unpickles the callback saved when the search began: the file,
        # written on every new run, is the source of truth for the trial -> run map.
        self.__dict__.update(state, _client=None)
        self.runs = {**self.runs, **self.load_runs()}

    def get_state(self) -> dict[str, Any] | None:
        return {"runs": dict(self.runs)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.runs = {**state.get("runs", {}), **self.load_runs()}

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def load_runs(self) -> dict[str, str]:
        f: Path | None = getattr(self, "runs_file", None)
        if f is not None and f.exists():
            return dict(json.loads(f.read_text()))
        return dict(getattr(self, "runs", {}))

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if trial.trial_id in self.runs:  # restarted after a failure: same run
            self.client.set_tag(self.runs[trial.trial_id], "restarted", "true")
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
        if self.runs_file is not None:
            atomic_write_text(self.runs_file, json.dumps(self.runs, indent=2))
        cfg = dict(trial.config)
        fam = cfg.get("family")
        own = cfg.get(fam) if isinstance(cfg.get(fam), dict) else None
        flat = own if own is not None else {k: v for k, v in cfg.items() if k != "family"}
        params = [Param("family", str(fam))] + [Param(k, str(v)) for k, v in sorted(flat.items())]
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
            if k not in _SKIP
            and isinstance(v, int | float)
            and not isinstance(v, bool)
            and not (k == "valid_auc" and "valid_auc_rounds" in result)
        ]
        # Trials report every few rounds with the per-round curve since the last report:
        # MLflow still gets one valid_auc point per boosting round.
        for r, auc in result.get("valid_auc_rounds") or []:
            metrics.append(Metric("valid_auc", float(auc), ts, int(r)))
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
