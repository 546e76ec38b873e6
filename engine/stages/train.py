"""Stage: train. A Ray Tune search over the model families on a snapshot (or one
data-parallel XGBoost on Ray Train), every trial tracked in MLflow; uplift learners when
the project has a treatment; the winner registered under an alias with lineage tags and a
model card. ``insight models gate`` then decides on promotion.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from engine.config.project import ProjectConfig
from engine.errors import StateError
from engine.features import snapshot as snap
from engine.train.dataset import TrainingSet
from engine.train.hooks import TrialHook
from engine.train.search import SearchOutcome
from engine.workspace import Workspace


@dataclass
class TrainResult:
    model_name: str
    version: str
    alias: str
    family: str
    snapshot_id: str
    parent_run_id: str
    trials: int
    errored: int
    stopped_early: int
    best_metrics: dict[str, float]
    best_config: dict[str, Any]
    features: list[str]
    train_rows: int
    valid_rows: int
    test_rows: int
    test_auc: dict[str, float]
    uplift: dict[str, Any] | None
    experiment_path: str
    split: str = ""  # how the rows were split (time or random), as printed
    final_fit: str = ""  # how the registered model was fitted
    trial_nodes: dict[str, list[str]] = field(default_factory=dict)  # trial -> Ray node ids
    warnings: list[str] = field(default_factory=list)  # about the data, also in the card


def stage_train(
    cfg: ProjectConfig,
    ws: Workspace,
    snapshot_id: str | None = None,
    *,
    alias: str = "challenger",
    show_progress: bool = True,
    resume: bool = False,
    hooks: Sequence[TrialHook] = (),
) -> TrainResult:
    """Search on the connected Ray cluster; register the winner under ``alias`` with a card.

    ``hooks`` run inside every trial's worker (engine.train.hooks); none by default.
    """
    import mlflow

    from engine.governance.enforce import consented_training_rows
    from engine.tracking import code_version, setup_mlflow
    from engine.train.dataset import load_training_set
    from engine.train.search import pending_search

    exp = setup_mlflow(ws, cfg.name)
    pending = pending_search(ws, cfg.name) if resume else None
    if resume and pending is None:
        raise StateError(
            f"no interrupted search of '{cfg.name}' under {ws.tune}. Fix: run `insight train` "
            "without --resume."
        )
    if pending is not None:
        st = json.loads((pending / "insight-search.json").read_text())
        snapshot_id = st["snapshot_id"]
    s = snap.find(ws, cfg.name, snapshot_id)
    frame = s.read_pandas()  # read once: the training set and the uplift join use it
    # Only rows with consent to the training purpose (where the policy asks for it): the
    # training set and the uplift join read the same rows.
    frame, consent = consented_training_rows(cfg, ws, s, frame)
    ts = load_training_set(cfg, s, frame, consent=consent or {})
    # the campaign is read and joined before the search: its mistakes surface in seconds,
    # not after the whole search
    ud = _uplift_data(cfg, ws, ts, frame)
    tags = {"snapshot_id": s.id, "code_version": code_version(), "project": cfg.name}
    if pending is not None:
        run_ctx = mlflow.start_run(run_id=st["parent_run_id"])
    else:
        run_ctx = mlflow.start_run(experiment_id=exp, run_name=f"search-{s.id[:8]}", tags=tags)
    with run_ctx as run:
        parent = run.info.run_id
        out = _search(cfg, ws, ts, s, exp, parent, tags, pending, show_progress, hooks)
        out = _choose(cfg, ts, out, s.manifest.get("entity"))
        mlflow.log_params({f"best.{k}": v for k, v in out.best_config.items()})
        mlflow.log_metrics({f"best.{k}": v for k, v in out.best_metrics.items()})
        mlflow.log_metrics(
            {
                "trials": out.trials,
                "trials_errored": out.errored,
                "trials_stopped_early": out.stopped_early,
            }
        )
        uplift = _uplift(cfg, ws, ud, exp, parent, tags)
        ref, card = _register(cfg, ts, out, parent, tags, uplift, alias)
    return TrainResult(
        model_name=ref.name,
        version=ref.version,
        alias=alias,
        family=out.family,
        snapshot_id=s.id,
        parent_run_id=parent,
        trials=out.trials,
        errored=out.errored,
        stopped_early=out.stopped_early,
        best_metrics=out.best_metrics,
        best_config=out.best_config,
        features=ref.features,
        train_rows=len(ts.train),
        valid_rows=len(ts.valid),
        test_rows=len(ts.test),
        test_auc=card["metrics"]["auc"],
        uplift=uplift,
        experiment_path=str(out.experiment_path),
        trial_nodes=getattr(out, "trial_nodes", {}),
        split=ts.describe_split(),
        final_fit=ref.tags.get("final_fit", ""),
        warnings=list(ts.warnings),
    )


def _choose(cfg: ProjectConfig, ts: TrainingSet, out: Any, entity: str | None) -> Any:
    """On a small table, the family is chosen by k-fold CV among each family's best
    configuration (engine.train.choice); the chosen one is then refitted as usual."""
    from engine.train.choice import cv_choice, use_cv

    why = use_cv(cfg, ts)
    if why is None or len(out.family_best) < 2:
        return out
    c = cv_choice(cfg, ts, out.family_best, why, entity)
    out.choice = c.as_dict()
    out.family = c.family
    out.best_config = {"family": c.family, **c.config}
    chosen = out.family_best[c.family]
    out.best_metrics = {
        **out.best_metrics,
        "valid_auc": float(chosen["valid_auc"]),
        "round": float(c.rounds),
        "cv_auc": c.scores[c.family]["mean_auc"],
    }
    return out


def _search(
    cfg: ProjectConfig,
    ws: Workspace,
    ts: TrainingSet,
    s: snap.Snapshot,
    experiment_id: str,
    parent: str,
    tags: dict[str, str],
    pending: Any,
    show_progress: bool,
    hooks: Sequence[TrialHook],
) -> SearchOutcome:
    """The search (new or resumed), or one data-parallel fit with ``backend: ray_train``."""
    import mlflow

    from engine.train.search import resume_search, run_search

    if cfg.train.backend == "ray_train" and pending is None:
        from engine.train.distributed import train_distributed

        d = train_distributed(cfg, ws, ts, s.data, f"{cfg.name}-dist-{parent[:8]}")
        mlflow.log_params({"backend": "ray_train", "workers": d.workers})
        return SearchOutcome(
            best_config={"family": "xgboost", **d.params},
            best_metrics=d.metrics,
            family="xgboost",
            model_dir=d.model_dir,
            trials=1,
            errored=0,
            stopped_early=0,
            trial_runs={},
            experiment_path=ws.tune / f"{cfg.name}-dist-{parent[:8]}",
        )
    if pending is not None:
        return resume_search(cfg, ws, ts, pending, hooks)
    return run_search(
        cfg,
        ws,
        ts,
        experiment_id=experiment_id,
        parent_run_id=parent,
        tags=tags,
        show_progress=show_progress,
        hooks=hooks,
    )


def _uplift_data(cfg: ProjectConfig, ws: Workspace, ts: TrainingSet, frame: pd.DataFrame) -> Any:
    """The campaign rows joined to their features, when the project has a treatment."""
    if cfg.treatment is None or not cfg.train.uplift_learners:
        return None
    from engine.train.uplift import uplift_data

    return uplift_data(cfg, ts, frame, ws.root)


def _uplift(
    cfg: ProjectConfig,
    ws: Workspace,
    ud: Any,
    experiment_id: str,
    parent: str,
    tags: dict[str, str],
) -> dict[str, Any] | None:
    """The uplift learners' search, when the project has a treatment and learners."""
    if ud is None:
        return None
    import mlflow

    from engine.train.uplift import run_uplift_search

    uplift = run_uplift_search(
        cfg,
        ud,
        experiment_id=experiment_id,
        parent_run_id=parent,
        tags=tags,
        tracking_uri=ws.tracking_uri,
        storage_path=str(ws.tune.resolve()),
    )
    mlflow.log_metrics(
        {
            "uplift.best_qini_auc": uplift["best_qini"]["estimate"],
            "uplift.ate": uplift["ate"]["estimate"],
        }
    )
    return uplift


