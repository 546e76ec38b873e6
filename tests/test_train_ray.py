"""Training on a real local Ray cluster, tracked in a real MLflow (sqlite) registry:
search over two families with Optuna + ASHA, the uplift learners, the model card, the
registry aliases and the promotion gate."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from engine.config.project import ProjectConfig
from engine.workspace import Workspace

pytestmark = [pytest.mark.ray, pytest.mark.spark]


@pytest.fixture(scope="module")
def trained(
    example_cfg: ProjectConfig, tiny_ws: Workspace, tiny_snapshot: Any, ray_local: Workspace
) -> tuple[ProjectConfig, Workspace, Any]:
    from engine.stages.train import stage_train

    ws = Workspace(ray_local.root.parent / "train-ws").ensure()
    shutil.copytree(tiny_ws.features, ws.features, dirs_exist_ok=True)
    shutil.copytree(tiny_ws.data, ws.data, dirs_exist_ok=True)  # the campaign source
    cfg = example_cfg.model_copy(
        update={
            "workspace": str(ws.root),
            "train": example_cfg.train.model_copy(
                update={"num_samples": 5, "num_boost_round": 30, "grace_rounds": 5}
            ),
        }
    )
    r = stage_train(cfg, ws, tiny_snapshot.id, show_progress=False)
    return cfg, ws, r


def _client(ws: Workspace) -> MlflowClient:
    import mlflow

    mlflow.set_tracking_uri(ws.tracking_uri)
    mlflow.set_registry_uri(ws.tracking_uri)
    return MlflowClient(ws.tracking_uri)


def test_search_tracks_every_trial_under_one_parent(
    trained: tuple[ProjectConfig, Workspace, Any], tiny_snapshot: Any
) -> None:
    cfg, ws, r = trained
    assert r.trials == 5 and r.errored == 0
    assert r.alias == "challenger"
    assert 0.6 < r.best_metrics["valid_auc"] <= 1.0
    assert "gender" not in r.features, "sensitive attributes are never model inputs"
    client = _client(ws)
    exp = client.get_experiment_by_name(cfg.name)
    runs = client.search_runs([exp.experiment_id], max_results=500)
    children = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == r.parent_run_id]
    families = set(cfg.train.families)
    assert families == {"xgboost", "logreg", "random_forest"}
    search = [c for c in children if c.data.params.get("family") in families]
    uplift = [c for c in children if c.data.params.get("family") == "uplift"]
    assert len(search) == 5
    assert {c.data.params["family"] for c in search} == families, (
        "points_to_evaluate measures every family"
    )
    assert len(uplift) == 4, "learners x depths"
    for child in search:
        assert child.info.status == "FINISHED"
        assert child.data.tags["snapshot_id"] == tiny_snapshot.id
        assert child.data.tags["code_version"]
        hist = client.get_metric_history(child.info.run_id, "valid_auc")
        if child.data.params["family"] == "xgboost":
            assert {"max_depth", "eta", "subsample", "min_child_weight"} <= set(child.data.params)
            steps = [h.step for h in hist]
            assert steps == list(range(1, len(steps) + 1)), "one valid_auc per boosting round"
            assert len(steps) in (5, 15, 30), "ASHA stops only at its rungs (grace 5, rf 3)"
        elif child.data.params["family"] == "logreg":
            assert "C" in child.data.params and len(hist) == 1
        else:
            assert {"n_estimators", "max_depth", "min_samples_leaf", "max_features"} <= set(
                child.data.params
            )
            assert len(hist) == 1, "a forest is one fit: one report at the full budget"
    full = [c for c in search if c.data.metrics.get("round") == 30]
    best = max(full, key=lambda c: c.data.metrics["valid_auc"])
    assert best.data.metrics["valid_auc"] == pytest.approx(r.best_metrics["valid_auc"])
    assert r.stopped_early == sum(1 for c in search if c.data.metrics["round"] < 30)


def test_registered_challenger_scores_probabilities_with_lineage(
    trained: tuple[ProjectConfig, Workspace, Any], tiny_snapshot: Any
) -> None:
    from sklearn.metrics import roc_auc_score

    from engine.registry.models import load_scorer, resolve
    from engine.train.dataset import load_training_set

    cfg, ws, r = trained
    _client(ws)
    ref = resolve(cfg.train.model_name, "challenger")
    assert ref.version == r.version and ref.family == r.family
    assert ref.tags["snapshot_id"] == tiny_snapshot.id
    assert ref.tags["parent_run_id"] == r.parent_run_id
    t0, t1 = json.loads(ref.tags["train_time_range"])
    ts = load_training_set(cfg, tiny_snapshot)
    # the label times the registered model was fitted on (train + validation when refitted),
    # not the test's: the tag once gave the whole range, test included
    assert (t0, t1) == ts.fitted_range(refit=cfg.train.refit)
    assert tuple(json.loads(ref.tags["test_time_range"])) == ts.range_of("test")
    assert t1 < ts.range_of("test")[0]
    assert ts.train[ts.time_col].max() < ts.valid[ts.time_col].min(), "split by time"
    assert ts.valid[ts.time_col].max() < ts.test[ts.time_col].min()
    scorer = load_scorer(ref)
    assert scorer.schema.categorical == ["region", "plan"], "categorical inputs, end to end"
    x, y = ts.xy("test")
    p = scorer.proba(x)
    assert p.shape == (len(x),) and ((p >= 0) & (p <= 1)).all()
    assert np.unique(p).size > 2, "probabilities, not class labels"
    # The registered model is the chosen configuration refitted on train + validation.
    assert "refitted on train + validation" in ref.tags["final_fit"]
    assert roc_auc_score(y, p) == pytest.approx(float(ref.tags["test_auc"]), abs=1e-6)
    mv = _client(ws).get_model_version(ref.name, ref.version)
    from mlflow.models import get_model_info

    info = get_model_info(ref.uri)
    assert info.signature is not None and len(info.signature.inputs.inputs) == len(ref.features)
    assert mv.run_id == ref.run_id


def test_model_card_numbers_match_independent_references(
    trained: tuple[ProjectConfig, Workspace, Any], tiny_snapshot: Any
) -> None:
    from fairlearn.metrics import demographic_parity_difference
    from sklearn.metrics import roc_auc_score

    from engine.registry.card import CARD_HTML, CARD_MD, SHAP_PNG, load_card
    from engine.registry.models import load_scorer, resolve
    from engine.train.dataset import load_training_set

    cfg, ws, _ = trained
    client = _client(ws)
    ref = resolve(cfg.train.model_name, "challenger")
    card = load_card(ref.run_id)
    names = {a.path for a in client.list_artifacts(ref.run_id, "card")}
    assert {f"card/{CARD_MD}", f"card/{CARD_HTML}", f"card/{SHAP_PNG}", "card/model_card.json"} <= (
        names
    )
    ts = load_training_set(cfg, tiny_snapshot)
    p = load_scorer(ref).proba(ts.x("test"))
    y = ts.test[ts.label].to_numpy()
    m = card["metrics"]
    assert m["auc"]["estimate"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["auc"]["low"] < m["auc"]["estimate"] < m["auc"]["high"]
    dp = demographic_parity_difference(
        y, (p >= cfg.serve.threshold).astype(int), sensitive_features=ts.test["gender"]
    )
    g = m["fairness"]["gender"]["demographic_parity_difference"]
    assert g["value"] == pytest.approx(dp, abs=1e-12) and g["low"] <= g["value"] <= g["high"]
    assert 0 <= m["calibration"]["ece"] < 1 and len(m["calibration"]["bins"]) >= 5
    assert set(card["shap_importance"]) == set(ref.features)
    # The report's numbers: lift in the top decile (pandas) and the confusion counts (sklearn).
    import pandas as pd
    from sklearn.metrics import confusion_matrix

    frame = pd.DataFrame({"y": y, "p": p})
    k = max(1, round(0.1 * len(frame)))
    top = frame.sort_values("p", ascending=False, kind="stable").head(k)["y"].mean()
    assert m["lift_top_decile"] == pytest.approx(top / frame["y"].mean(), rel=1e-9)
    tn, fp, fn, tp = confusion_matrix(y, p >= cfg.serve.threshold, labels=[0, 1]).ravel()
    assert m["confusion"] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    c = (card.get("uplift") or {}).get("curves")
    if card.get("uplift"):
        assert c and len(c["fraction"]) == len(c["qini"]) == len(c["qini_low"]) == 51
        assert all(lo <= hi for lo, hi in zip(c["qini_low"], c["qini_high"], strict=True))
        assert c["qini"][-1] == pytest.approx(c["random"][-1]) and c["qini"][0] == 0
    assert card["training_data"]["snapshot_id"] == tiny_snapshot.id
    assert card["limitations"], "limitations are stated"
    u = card["uplift"]
    assert u is not None and {"t_learner", "x_learner"} <= {k.split("(")[0] for k in u["learners"]}
    assert u["ate"]["low"] <= u["ate"]["estimate"] <= u["ate"]["high"]


def _cli(ws: Workspace, *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args, "--workspace", str(ws.root)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_models_cli_lists_shows_and_renders_the_card(
    trained: tuple[ProjectConfig, Workspace, Any],
) -> None:
    _, ws, r = trained
    out = _cli(ws, "models", "list")
    assert out.returncode == 0, out.stderr
    assert "challenger" in out.stdout and r.family in out.stdout
    show = _cli(ws, "models", "show", "--alias", "challenger")
    assert show.returncode == 0 and r.parent_run_id in show.stdout
    card = _cli(ws, "models", "card", "--version", r.version)
    assert card.returncode == 0, card.stderr
    for heading in ("Intended use", "Calibration", "Fairness", "Uplift", "SHAP", "limitations"):
        assert heading in card.stdout, heading
    missing = _cli(ws, "models", "show", "--alias", "champion")
    assert missing.returncode != 0 and "Traceback" not in missing.stdout + missing.stderr
    assert "no model 'retail-churn' with alias 'champion'" in missing.stdout


def _register_challenger(
    cfg: ProjectConfig,
    ts: Any,
    scorer: Any,
    *,
    tags: dict[str, str] | None = None,
    alias: str = "challenger",
) -> str:
    import mlflow

    from engine.registry.models import register_model

    exp = mlflow.get_experiment_by_name(cfg.name)
    with mlflow.start_run(experiment_id=exp.experiment_id):
        ref = register_model(
            model_name=cfg.train.model_name,
            scorer=scorer,
            x_example=ts.x("test").head(5),
            tags={"snapshot_id": ts.snapshot_id, **(tags or {})},
            alias=alias,
        )
    return ref.version


def _no_champion(name: str, challenger: str) -> None:
    """This test's starting state, whatever ran before it: no champion, no history."""
    client = MlflowClient()
    for alias in ("champion", "previous"):
        with contextlib.suppress(Exception):  # not set
            client.delete_registered_model_alias(name, alias)
    client.set_registered_model_tag(name, "champion_history", "[]")
    client.set_registered_model_alias(name, "challenger", challenger)


