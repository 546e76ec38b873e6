"""Every model family honours the Family protocol: the same checks run on each (as
scikit-learn's estimator checks do), so a new family is one file plus one line in
FAMILIES. Inputs are as users' tables have them: numbers with blanks, and categorical text
columns with missing values. Unit tier: no Ray (``fit`` is the family's fit outside Tune),
a real MLflow on a temporary sqlite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.train.explanation import to_output
from engine.train.families import FAMILIES, explainer_for, midpoint
from engine.train.families._sklearn import prepare
from engine.train.schema import InputSchema

PLANS = np.array(["basic", "plus", "premium"])


def _data(seed: int, n: int = 500) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    plan = rng.integers(0, 3, n)
    region = rng.choice(["north", "south", "east"], n).astype(object)
    logit = x[:, 0] - x[:, 1] + np.array([1.2, 0.0, -1.2])[plan] + 0.4 * x[:, 2] * (plan == 0)
    y = (logit + rng.logistic(size=n) > 0).astype(float)
    x[rng.random(x.shape) < 0.1] = np.nan  # blanks, as real tables have
    region[rng.random(n) < 0.05] = None
    df = pd.DataFrame(x, columns=["f0", "f1", "f2"])
    df["plan"] = PLANS[plan]
    df["region"] = region
    return df, y


def _fit(name: str, seed: int) -> tuple[Any, pd.DataFrame, np.ndarray]:
    fam = FAMILIES[name]
    x, y = _data(seed)
    hp = midpoint(fam.DEFAULT_SPACE)
    if name == "random_forest":
        hp["n_estimators"] = 40  # quick
    schema = InputSchema.infer(x, list(x.columns))
    return fam.fit(hp, x, y, seed=seed, nthread=1, rounds=15, schema=schema), x, y


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("seed", range(3))
def test_scores_are_probabilities_and_shap_adds_up(name: str, seed: int) -> None:
    from sklearn.metrics import roc_auc_score

    fam = FAMILIES[name]
    sc, x, y = _fit(name, seed)
    assert sc.schema.categorical == ["plan", "region"]
    p = sc.proba(x)
    assert p.shape == (len(x),) and ((p >= 0) & (p <= 1)).all()
    assert np.unique(p).size > 10, "probabilities, not class labels"
    assert roc_auc_score(y, p) > 0.75, "it learned the signal, categorical part included"
    e = explainer_for(sc).explain(x.head(60))
    assert e.output == fam.OUTPUT
    assert e.values.shape == (60, x.shape[1]), "one SHAP value per original column"
    np.testing.assert_allclose(e.total(), to_output(p[:60], fam.OUTPUT), atol=1e-5)
    imp = np.abs(explainer_for(sc).explain(x).values).mean(axis=0)
    assert imp[list(x.columns).index("plan")] > imp[list(x.columns).index("region")]
    notes = fam.card_notes(sc)
    assert notes and all(isinstance(n, str) and n for n in notes)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_an_unseen_category_is_scored_as_missing(name: str) -> None:
    sc, x, _ = _fit(name, 0)
    rows = x.head(20).copy()
    as_missing = rows.assign(plan=None)
    unseen = rows.assign(plan="platinum")  # never in training
    _, counts = sc.schema.frame_and_unseen(unseen)
    assert counts == {"plan": 20}
    np.testing.assert_allclose(sc.proba(unseen), sc.proba(as_missing), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_mlflow_round_trip_scores_the_same(name: str, tmp_path: Path) -> None:
    import mlflow
    from mlflow.models import infer_signature

    fam = FAMILIES[name]
    sc, x, _ = _fit(name, 0)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    shown = x.head(5).astype({"plan": object, "region": object})
    with mlflow.start_run(experiment_id=exp):
        info = fam.log_model(
            sc,
            name="model",
            signature=infer_signature(shown, sc.proba(shown)),
            registered_model_name=f"fam-{name}",
        )
    back = fam.load_logged(info.model_uri, sc.schema)
    np.testing.assert_allclose(back.proba(x), sc.proba(x), rtol=1e-9)
    assert back.family == name


def test_xgboost_shap_is_xgboosts_own_treeshap() -> None:
    from engine.train.families.xgboost import dmatrix

    sc, x, _ = _fit("xgboost", 1)
    c = sc.booster.predict(dmatrix(x.head(50), sc.schema), pred_contribs=True)
    e = explainer_for(sc).explain(x.head(50))
    np.testing.assert_allclose(e.values, c[:, :-1], atol=1e-6)


def test_logreg_shap_is_coef_times_centred_value_summed_per_column() -> None:
    sc, x, _ = _fit("logreg", 2)
    m = sc.model
    z = m[:-1].transform(prepare(sc.schema.frame(x.head(50)), sc.schema))
    contrib = z * m[-1].coef_[0]
    names = m[:-1].get_feature_names_out()
    expect = np.column_stack(
        [
            contrib[:, [i for i, n in enumerate(names) if n.split("__")[1].startswith(col)]].sum(1)
            for col in x.columns
        ]
    )
    e = explainer_for(sc).explain(x.head(50))
    np.testing.assert_allclose(e.values, expect, atol=1e-9)
    assert e.base_value == pytest.approx(float(m[-1].intercept_[0]), abs=1e-9)


def test_random_forest_shap_equals_shap_on_the_encoded_forest() -> None:
    """The forest's explanation is TreeSHAP of the forest on the encoded inputs (one
    ordinal column per categorical feature), reordered to the original columns."""
    import shap

    sc, x, _ = _fit("random_forest", 0)
    m = sc.model
    z = m[:-1].transform(prepare(sc.schema.frame(x.head(30)), sc.schema))
    ref = np.asarray(shap.TreeExplainer(m[-1]).shap_values(z))[:, :, 1]
    # transformer output: numeric f0, f1, f2, then plan, region: the original order here
    e = explainer_for(sc).explain(x.head(30))
    np.testing.assert_allclose(e.values, ref, atol=1e-12)