def _register(
    cfg: ProjectConfig,
    ts: TrainingSet,
    out: SearchOutcome,
    parent: str,
    tags: dict[str, str],
    uplift: dict[str, Any] | None,
    alias: str,
) -> tuple[Any, dict[str, Any]]:
    """Register the winner under ``alias`` with its lineage, then build and log its card."""
    from mlflow.tracking import MlflowClient

    from engine.registry.card import build_card, log_card
    from engine.registry.models import load_scorer, register_model

    scorer, final_fit = _final_model(cfg, ts, out)
    ref = register_model(
        model_name=cfg.train.model_name,
        scorer=scorer,
        x_example=ts.x("valid").head(20),
        tags={
            **tags,
            "parent_run_id": parent,
            "train_time_range": json.dumps(
                ts.fitted_range(cfg.train.refit and cfg.train.backend == "tune")
            ),
            "test_time_range": json.dumps(ts.range_of("test")),
            "split": ts.split,
            "split_time": str(ts.split_time),
            "test_time": str(ts.test_time),
            "final_fit": final_fit,
            "threshold": str(cfg.serve.threshold),
            "valid_auc": f"{out.best_metrics.get('valid_auc', float('nan')):.6f}",
        },
        alias=alias,
    )
    tune_backend = cfg.train.backend == "tune"
    card = build_card(
        cfg=cfg,
        ts=ts,
        scorer=load_scorer(ref),
        model={
            "name": ref.name,
            "version": ref.version,
            "family": out.family,
            "params": out.best_config,
            "parent_run_id": parent,
            "run_id": ref.run_id,
            "code_version": tags["code_version"],
            "threshold": cfg.serve.threshold,
        },
        search={
            "trials": out.trials,
            "errored": out.errored,
            "stopped_early": out.stopped_early,
            "backend": cfg.train.backend,
            "searcher": cfg.train.searcher if tune_backend else None,
            "scheduler": cfg.train.scheduler if tune_backend else None,
            "valid_auc": out.best_metrics.get("valid_auc"),
            "choice": out.choice
            or {"how": "the best trial's validation AUC (one validation split)"},
        },
        uplift=uplift,
        n_boot=cfg.train.gate.n_boot,
        final_fit=final_fit,
    )
    log_card(card, ref.run_id)
    if ts.consent is not None:  # the exclusion manifest, beside the model
        import mlflow

        mlflow.log_dict(ts.consent, "governance/consent_exclusions.json", run_id=ref.run_id)
    _log_profile(cfg, ts, scorer, uplift, ref)
    test_auc = card["metrics"]["auc"]
    client = MlflowClient()
    client.set_model_version_tag(ref.name, ref.version, "test_auc", f"{test_auc['estimate']:.6f}")
    return ref, card


