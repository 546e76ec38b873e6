"""Meta-learners for one or more treatment arms against a control, over XGBoost base
models, fitted with cross-fitting so that every row of the campaign is scored out of fold.

For arm k (1..K-1) against the control (0), with mu_a(x) = E[Y | x, arm a] and the arm
shares p_a (a randomised assignment: the propensity is a constant, estimated by the
share):

- S-learner: one model of Y on (x, arm); tau_k = f(x, k) - f(x, 0).
- T-learner: one model per arm; tau_k = mu_k(x) - mu_0(x).
- X-learner (Kunzel et al. 2019): imputed effects D1 = y - mu_0(x) on arm k, D0 =
  mu_k(x) - y on the control; regressors tau1, tau0 on them; tau_k = g tau0(x) + (1 - g)
  tau1(x), g = p_k / (p_k + p_0).
- DR-learner (Kennedy 2023): pseudo-outcomes psi = mu_k - mu_0 + 1[a=k] (y - mu_k) / p_k
  - 1[a=0] (y - mu_0) / p_0 from nuisances fitted out of sample (a 2-fold split inside
  the training part), regressed on x.

``crossfit`` returns, per row, the uplift of each arm and the outcome predicted under
each arm, both from models that never saw the row: what segments, calibration and the
policy's held-out value are computed from.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from engine.targeting.campaign import Campaign

LEARNERS = ("s_learner", "t_learner", "x_learner", "dr_learner")
# simplest first: the choice prefers the earlier of two configurations within noise
COMPLEXITY = {"s_learner": 0, "t_learner": 1, "x_learner": 2, "dr_learner": 3}
ARM = "__arm__"


def base_model(kind: str, hp: dict[str, Any], seed: int, threads: int = 1) -> Any:
    """An XGBoost classifier (binary outcome models) or regressor (amounts, effects)."""
    import xgboost

    cls = xgboost.XGBClassifier if kind == "classifier" else xgboost.XGBRegressor
    return cls(
        n_estimators=int(hp.get("n_estimators", 100)),
        max_depth=int(hp.get("max_depth", 3)),
        learning_rate=float(hp.get("eta", 0.1)),
        min_child_weight=float(hp.get("min_child_weight", 5.0)),
        n_jobs=threads,
        random_state=seed,
        tree_method="hist",
        enable_categorical=True,
        max_cat_to_onehot=8,
    )


def _mat(x: pd.DataFrame) -> Any:
    """What the base models take: the frame where it has categories (XGBoost reads them),
    else a float32 matrix (the frame's per-call type checks cost 30% of a fit at 1e6 rows)."""
    if any(isinstance(t, pd.CategoricalDtype) for t in x.dtypes):
        return x
    return x.to_numpy(dtype=np.float32)


def _predict(m: Any, x: Any) -> NDArray[np.float64]:
    x = _mat(x) if isinstance(x, pd.DataFrame) else x
    if hasattr(m, "predict_proba"):
        return np.asarray(m.predict_proba(x)[:, 1], dtype=np.float64)
    return np.asarray(m.predict(x), dtype=np.float64)


@dataclass
class UpliftModel:
    """A fitted learner: ``uplift(x)`` (rows x arms-1) and ``outcomes(x)`` (rows x arms)."""

    learner: str
    hp: dict[str, Any]
    arms: list[str]
    outcome_kind: str
    features: list[str]
    categories: dict[str, list[Any]]
    shares: list[float]
    outcome_models: list[Any] = field(default_factory=list)  # per arm (one for S)
    effect_models: list[Any] = field(default_factory=list)  # per treated arm (X: pairs)

    def inputs(self, x: pd.DataFrame) -> pd.DataFrame:
        """Columns in training order, text as the training categories (an unseen value is
        missing: XGBoost then takes the learned default branch)."""
        out: dict[str, Any] = {}
        for c in self.features:
            v = x[c] if c in x.columns else pd.Series(np.nan, index=x.index)
            if c in self.categories:
                out[c] = pd.Categorical(
                    v.astype("string").str.strip(), categories=self.categories[c]
                )
            else:
                out[c] = pd.to_numeric(v, errors="coerce").astype("float64")
        return pd.DataFrame(out, index=x.index)

    def _with_arm(self, x: pd.DataFrame, a: int) -> pd.DataFrame:
        xa = x.copy()
        xa[ARM] = pd.Categorical(np.full(len(x), a), categories=list(range(len(self.arms))))
        return xa

    def outcomes(self, x: pd.DataFrame) -> NDArray[np.float64]:
        xi = self.inputs(x)
        if self.learner == "s_learner":
            m = self.outcome_models[0]
            cols = [_predict(m, self._with_arm(xi, a)) for a in range(len(self.arms))]
        else:
            cols = [_predict(m, xi) for m in self.outcome_models]
        return np.column_stack(cols)

    def uplift(self, x: pd.DataFrame) -> NDArray[np.float64]:
        if self.learner in ("s_learner", "t_learner"):
            mu = self.outcomes(x)
            return mu[:, 1:] - mu[:, :1]
        xi = self.inputs(x)
        cols = []
        for k in range(1, len(self.arms)):
            if self.learner == "x_learner":
                tau1, tau0 = self.effect_models[k - 1]
                p0, pk = self.shares[0], self.shares[k]
                g = pk / (pk + p0)
                cols.append(g * _predict(tau0, xi) + (1 - g) * _predict(tau1, xi))
            else:
                cols.append(_predict(self.effect_models[k - 1], xi))
        return np.column_stack(cols)

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=5)

    @staticmethod
    def loads(data: bytes) -> UpliftModel:
        obj = pickle.loads(data)
        if not isinstance(obj, UpliftModel):
            raise TypeError(f"not an uplift model: {type(obj).__name__}")
        return obj


