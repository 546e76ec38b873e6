"""Every model family honours the Family protocol: the same checks run on each (as
scikit-learn's estimator checks do), so a new family is one file plus one line in
FAMILIES. Unit tier: no Ray (``fit`` is the family's fit outside Tune), a real MLflow on a
temporary sqlite file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.explain import explainer_for, to_output
from engine.train.families import FAMILIES, midpoint


def _data(seed: int, n: int = 400) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = (x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + rng.normal(size=n) > 0.5).astype(float)
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values, as real tables have
    return pd.DataFrame(x, columns=[f"f{i}" for i in range(5)]), y


def _fit(name: str, seed: int) -> tuple[object, pd.DataFrame, np.ndarray]:
    fam = FAMILIES[name]
    x, y = _data(seed)
    hp = midpoint(fam.DEFAULT_SPACE)
    if name == "random_forest":
        hp["n_estimators"] = 40  # quick
    return fam.fit(hp, x, y, seed=seed, nthread=1, rounds=15), x, y


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("seed", range(3))
def test_scores_are_probabilities_and_shap_adds_up(name: str, seed: int) -> None:
    fam = FAMILIES[name]
    sc, x, y = _fit(name, seed)
    p = sc.proba(x.to_numpy(dtype=np.float64))  # type: ignore[attr-defined]
    assert p.shape == (len(x),) and ((p >= 0) & (p <= 1)).all()
    assert np.unique(p).size > 10, "probabilities, not class labels"
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, p) > 0.7, "it learned the signal"
    e = explainer_for(sc).explain(x.to_numpy(dtype=np.float64)[:60])
    assert e.output == fam.OUTPUT and e.values.shape == (60, x.shape[1])
    np.testing.assert_allclose(e.total(), to_output(p[:60], fam.OUTPUT), atol=1e-5)
    notes = fam.card_notes(sc)
    assert notes and all(isinstance(n, str) and n for n in notes)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_mlflow_round_trip_scores_the_same(name: str, tmp_path: Path) -> None:
    import mlflow
    from mlflow.models import infer_signature

    fam = FAMILIES[name]
    sc, x, _ = _fit(name, 0)
    xs = x.to_numpy(dtype=np.float64)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=exp):
        info = fam.log_model(
            sc,
            name="model",
            signature=infer_signature(x.head(5), sc.proba(xs[:5])),  # type: ignore[attr-defined]
            registered_model_name=f"fam-{name}",
        )
    back = fam.load_logged(info.model_uri, list(x.columns))
    np.testing.assert_allclose(back.proba(xs), sc.proba(xs), rtol=1e-9)  # type: ignore[attr-defined]
    assert back.family == name


def test_xgboost_shap_is_xgboosts_own_treeshap() -> None:
    import xgboost as xgb

    sc, x, _ = _fit("xgboost", 1)
    xs = x.to_numpy(dtype=np.float64)[:50]
    c = sc.booster.predict(xgb.DMatrix(xs, feature_names=list(x.columns)), pred_contribs=True)  # type: ignore[attr-defined]
    e = explainer_for(sc).explain(xs)
    np.testing.assert_allclose(e.values, c[:, :-1], atol=1e-6)


def test_logreg_shap_is_coef_times_standardized_value() -> None:
    sc, x, _ = _fit("logreg", 2)
    lr = sc.model  # type: ignore[attr-defined]
    z = lr[:-1].transform(x.head(50))
    e = explainer_for(sc).explain(x.to_numpy(dtype=np.float64)[:50])
    np.testing.assert_allclose(e.values, z * lr[-1].coef_[0], atol=1e-9)


def test_random_forest_shap_equals_shap_on_the_raw_forest() -> None:
    """The forest's explanation is TreeSHAP of the forest on the imputed inputs, in
    probability: it adds up to predict_proba itself (checked above), and equals shap's
    interventional-free tree path values computed independently here."""
    import shap

    sc, x, _ = _fit("random_forest", 0)
    m = sc.model  # type: ignore[attr-defined]
    z = m[:-1].transform(x.head(30))
    ref = np.asarray(shap.TreeExplainer(m[-1]).shap_values(z))[:, :, 1]
    e = explainer_for(sc).explain(x.to_numpy(dtype=np.float64)[:30])
    np.testing.assert_allclose(e.values, ref, atol=1e-12)
