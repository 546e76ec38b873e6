"""A rich progress bar for a Tune search, driven from the driver by a Tune callback."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class RichTrialProgress(Callback):
    def __init__(self, total: int, metric: str) -> None:
        self.metric = metric
        self.total = total
        self.best: float | None = None
        self.running = 0
        self.progress: Progress | None = None  # built in setup(): Tune pickles callbacks
        self.task: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in {"progress", "task"}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, progress=None, task=None)

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        self.progress = Progress(
            TextColumn("[bold]tune[/] trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
        )
        self.task = self.progress.add_task("trials", total=self.total, status="starting")
        self.progress.start()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.running += 1
        self._refresh()

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        v = result.get(self.metric)
        if isinstance(v, int | float) and (self.best is None or v > self.best):
            self.best = float(v)
        self._refresh()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.running -= 1
        if self.progress is not None:
            self.progress.advance(self.task)
        self._refresh()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.on_trial_complete(iteration, trials, trial)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _refresh(self) -> None:
        if self.progress is None:
            return
        best = f"best {self.metric}={self.best:.4f}" if self.best is not None else ""
        self.progress.update(self.task, status=f"running {self.running}  {best}")