def _categories(x: pd.DataFrame) -> dict[str, list[Any]]:
    return {
        c: list(x[c].cat.categories)
        for c in x.columns
        if isinstance(x[c].dtype, pd.CategoricalDtype)
    }


def fit(
    c: Campaign, learner: str, hp: dict[str, Any], seed: int = 0, threads: int = 1
) -> UpliftModel:
    """Fit ``learner`` on every row of ``c``."""
    if learner not in LEARNERS:
        raise ValueError(f"unknown uplift learner '{learner}'; known: {', '.join(LEARNERS)}")
    kind = "classifier" if c.outcome_kind == "binary" else "regressor"
    shares = c.shares().tolist()
    m = UpliftModel(
        learner, dict(hp), c.arms, c.outcome_kind, list(c.x.columns), _categories(c.x), shares
    )
    x, a, y = c.x, c.arm, c.y
    if learner == "s_learner":
        xs = m._with_arm(x, 0)
        xs[ARM] = pd.Categorical(a, categories=list(range(c.n_arms)))
        m.outcome_models = [base_model(kind, hp, seed, threads).fit(xs, y)]
        return m
    xm = _mat(x)  # converted once; rows taken from it per arm
    m.outcome_models = [
        base_model(kind, hp, seed, threads).fit(xm[a == k], y[a == k]) for k in range(c.n_arms)
    ]
    if learner == "t_learner":
        return m
    if learner == "x_learner":
        mu0 = m.outcome_models[0]
        for k in range(1, c.n_arms):
            on_k, on_0 = a == k, a == 0
            d1 = y[on_k] - _predict(mu0, xm[on_k])
            d0 = _predict(m.outcome_models[k], xm[on_0]) - y[on_0]
            tau1 = base_model("regressor", hp, seed, threads).fit(xm[on_k], d1)
            tau0 = base_model("regressor", hp, seed, threads).fit(xm[on_0], d0)
            m.effect_models.append((tau1, tau0))
        return m
    # DR: nuisances out of sample on a 2-fold split of these rows, then one regression of
    # the pseudo-outcomes per arm on every row
    mu = _oof_outcomes(c, hp, seed, threads)
    p = np.asarray(shares)
    for k in range(1, c.n_arms):
        psi = (
            mu[:, k]
            - mu[:, 0]
            + (a == k) * (y - mu[:, k]) / p[k]
            - (a == 0) * (y - mu[:, 0]) / p[0]
        )
        m.effect_models.append(base_model("regressor", hp, seed, threads).fit(xm, psi))
    return m


def _oof_outcomes(c: Campaign, hp: dict[str, Any], seed: int, threads: int) -> NDArray[np.float64]:
    """mu_a(x) for every row and arm from a 2-fold T-learner split (stratified by arm)."""
    fold = fold_ids(c.arm, 2, seed + 1)
    out = np.empty((c.arm.size, c.n_arms))
    kind = "classifier" if c.outcome_kind == "binary" else "regressor"
    for f in range(2):
        tr, te = fold != f, fold == f
        xt = c.x[tr]
        for k in range(c.n_arms):
            on = c.arm[tr] == k
            mdl = base_model(kind, hp, seed, threads).fit(_mat(xt[on]), c.y[tr][on])
            out[te, k] = _predict(mdl, c.x[te])
    return out


def fold_ids(arm: NDArray[np.int64], folds: int, seed: int) -> NDArray[np.int64]:
    """A fold per row, stratified by arm (every arm in every fold, in proportion)."""
    rng = np.random.default_rng(seed)
    out = np.empty(arm.size, dtype=np.int64)
    for k in np.unique(arm):
        idx = np.flatnonzero(arm == k)
        rng.shuffle(idx)
        out[idx] = np.arange(idx.size) % folds
    return out


@dataclass
class CrossFit:
    """Out-of-fold predictions of one configuration."""

    learner: str
    hp: dict[str, Any]
    tau: NDArray[np.float64]  # rows x (arms - 1)
    mu: NDArray[np.float64]  # rows x arms: outcome under each arm
    fold: NDArray[np.int64]


def crossfit(
    c: Campaign,
    learner: str,
    hp: dict[str, Any],
    folds: int = 5,
    seed: int = 0,
    threads: int = 1,
) -> CrossFit:
    """Every row's uplift and outcomes from the model fitted on the other folds."""
    fold = fold_ids(c.arm, folds, seed)
    tau = np.empty((c.arm.size, c.n_arms - 1))
    mu = np.empty((c.arm.size, c.n_arms))
    for f in range(folds):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        m = fit(c.subset(tr), learner, hp, seed, threads)
        xte = m.inputs(c.x.iloc[te])
        mu[te] = m.outcomes(xte)
        # S and T: the uplift is the outcomes' difference (predicted once, not twice)
        tau[te] = (
            mu[te, 1:] - mu[te, :1] if learner in ("s_learner", "t_learner") else m.uplift(xte)
        )
    return CrossFit(learner, dict(hp), tau, mu, fold)
