"""Hooks that run inside each trial's worker: when a trial starts and after each round.

The engine runs none by default. They are the one seam through which code outside the
engine reaches into a running trial: the fault-tolerance tests use it to record a worker's
pid so they can kill it mid-trial, and to slow the rounds so that there is a "mid"
(tests/faults.py, after xgboost_ray's fault-tolerance tests); a user can use it to
profile or log trials. A hook travels to the worker with the trial's data, so it must be
picklable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class TrialHook(Protocol):
    def on_trial_start(self, trial_id: str) -> None: ...

    def on_round(self, trial_id: str, round: int) -> None: ...


def trial_started(hooks: Sequence[TrialHook]) -> str:
    """Run ``on_trial_start`` of every hook; return the trial id (empty outside Tune)."""
    if not hooks:
        return ""
    from ray import tune

    trial_id = str(tune.get_context().get_trial_id() or "")
    for h in hooks:
        h.on_trial_start(trial_id)
    return trial_id


def round_done(hooks: Sequence[TrialHook], trial_id: str, round: int) -> None:
    for h in hooks:
        h.on_round(trial_id, round)
