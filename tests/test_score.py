"""Batch scoring with Ray Data (engine.stages.score) on a local Ray cluster: the scores
equal the model's own single-process predictions row for row, decisions follow the
threshold, SHAP values add up, the output appears atomically, one batch record lands in the
audit log, and bad input is a clear error that writes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.config.project import ProjectConfig
from engine.errors import ConfigError, DataError
from engine.workspace import Workspace

pytestmark = [pytest.mark.ray, pytest.mark.spark]


@pytest.fixture(scope="module")
def scored_ws(
    tmp_path_factory: pytest.TempPathFactory,
    example_cfg: ProjectConfig,
    tiny_ws: Workspace,
    tiny_snapshot: Any,
    ray_local: Workspace,
) -> tuple[ProjectConfig, Workspace, Any, Any]:
    """A workspace with the tiny snapshot and an XGBoost model registered as @champion."""
    import mlflow

    from engine.registry.models import register_model
    from engine.tracking import setup_mlflow
    from engine.train.dataset import load_training_set
    from engine.train.families import xgboost

    ws = Workspace(tmp_path_factory.mktemp("score") / ".insight").ensure()
    shutil.copytree(tiny_ws.features, ws.features, dirs_exist_ok=True)
    cfg = example_cfg.model_copy(update={"workspace": str(ws.root)})
    exp = setup_mlflow(ws, cfg.name)
    ts = load_training_set(cfg, tiny_snapshot)
    x, y = ts.xy("train")
    hp = {"max_depth": 3, "eta": 0.3, "subsample": 1.0, "min_child_weight": 1.0}
    model = xgboost.fit(hp, x, y, seed=0, nthread=1, rounds=20, schema=ts.schema)
    with mlflow.start_run(experiment_id=exp):
        register_model(
            model_name=cfg.train.model_name,
            scorer=model,
            x_example=ts.x("test").head(5),
            tags={"snapshot_id": ts.snapshot_id},
            alias="champion",
        )
    return cfg, ws, tiny_snapshot, model


def test_scores_equal_single_process_predictions(
    scored_ws: tuple[ProjectConfig, Workspace, Any, Any], tmp_path: Path
) -> None:
    import xgboost as xgb

    from engine.audit import read_records
    from engine.data.sources import fingerprint
    from engine.stages.score import stage_score

    cfg, ws, snap, model = scored_ws
    out = tmp_path / "scores"
    r = stage_score(cfg, ws, snapshot="latest", output=out, shap=True, batch_size=128)
    got = pd.read_parquet(out)
    src = snap.read_pandas()
    assert r.rows == len(got) == len(src)
    keys = ["customer_id", cfg.label.event_time]
    assert set(keys) <= set(got.columns)
    m = src.merge(got, on=keys, how="inner", validate="one_to_one")
    assert len(m) == len(src)
    feats = list(model.features)
    # The independent reference: XGBoost's own Booster.predict on the same rows.
    ref = model.booster.predict(xgb.DMatrix(model.schema.frame(m[feats]), enable_categorical=True))
    np.testing.assert_allclose(m["score"].to_numpy(), ref, rtol=0, atol=1e-6)
    assert (m["decision"] == (m["score"] >= cfg.serve.threshold)).all()
    assert set(got["model_version"]) == {r.version} and set(got["model"]) == {"retail-churn"}
    shap = m[[f"shap_{f}" for f in feats]].to_numpy()
    base = model.booster.predict(
        xgb.DMatrix(model.schema.frame(m[feats]), enable_categorical=True), pred_contribs=True
    )
    np.testing.assert_allclose(shap, base[:, :-1], atol=1e-4)
    assert r.output_fingerprint == fingerprint(out) and r.input_fingerprint == fingerprint(
        snap.data
    )
    recs = [x for x in read_records(ws.audit / "batch", kind="batch") if x["output"] == str(out)]
    assert len(recs) == 1 and recs[0]["rows"] == r.rows
    assert recs[0]["output_fingerprint"] == r.output_fingerprint
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp folder left"


def test_a_users_csv_and_bad_input(
    scored_ws: tuple[ProjectConfig, Workspace, Any, Any], tmp_path: Path
) -> None:
    from engine.stages.score import stage_score

    cfg, ws, snap, model = scored_ws
    src = snap.read_pandas().head(50)
    feats = list(model.features)
    csv = tmp_path / "table.csv"
    src[[*feats, "customer_id"]].assign(note="kept").to_csv(csv, index=False)
    r = stage_score(
        cfg, ws, f"{cfg.train.model_name}@champion", input_path=csv, output=tmp_path / "out"
    )
    got = pd.read_parquet(tmp_path / "out")
    assert r.rows == 50 and "customer_id" in got.columns
    expected = model.proba(model.schema.frame(src[feats]))
    np.testing.assert_allclose(
        got.sort_values("customer_id")["score"].to_numpy(),
        src.assign(p=expected).sort_values("customer_id")["p"].to_numpy(),
        atol=1e-6,
    )
    with pytest.raises(ConfigError, match="already exists"):
        stage_score(cfg, ws, input_path=csv, output=tmp_path / "out")
    missing = tmp_path / "missing.csv"
    src[feats[1:]].to_csv(missing, index=False)
    with pytest.raises(DataError, match=f"lacks the model's input column.*{feats[0]}"):
        stage_score(cfg, ws, input_path=missing, output=tmp_path / "never")
    num = next(f for f in feats if f not in model.schema.categorical)
    bad = tmp_path / "bad.csv"
    src[feats].assign(**{num: "abc"}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="failed in a worker"):
        stage_score(cfg, ws, input_path=bad, output=tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "nothing partial"
    with pytest.raises(ConfigError, match="exactly one"):
        stage_score(cfg, ws, output=tmp_path / "x")


def test_local_engine_writes_what_ray_data_writes(
    scored_ws: tuple[ProjectConfig, Workspace, Any, Any], tmp_path: Path
) -> None:
    """The in-process engine (``auto`` on one machine for a small table) and Ray Data give
    the same rows, scores, decisions and SHAP values, on a snapshot and on a user's CSV with
    a cell that does not read; a bad value is the same clear error, nothing written."""
    from engine.stages.score import stage_score

    cfg, ws, snap, model = scored_ws
    for kind, kw in (
        ("snapshot", {"snapshot": "latest", "shap": True}),
        ("csv", {"input_path": tmp_path / "t.csv"}),
    ):
        if kind == "csv":
            src = snap.read_pandas().head(300)
            src[[*model.features, "customer_id"]].assign(note="kept").to_csv(
                tmp_path / "t.csv", index=False
            )
        outs = {}
        for engine in ("ray", "local"):
            out = tmp_path / f"{kind}-{engine}"
            r = stage_score(cfg, ws, output=out, engine=engine, batch_size=97, record=False, **kw)
            assert (r.cpus == 1) == (engine == "local")
            outs[engine] = pd.read_parquet(out)
        # the rows in one order (Ray's blocks may finish in any order): by every column
        # that is not a float, then by the score
        a, b = (
            outs[e]
            .sort_values([c for c in outs[e].columns if outs[e][c].dtype.kind != "f"] + ["score"])
            .reset_index(drop=True)
            for e in ("ray", "local")
        )
        assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
        pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-12, rtol=0)
    bad = tmp_path / "bad.csv"
    num = next(f for f in model.features if f not in model.schema.categorical)
    snap.read_pandas().head(20)[list(model.features)].assign(**{num: "abc"}).to_csv(
        bad, index=False
    )
    with pytest.raises(DataError, match=r"scoring '.*bad.csv' failed.*Fix:"):
        stage_score(cfg, ws, input_path=bad, output=tmp_path / "never", engine="local")
    assert not (tmp_path / "never").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "nothing partial"
    with pytest.raises(ConfigError, match="unknown engine 'spark'"):
        stage_score(cfg, ws, snapshot="latest", output=tmp_path / "x", engine="spark")


def test_auto_engine_picks_ray_only_where_there_is_a_cluster(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import sys

    from engine.stages import score_engines as sc

    f = tmp_path / "small.parquet"
    f.write_bytes(b"x" * 1000)
    ws = Workspace(tmp_path / ".insight").ensure()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not imported in this process
    assert sc.use_ray("auto", ws, [str(f)]) is False
    assert sc.use_ray("ray", ws, [str(f)]) is True
    assert "one machine" in sc.choose("auto", ws)[1]
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert sc.use_ray("auto", ws, [str(f)]) is True, "a named cluster is used"
    assert sc.use_ray("local", ws, [str(f)]) is False


def test_no_decision_without_consent_in_batch_scoring(
    scored_ws: tuple[ProjectConfig, Workspace, Any, Any], tmp_path: Path
) -> None:
    """With a consent source, rows whose subject has not consented to the serving purpose
    get no score and no decision, and say why (column ``withheld``), on both engines; the
    others are scored as without consent; the audit record counts the withheld rows."""
    from engine.audit.verify import read_records
    from engine.config.governance import ConsentConfig, GovernanceConfig
    from engine.config.source import SourceConfig
    from engine.stages.score import stage_score

    cfg, ws, snap, _ = scored_ws
    ids = sorted(snap.read_pandas()["customer_id"].unique())
    rng = np.random.default_rng(5)
    granted = set(rng.choice(ids, len(ids) // 2, replace=False).tolist())
    withdrawn = set(rng.choice(sorted(granted), 20, replace=False).tolist())
    ev = pd.DataFrame(
        [(i, "profiling", "granted", "2020-01-01") for i in granted]
        + [(i, "profiling", "withdrawn", "2021-01-01") for i in withdrawn]
        + [(i, "marketing", "granted", "2020-01-01") for i in ids],  # another purpose
        columns=["cid", "purpose", "status", "at"],
    )
    ev.to_csv(tmp_path / "consents.csv", index=False)
    cfg2 = cfg.model_copy(
        update={
            "sources": {
                **cfg.sources,
                "consents": SourceConfig(path=str(tmp_path / "consents.csv"), format="csv"),
            },
            "governance": GovernanceConfig(
                consent=ConsentConfig(
                    source="consents", subject="cid", purpose="purpose", status="status", time="at"
                )
            ),
        }
    )
    plain = pd.read_parquet(
        stage_score(cfg, ws, snapshot="latest", output=tmp_path / "plain", record=False).output
    )
    allowed = granted - withdrawn
    for engine in ("local", "ray"):
        out = tmp_path / f"consent-{engine}"
        stage_score(cfg2, ws, snapshot="latest", output=out, engine=engine, batch_size=97)
        got = pd.read_parquet(out).sort_values(["customer_id", "score"]).reset_index(drop=True)
        ok = got["customer_id"].isin(allowed)
        assert got.loc[~ok, "score"].isna().all() and got.loc[~ok, "decision"].isna().all()
        assert set(got.loc[~ok, "withheld"]) == {
            "no consent on record for 'profiling'",
            "consent withdrawn for 'profiling'",
        }
        assert got.loc[ok, "withheld"].isna().all() and ok.sum() > 0 and (~ok).sum() > 0
        want = plain[plain["customer_id"].isin(allowed)].sort_values(["customer_id", "score"])
        np.testing.assert_allclose(
            got.loc[ok, "score"].to_numpy(), want["score"].to_numpy(), rtol=0, atol=1e-12
        )
    rec = [r for r in read_records(ws.audit / "batch", kind="batch") if r.get("withheld")][-1]
    assert rec["withheld"]["rows"] == int((~ok).sum())
    assert rec["withheld"]["purposes"] == ["profiling"]