def _log_profile(
    cfg: ProjectConfig, ts: TrainingSet, scorer: Any, uplift: dict[str, Any] | None, ref: Any
) -> None:
    """The training window's reference profile, logged with the model (engine.monitor)."""
    from mlflow.tracking import MlflowClient

    from engine.monitor.profile import PROFILE_ARTIFACT, log_profile, profile_for

    log_profile(profile_for(cfg, ts, scorer, uplift), ref.run_id)
    MlflowClient().set_model_version_tag(
        ref.name, ref.version, "reference_profile", PROFILE_ARTIFACT
    )


def _final_model(cfg: ProjectConfig, ts: TrainingSet, out: SearchOutcome) -> tuple[Any, str]:
    """The model to register and how it was fitted: the chosen configuration refitted on
    train + validation (``train.refit``, the default: a small table should not leave a
    quarter of its rows unused), else the best trial's own model. The test rows stay unseen
    either way. The data-parallel backend registers its one fit."""

    import shutil

    try:
        return _fit_final(cfg, ts, out)
    finally:  # the trial's copy in the scratch folder: a model of the data, not kept
        shutil.rmtree(out.model_dir, ignore_errors=True)


def _fit_final(cfg: ProjectConfig, ts: TrainingSet, out: SearchOutcome) -> tuple[Any, str]:
    from engine.train.families import family

    fam = family(out.family)
    if not cfg.train.refit or cfg.train.backend != "tune":
        return fam.load(out.model_dir, ts.schema), (
            f"the search's best trial, fitted on the {len(ts.train):,} train rows"
        )
    hp = {k: v for k, v in out.best_config.items() if k != "family"}
    rounds = int(out.best_metrics.get("round", cfg.train.num_boost_round))
    rows = ts.fit_rows(refit=True)  # train + validation, less what a label horizon purges
    scorer = fam.fit(
        hp,
        ts.x(rows),
        rows[ts.label].to_numpy(dtype="float64"),
        seed=cfg.train.seed,
        nthread=max(1, int(cfg.train.cpus_per_trial)),
        rounds=rounds,
        schema=ts.schema,
    )
    return scorer, (
        f"the chosen configuration refitted on train + validation ({len(rows):,} rows"
        f"{f', {rounds} rounds' if fam.ROUNDS else ''}); the "
        f"{len(ts.test):,} test rows are unseen"
    )
