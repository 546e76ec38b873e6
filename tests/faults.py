"""Fault injection for the reliability tests, as trial hooks (engine.train.hooks): nothing
in the engine knows about faults (after xgboost_ray's fault-tolerance tests).

- :class:`RecordPid` writes the trial worker's pid to a folder, so a test can SIGKILL it;
- :class:`SlowRounds` sleeps after each round, so a trial has a "mid" to be killed in.

``python -m tests.faults SECONDS insight-args...`` runs the real ``insight`` CLI with
:class:`SlowRounds` hooked into its train stage (for the interrupt-and-resume test).
``python -m tests.faults stall-monitor FILE insight-args...`` runs it with the monitor's
window computation followed by a stall: FILE appears when the run has measured its window
and not yet saved anything, so a test can kill it right there.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path


class RecordPid:
    def __init__(self, folder: str | Path) -> None:
        self.folder = str(folder)

    def on_trial_start(self, trial_id: str) -> None:
        Path(self.folder, f"{os.getpid()}.pid").write_text(trial_id)

    def on_round(self, trial_id: str, round: int) -> None:
        pass


class SlowRounds:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_trial_start(self, trial_id: str) -> None:
        pass

    def on_round(self, trial_id: str, round: int) -> None:
        time.sleep(self.seconds)


def ship_by_value() -> None:
    """Trial workers get the hooks pickled by value: they need not import ``tests``."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _stall_monitor(marker: str) -> None:
    import engine.stages.monitor as monitor_stage

    real = monitor_stage.monitor_window

    def stalled(*args: object, **kw: object) -> dict[str, object]:
        out = real(*args, **kw)  # type: ignore[arg-type]
        Path(marker).write_text("measured")
        time.sleep(120)
        return out

    monitor_stage.monitor_window = stalled  # type: ignore[assignment]


def main() -> None:
    import engine.stages.train as train_stage
    from engine.cli import main as insight

    if sys.argv[1] == "stall-monitor":
        _stall_monitor(sys.argv[2])
        sys.argv = ["insight", *sys.argv[3:]]
        insight()
        return
    seconds = float(sys.argv[1])
    ship_by_value()
    train_stage.stage_train = functools.partial(  # type: ignore[assignment]
        train_stage.stage_train, hooks=[SlowRounds(seconds)]
    )
    sys.argv = ["insight", *sys.argv[2:]]
    insight()


if __name__ == "__main__":
    main()