def test_gate_no_champion_then_fail_then_pass_and_rollback(
    trained: tuple[ProjectConfig, Workspace, Any], tiny_snapshot: Any
) -> None:
    from engine.errors import StateError
    from engine.registry import models
    from engine.registry.gate import run_gate
    from engine.train.dataset import load_training_set
    from engine.train.families import logreg

    cfg, ws, r = trained
    _client(ws)
    name = cfg.train.model_name
    _no_champion(name, r.version)
    first = run_gate(cfg, ws)
    assert first.passed and first.promoted and first.champion is None
    assert models.resolve(name, "champion").version == r.version

    ts = load_training_set(cfg, tiny_snapshot)
    x, y = ts.xy("train")
    shuffled = np.random.default_rng(0).permutation(y)
    bad_model = logreg.fit({"C": 1.0}, x, shuffled, seed=0, nthread=1, rounds=1, schema=ts.schema)
    bad = _register_challenger(cfg, ts, bad_model)
    g = run_gate(cfg, ws)
    auc = next(c for c in g.checks if c.name == "auc")
    assert not g.passed and not g.promoted and not auc.passed
    assert auc.numbers["difference"]["high"] < 0, "a label-shuffled model is clearly worse"
    assert models.resolve(name, "champion").version == r.version, "a fail promotes nothing"
    assert models.resolve(name, "challenger").version == bad

    # A retrain exactly as good as the champion (its own model, registered again): the
    # paired difference is 0 on every resample, fairness does not move: the gate passes.
    good = _register_challenger(cfg, ts, models.load_scorer(models.resolve(name, "champion")))
    g2 = run_gate(cfg.model_copy(deep=True), ws)
    auc2 = next(c for c in g2.checks if c.name == "auc")
    assert auc2.numbers["difference"] == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    fair = [c for c in g2.checks if c.name.startswith("fairness:")]
    assert fair and all("moves +0.0000" in c.detail for c in fair), [c.detail for c in fair]
    assert g2.passed and g2.promoted
    assert models.resolve(name, "champion").version == good
    assert models.resolve(name, "previous").version == r.version
    back = models.rollback(name)
    assert back["champion"] == r.version and back["demoted"] == good
    assert models.resolve(name, "champion").version == r.version
    with pytest.raises(StateError, match="no earlier champion"):
        models.rollback(name)


