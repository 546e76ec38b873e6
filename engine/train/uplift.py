"""Uplift meta-learners over XGBoost, searched with Ray Tune and scored by Qini AUC.

Data: the treatment source's rows (one per randomized assignment) joined, per entity, to
the snapshot row with the latest label time at or before the assignment time
(``merge_asof`` backward): every feature was computed from events before that label time,
so no feature sees the campaign or its outcome. A campaign is one randomized moment, so
the held-out split is random (stratified by treatment), not by time.

Learners (Kunzel et al. 2019):
- T-learner: mu1 on treated, mu0 on control; tau = mu1(x) - mu0(x).
- X-learner: imputed effects D1 = y - mu0(x) (treated), D0 = mu1(x) - y (control);
  regressors tau1, tau0 on them; tau = e tau0(x) + (1 - e) tau1(x), e the treated share
  (randomized assignment: the propensity is a constant).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from engine.config.project import ProjectConfig
from engine.errors import DataError
from engine.kernels.effects import bootstrap_ci
from engine.kernels.qini import qini_auc_bootstrap, uplift_metrics
from engine.train.dataset import TrainingSet

LEARNERS = ("t_learner", "x_learner")


@dataclass(frozen=True)
class UpliftData:
    x_train: pd.DataFrame
    t_train: NDArray[np.float64]
    y_train: NDArray[np.float64]
    x_test: pd.DataFrame
    t_test: NDArray[np.float64]
    y_test: NDArray[np.float64]


def uplift_data(
    cfg: ProjectConfig, ts: TrainingSet, snapshot_df: pd.DataFrame, workspace: Any
) -> UpliftData:
    from engine.data.sources import read_frame

    assert cfg.treatment is not None
    tr = cfg.treatment
    src = cfg.sources[tr.source]
    if src.entity is None:
        raise DataError(
            f"treatment source '{tr.source}' names no entity; the join needs one. Fix: add "
            f"sources.{tr.source}.entity, or set train.uplift_learners: [] to skip uplift."
        )
    key = cfg.entities[src.entity].key
    when = src.event_time
    lt = ts.time_col
    assert when is not None and lt is not None  # checked when the file loaded (_check_treatment)
    camp = read_frame(cfg, tr.source, workspace, [key, when, tr.column, tr.outcome])
    camp[tr.column] = treated_01(camp[tr.column], tr.control, tr.column)
    camp = camp.dropna(subset=[tr.column])
    feats = snapshot_df[[key, lt, *ts.features]].sort_values(lt)
    # one time unit on both sides (a Parquet file of milliseconds gave "incompatible merge
    # keys"), and keys compared as the same type
    feats[lt] = feats[lt].astype("datetime64[ns]")
    camp[when] = camp[when].astype("datetime64[ns]")
    if feats[key].dtype != camp[key].dtype:
        camp[key] = camp[key].astype(feats[key].dtype)
    camp = camp.sort_values(when)
    joined = pd.merge_asof(
        camp,
        feats,
        left_on=when,
        right_on=lt,
        by=key,
        direction="backward",
        allow_exact_matches=True,
    ).dropna(subset=[lt])
    if len(joined) < 40 or joined[tr.column].nunique() < 2:
        raise DataError(
            f"only {len(joined)} campaign rows have features at or before their assignment "
            "time (or one arm is empty); uplift needs both arms. Fix: more data."
        )
    rng = np.random.default_rng(cfg.train.seed)
    test = np.zeros(len(joined), dtype=bool)
    t_all = joined[tr.column].to_numpy()
    for arm in (0, 1):  # stratified 30% hold-out per arm
        idx = np.flatnonzero(t_all == arm)
        test[rng.choice(idx, size=max(1, int(0.3 * idx.size)), replace=False)] = True
    x = ts.x(joined)  # the model inputs, categoricals included
    t = t_all.astype(np.float64)
    y = joined[tr.outcome].to_numpy(dtype=np.float64)
    return UpliftData(x[~test], t[~test], y[~test], x[test], t[test], y[test])


def treated_01(values: pd.Series, control: str | None, column: str) -> pd.Series:
    """The treatment column as 0/1: the control value 0 and every other value 1 (text arms
    such as 'Womens E-Mail' / 'No E-Mail'), or a column already 0/1 (false/true). A text
    column without ``treatment.control`` crashed deep in the split ('a cannot be empty
    unless no samples are taken'); now it is this error, naming the values."""
    from engine.targeting.campaign import arm_text

    text = arm_text(values)
    seen = sorted(str(v) for v in text.dropna().unique())
    if control is not None:
        if control not in seen:
            raise DataError(
                f"treatment.control is {control!r}, not a value of '{column}' (values: "
                f"{seen[:8]}). Fix: set it to the control arm's value."
            )
        if len(seen) > 2:
            raise DataError(
                f"'{column}' has {len(seen)} arms ({seen[:8]}); uplift on a churn project "
                "compares one treatment with the control. Fix: map the arms to two in the "
                "source, or make the campaign a targeting project (insight init --from "
                "TABLE --treatment COLUMN --control VALUE --outcome COLUMN: any number of "
                "arms)."
            )
        return (text != control).astype("float64").where(text.notna())
    known = {"0": 0.0, "1": 1.0, "false": 0.0, "true": 1.0}
    odd = [v for v in seen if v.lower() not in known]
    if odd:
        raise DataError(
            f"'{column}' holds {seen[:8]}, not 0/1: which value is the control? Fix: set "
            f"treatment.control (e.g. treatment.control: {seen[0]!r})."
        )
    return text.str.lower().map(known).astype("float64")


def _xgb(kind: str, hp: dict[str, Any], seed: int) -> Any:
    """An XGBoost classifier (outcome models) or regressor (X-learner effect models)."""
    import xgboost

    cls = xgboost.XGBClassifier if kind == "classifier" else xgboost.XGBRegressor
    return cls(
        n_estimators=int(hp.get("n_estimators", 100)),
        max_depth=int(hp.get("max_depth", 3)),
        learning_rate=float(hp.get("eta", 0.1)),
        n_jobs=1,
        random_state=seed,
        tree_method="hist",
        enable_categorical=True,
    )


def fit_predict(learner: str, hp: dict[str, Any], d: UpliftData, seed: int) -> NDArray[np.float64]:
    """Fit ``learner`` on the training part; return uplift scores for the test part."""
    x, t, y = d.x_train, d.t_train, d.y_train
    m1 = _xgb("classifier", hp, seed).fit(x[t == 1], y[t == 1])
    m0 = _xgb("classifier", hp, seed).fit(x[t == 0], y[t == 0])
    xt = d.x_test
    if learner == "t_learner":
        return np.asarray(m1.predict_proba(xt)[:, 1] - m0.predict_proba(xt)[:, 1])
    if learner == "x_learner":
        d1 = y[t == 1] - m0.predict_proba(x[t == 1])[:, 1]
        d0 = m1.predict_proba(x[t == 0])[:, 1] - y[t == 0]
        tau1 = _xgb("regressor", hp, seed).fit(x[t == 1], d1)
        tau0 = _xgb("regressor", hp, seed).fit(x[t == 0], d0)
        e = float(t.mean())
        return np.asarray(e * tau0.predict(xt) + (1 - e) * tau1.predict(xt), dtype=np.float64)
    raise ValueError(f"unknown uplift learner '{learner}'; known: {LEARNERS}")


def tune_trainable(config: dict[str, Any], data: dict[str, Any]) -> None:
    from ray import tune

    d: UpliftData = data["uplift"]
    s = fit_predict(config["learner"], config, d, int(data["seed"]))
    m = uplift_metrics(d.y_test, d.t_test, s)
    tune.report({"qini_auc": m.qini_auc, "uplift_auc": m.uplift_auc, "round": 1})


def run_uplift_search(
    cfg: ProjectConfig,
    d: UpliftData,
    *,
    experiment_id: str,
    parent_run_id: str,
    tags: dict[str, str],
    tracking_uri: str,
    storage_path: str,
) -> dict[str, Any]:
    """A Tune grid over learners x depth; each trial an MLflow run under the parent. The
    trials reuse their worker processes (a trial is a second of fitting; a fresh actor is
    several of imports); Tune's state lives under ``storage_path`` (the workspace)."""
    from ray import tune

    from engine.train.tracking import MLflowTrialCallback

    learners = list(cfg.train.uplift_learners)
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(tune_trainable, data={"uplift": d, "seed": cfg.train.seed}),
            {"cpu": 1},
        ),
        param_space={
            "family": "uplift",
            "learner": tune.grid_search(learners),
            "max_depth": tune.grid_search([2, 4]),
            "eta": 0.1,
            "n_estimators": 100,
        },
        tune_config=tune.TuneConfig(
            metric="qini_auc",
            mode="max",
            max_concurrent_trials=cfg.train.max_concurrent,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"{cfg.name}-uplift-{parent_run_id[:8]}",
            storage_path=storage_path,
            callbacks=[
                MLflowTrialCallback(
                    tracking_uri, experiment_id, parent_run_id, {**tags, "kind": "uplift"}
                )
            ],
            verbose=0,
        ),
    )
    results = tuner.fit()
    best = results.get_best_result()
    cfg_best = dict(best.config or {})
    s = fit_predict(cfg_best["learner"], cfg_best, d, cfg.train.seed)
    n_boot = cfg.train.gate.n_boot
    by_learner: dict[str, Any] = {}
    for i in range(len(results)):
        r = results[i]
        if r.error is None and r.metrics and r.config:
            name = f"{r.config['learner']}(max_depth={r.config['max_depth']})"
            by_learner[name] = {
                "qini_auc": {"estimate": float(r.metrics["qini_auc"]), "low": None, "high": None},
                "uplift_auc": float(r.metrics["uplift_auc"]),
            }
    best_name = f"{cfg_best['learner']}(max_depth={cfg_best['max_depth']})"
    q = qini_auc_bootstrap(d.y_test, d.t_test, s, n_boot=n_boot, seed=cfg.train.seed)
    by_learner[best_name]["qini_auc"] = q._asdict()
    ate = bootstrap_ci(d.y_test, d.t_test, n_boot=max(n_boot, 100), seed=cfg.train.seed)
    return {
        "rows": int(d.y_test.size),
        "train_rows": int(d.y_train.size),
        "ate": {"estimate": ate.estimate, "low": ate.low, "high": ate.high},
        "learners": by_learner,
        "best": best_name,
        "best_qini": by_learner[best_name]["qini_auc"],
        "split": "random 30% per arm (one randomized campaign: no time order to split on)",
        "curves": curves(d.y_test, d.t_test, s, alpha=0.05, seed=cfg.train.seed),
    }


def curves(
    y: np.ndarray, t: np.ndarray, s: np.ndarray, *, alpha: float, seed: int, points: int = 51
) -> dict[str, Any]:
    """The best learner's Qini curve with its pointwise bootstrap band, its uplift curve and
    the random-targeting line, at ``points`` shares of rows targeted: aggregates only (the
    report plots them; no row leaves)."""
    from engine.kernels.qini import qini_band, qini_curve, uplift_curve

    frac, lo, hi = qini_band(y, t, s, n_boot=200, alpha=alpha, points=points, seed=seed)
    qx, qv = qini_curve(y, t, s)
    ux, uv = uplift_curve(y, t, s)
    at = frac * y.size
    q = np.interp(at, qx, qv)
    return {
        "fraction": [round(float(v), 4) for v in frac],
        "qini": [float(v) for v in q],
        "qini_low": [float(v) for v in lo],
        "qini_high": [float(v) for v in hi],
        "random": [float(v) for v in frac * qv[-1]],
        "uplift": [float(v) for v in np.interp(at, ux, uv)],
        "rows": int(y.size),
        "n_boot": 200,
    }
