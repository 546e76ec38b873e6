"""The train stage's search: Ray Tune over the model families, every trial tracked in MLflow.

- Searcher: Optuna (TPE) over one space holding ``family`` and each family's parameters;
  the first trials evaluate each family once (``points_to_evaluate``) so the baseline is
  always measured. ``searcher: random`` uses Tune's random search instead.
- Scheduler: ASHA on ``valid_auc`` with ``round`` (boosting rounds) as its time attribute.
- Concurrency: ``max_concurrent`` trials of ``cpus_per_trial`` CPUs; actors are reused.
- Failures: ``FailureConfig(max_failures)`` retries a failed trial from its last checkpoint;
  an interrupted search resumes with ``resume_search`` (``insight train --resume``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.project import ProjectConfig
from engine.errors import InsightError, StateError
from engine.train.dataset import TrainingSet
from engine.train.families import dispatch, tune_space
from engine.train.hooks import TrialHook
from engine.train.progress import RichTrialProgress
from engine.train.tracking import MLflowTrialCallback
from engine.workspace import Workspace, atomic_write_text

METRIC = "valid_auc"
STATE_FILE = "insight-search.json"
NODES_FILE = "trial-nodes.jsonl"  # one line per trial attempt: which node ran it


class SearchInterrupted(InsightError):
    exit_code = 130


@dataclass
class SearchOutcome:
    best_config: dict[str, Any]
    best_metrics: dict[str, float]
    family: str
    model_dir: Path
    trials: int
    errored: int
    stopped_early: int
    trial_runs: dict[str, str]
    experiment_path: Path
    trial_nodes: dict[str, list[str]] = field(default_factory=dict)
    # each family's best finished trial: {"config", "valid_auc", "round"} (engine.train.choice)
    family_best: dict[str, dict[str, Any]] = field(default_factory=dict)
    choice: dict[str, Any] | None = None  # how the family was chosen, when by CV


def _data(
    cfg: ProjectConfig, ts: TrainingSet, hooks: Sequence[TrialHook], nodes_log: Path | None
) -> dict[str, Any]:
    tc = cfg.train
    x_tr, y_tr = ts.xy("train")  # model-input frames (numbers and categoricals)
    x_va, y_va = ts.xy("valid")
    return {
        "x_train": x_tr,
        "y_train": y_tr,
        "x_valid": x_va,
        "y_valid": y_va,
        "num_boost_round": tc.num_boost_round,
        "checkpoint_every": tc.checkpoint_every,
        "report_every": tc.report_every,
        "nthread": max(1, int(tc.cpus_per_trial)),
        "seed": tc.seed,
        "schema": ts.schema,
        "hooks": list(hooks),
        "nodes_log": str(nodes_log) if nodes_log is not None else None,
    }


def _trainable(
    cfg: ProjectConfig,
    ts: TrainingSet,
    hooks: Sequence[TrialHook],
    nodes_log: Path | None = None,
) -> Any:
    from ray import tune

    return tune.with_resources(
        tune.with_parameters(dispatch, data=_data(cfg, ts, hooks, nodes_log)),
        {"cpu": cfg.train.cpus_per_trial},
    )


def _searcher(cfg: ProjectConfig) -> Any:
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    tc = cfg.train
    if tc.searcher == "random":
        return BasicVariantGenerator(random_state=tc.seed, max_concurrent=tc.max_concurrent)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    first = _first_points(tc.families)[: tc.num_samples]
    return ConcurrencyLimiter(
        OptunaSearch(
            points_to_evaluate=first,
            sampler=optuna.samplers.TPESampler(seed=tc.seed),
        ),
        max_concurrent=tc.max_concurrent,
    )


def _first_points(families: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    """One starting point per family (the middle of each range), flattened the way
    OptunaSearch flattens the space (``family/param``): every family is measured at
    least once, whatever the sampler prefers later."""
    from engine.train.families import midpoint

    mid = {f"{fam}/{k}": v for fam, spec in families.items() for k, v in midpoint(spec).items()}
    return [{"family": f, **mid} for f in sorted(families)]


def _scheduler(cfg: ProjectConfig) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    tc = cfg.train
    if tc.scheduler == "fifo" or tc.num_boost_round <= tc.grace_rounds:
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="round",
        max_t=tc.num_boost_round,
        grace_period=tc.grace_rounds,
        reduction_factor=3,
    )


def run_search(
    cfg: ProjectConfig,
    ws: Workspace,
    ts: TrainingSet,
    *,
    experiment_id: str,
    parent_run_id: str,
    tags: dict[str, str],
    verbose: int = 0,
    show_progress: bool = True,
    hooks: Sequence[TrialHook] = (),
) -> SearchOutcome:
    """Run the search on the Ray cluster this process is connected to."""
    from ray import tune

    tc = cfg.train
    name = f"{cfg.name}-{parent_run_id[:8]}"
    exp_path = ws.tune.resolve() / name
    exp_path.mkdir(parents=True, exist_ok=True)
    state = {
        "parent_run_id": parent_run_id,
        "experiment_id": experiment_id,
        "snapshot_id": ts.snapshot_id,
        "tags": tags,
        "status": "running",
    }
    atomic_write_text(exp_path / STATE_FILE, json.dumps(state, indent=2))
    callback = MLflowTrialCallback(
        ws.tracking_uri, experiment_id, parent_run_id, tags, runs_file=exp_path / "runs.json"
    )
    callbacks: list[Any] = [callback]
    if show_progress:
        callbacks.append(RichTrialProgress(tc.num_samples, METRIC))
    tuner = tune.Tuner(
        _trainable(cfg, ts, hooks, exp_path / NODES_FILE),
        param_space=tune_space(tc.families),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            num_samples=tc.num_samples,
            search_alg=_searcher(cfg),
            scheduler=_scheduler(cfg),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(ws.tune.resolve()),
            callbacks=callbacks,
            verbose=verbose,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=tc.max_failures),
        ),
    )
    return _outcome(tuner.fit(), ws, exp_path, callback, tc.num_samples)


def pending_search(ws: Workspace, project: str) -> Path | None:
    """The newest search of ``project`` that did not finish, or None."""
    found = []
    for f in ws.tune.glob(f"{project}-*/{STATE_FILE}"):
        st = json.loads(f.read_text())
        if st.get("status") != "finished":
            found.append((f.stat().st_mtime, f.parent))
    return max(found)[1] if found else None


def resume_search(
    cfg: ProjectConfig,
    ws: Workspace,
    ts: TrainingSet,
    exp_path: Path,
    hooks: Sequence[TrialHook] = (),
) -> SearchOutcome:
    """Resume an interrupted search: finished trials are kept, unfinished and errored ones
    continue from their last checkpoint, MLflow runs are reused."""
    from ray import tune

    if not tune.Tuner.can_restore(str(exp_path)):
        raise StateError(
            f"{exp_path} holds no restorable Tune experiment. Fix: run `insight train` "
            "without --resume to start a new search."
        )
    st = json.loads((exp_path / STATE_FILE).read_text())
    tuner = tune.Tuner.restore(
        str(exp_path),
        trainable=_trainable(cfg, ts, hooks, exp_path / NODES_FILE),
        resume_errored=True,
    )
    cb = MLflowTrialCallback(
        ws.tracking_uri,
        st["experiment_id"],
        st["parent_run_id"],
        st["tags"],
        runs_file=exp_path / "runs.json",
    )
    return _outcome(tuner.fit(), ws, exp_path, cb, cfg.train.num_samples)


def _outcome(
    results: Any, ws: Workspace, exp_path: Path, cb: MLflowTrialCallback, num_samples: int
) -> SearchOutcome:
    errored = sum(1 for i in range(len(results)) if results[i].error is not None)
    ended = results.num_terminated + results.num_errors
    if ended < len(results) or len(results) < num_samples:
        raise SearchInterrupted(
            f"the search was interrupted with {ended} of {num_samples} trials ended; its "
            f"state is saved in {exp_path}. Fix: `insight train --resume` continues it "
            "(finished trials are kept, the others restart from their last checkpoint)."
        )
    rounds = [r.metrics.get("round", 0) for r in results if r.metrics]
    full = max(rounds) if rounds else 0
    # The model registered must be the one the metric describes: among trials that ran the
    # full budget (their last checkpoint is their final model), the best last valid_auc.
    done = [
        r
        for r in results
        if r.error is None and r.metrics and r.metrics.get("round") == full and r.checkpoint
    ]
    if not done:
        raise InsightError(f"no trial finished ({errored} errored of {len(results)}).")
    best = max(done, key=lambda r: float(r.metrics[METRIC]))
    family_best: dict[str, dict[str, Any]] = {}
    for r in sorted(done, key=lambda r: float(r.metrics[METRIC]), reverse=True):
        f = str((r.config or {})["family"])
        if f not in family_best:
            family_best[f] = {
                "config": dict((r.config or {}).get(f, {})),
                "valid_auc": float(r.metrics[METRIC]),
                "round": int(r.metrics.get("round", 0)),
            }
    if best.checkpoint is None:
        raise InsightError("the best trial left no checkpoint; cannot register its model.")
    local = Path(tempfile.mkdtemp(prefix="best-", dir=ws.scratch))
    best.checkpoint.to_directory(str(local))
    metrics = {
        k: float(v)
        for k, v in (best.metrics or {}).items()
        if k in {"valid_auc", "valid_logloss", "round"}
    }
    st_path = exp_path / STATE_FILE
    st = json.loads(st_path.read_text())
    st["status"] = "finished"
    atomic_write_text(st_path, json.dumps(st, indent=2))
    config = dict(best.config or {})
    fam = str(config["family"])
    runs = cb.load_runs()
    nodes = trial_nodes(exp_path / NODES_FILE)
    for trial_id, seen in nodes.items():
        if trial_id in runs:  # every node that ran an attempt of the trial, in order
            cb.client.set_tag(runs[trial_id], "nodes", ",".join(seen))
    return SearchOutcome(
        best_config={"family": fam, **config.get(fam, {})},
        best_metrics=metrics,
        family=fam,
        model_dir=local,
        trials=len(results),
        errored=errored,
        stopped_early=sum(1 for r in rounds if r < full),
        trial_runs=runs,
        experiment_path=exp_path,
        trial_nodes=nodes,
        family_best=family_best,
    )


def trial_nodes(path: Path) -> dict[str, list[str]]:
    """Trial id -> the Ray node ids that ran it (a retried trial lists each), from the
    lines the trials appended (engine.train.families.dispatch)."""
    out: dict[str, list[str]] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a killed node
        seen = out.setdefault(str(rec.get("trial_id")), [])
        if rec.get("node_id") and rec["node_id"] not in seen:
            seen.append(str(rec["node_id"]))
    return out