def test_gate_compares_only_on_rows_a_newer_champion_never_trained_on(
    trained: tuple[ProjectConfig, Workspace, Any], tiny_snapshot: Any
) -> None:
    """A champion retrained with newer labels (the monitor's retrain lifts train.until) has
    trained on an older challenger's test rows. Scored on them it looks better than it is:
    the gate keeps only test rows at or after the champion's own test_time, and fails with a
    reason when too few remain."""
    import pandas as pd

    from engine.registry import models
    from engine.registry.gate import run_gate
    from engine.train.dataset import load_training_set
    from engine.train.families import xgboost

    cfg, ws, r = trained
    _client(ws)
    name = cfg.train.model_name
    ts = load_training_set(cfg, tiny_snapshot)
    assert ts.split == "time" and ts.time_col is not None
    t = pd.to_datetime(ts.test[ts.time_col]).sort_values().reset_index(drop=True)
    cut = t.iloc[len(t) // 2]  # the champion's test split began half way into ours
    # A champion that memorised every row up to its cut (train + valid + our older test).
    seen = pd.concat([ts.train, ts.valid, ts.test[pd.to_datetime(ts.test[ts.time_col]) < cut]])
    leaky = xgboost.fit(
        {"max_depth": 10, "eta": 0.5, "subsample": 1.0, "min_child_weight": 0.0},
        ts.x(seen),
        seen[ts.label].to_numpy(dtype=np.float64),
        seed=0,
        nthread=1,
        rounds=60,
        schema=ts.schema,
    )
    tags = {"split": "time", "test_time": str(cut)}
    _no_champion(name, r.version)
    champ = _register_challenger(cfg, ts, leaky, tags=tags, alias="champion")
    _register_challenger(cfg, ts, models.load_scorer(models.resolve(name, "champion")))
    g = run_gate(cfg, ws, promote=False)
    auc = next(c for c in g.checks if c.name == "auc")
    unseen = int((pd.to_datetime(ts.test[ts.time_col]) >= cut).sum())
    assert auc.numbers["rows"] == unseen < len(ts.test), "only rows neither model trained on"
    assert auc.numbers["overlap"] and f"champion v{champ} trained on them" in auc.detail
    assert auc.numbers["difference"] == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    # The same leaky champion scored on all our test rows would look better than it is:
    leaked = ts.test[pd.to_datetime(ts.test[ts.time_col]) < cut]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(leaked[ts.label], leaky.proba(ts.x(leaked))) > 0.99

    # Its test split begins after all of ours: nothing is left to compare on; a clear fail.
    later = {"split": "time", "test_time": str(t.iloc[-1] + pd.Timedelta(days=1))}
    _no_champion(name, r.version)
    _register_challenger(cfg, ts, leaky, tags=later, alias="champion")
    _register_challenger(cfg, ts, models.load_scorer(models.resolve(name, "champion")))
    g2 = run_gate(cfg, ws)
    assert not g2.passed and not g2.promoted
    assert [c.name for c in g2.checks] == ["unseen test rows"]
    assert "0 row(s) left" in g2.checks[0].detail and "wait for newer labels" in g2.checks[0].detail
    _no_champion(name, r.version)


def test_ray_train_data_parallel_xgboost_with_two_workers(
    example_cfg: ProjectConfig,
    tiny_ws: Workspace,
    tiny_snapshot: Any,
    ray_local: Workspace,
    tmp_path: Path,
) -> None:
    """The scale path: Ray Train's XGBoost over Ray Data reading the snapshot Parquet, 2
    workers, the same registry output as a Tune winner."""
    from sklearn.metrics import roc_auc_score

    from engine.registry.card import load_card
    from engine.registry.models import load_scorer, resolve
    from engine.stages.train import stage_train
    from engine.train.dataset import load_training_set

    ws = Workspace(tmp_path / ".insight").ensure()
    shutil.copytree(tiny_ws.features, ws.features, dirs_exist_ok=True)
    cfg = example_cfg.model_copy(
        update={
            "workspace": str(ws.root),
            "train": example_cfg.train.model_copy(
                update={
                    "backend": "ray_train",
                    "workers": 2,
                    "exclude": ["region", "plan"],  # the data-parallel path is numeric-only
                    "num_boost_round": 20,
                    "uplift_learners": [],
                }
            ),
        }
    )
    r = stage_train(cfg, ws, tiny_snapshot.id, show_progress=False)
    _client(ws)
    ref = resolve(cfg.train.model_name, "challenger")
    assert ref.family == "xgboost" and ref.tags["snapshot_id"] == tiny_snapshot.id
    ts = load_training_set(cfg, tiny_snapshot)
    x, y = ts.xy("valid")
    p = load_scorer(ref).proba(x)
    # Both workers end with the same all-reduced model; its AUC on the full validation
    # split is what the workers reported together.
    assert roc_auc_score(y, p) == pytest.approx(r.best_metrics["valid_auc"], abs=1e-6)
    assert r.best_metrics["valid_auc"] > 0.6
    card = load_card(ref.run_id)
    assert card["search"]["backend"] == "ray_train"
