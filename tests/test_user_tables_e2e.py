"""A user's own table, end to end, as a new user runs it: `insight init` on a generated
telecom-shaped CSV ("Yes"/"No" label, categorical columns, blanks, odd names, PII, no event
time), then one command per stage: validate, features build, train, models gate, serve up,
/predict with raw rows, serve status --json, drift against a newer snapshot, serve down.
Also: the engine is as good as the obvious scikit-learn baseline on tables whose signal
sits in categorical columns, for several seeds."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from engine.workspace import Workspace
from tests.tables import telecom, write_csv

ROOT = Path(__file__).resolve().parent.parent


def _insight(cwd: Path, *args: str, timeout: int = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "INSIGHT_ADMIN_TOKEN": "user-project-token-xxxxxxxxxxxxxx"},
        check=False,
    )


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "Traceback" not in out and "internal error" not in out
    return " ".join(out.split())


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.spark
@pytest.mark.ray
@pytest.mark.serve
def test_one_command_per_stage_on_a_users_table(tmp_path: Path) -> None:
    df = telecom(2500, 11)
    write_csv(df, tmp_path / "telco.csv")
    out = _ok(_insight(tmp_path, "init", "--from", "telco.csv", "--label", "Churn"))
    assert "label: churn (positive 'Yes')" in out and "5 categorical" in out
    _ok(_insight(tmp_path, "validate"))
    out = _ok(_insight(tmp_path, "features", "build"))
    blanks = int((df["TotalCharges"].str.strip() == "").sum())
    assert f"total_charges: {blanks} blank" in out, out
    assert "positive 'yes'" in out
    out = _ok(_insight(tmp_path, "train"))
    assert "split: random, stratified by label" in out, out
    assert "refitted on train + validation" in out, out
    out = _ok(_insight(tmp_path, "models", "gate"))
    assert "promoted to @champion" in out
    card = json.loads(_insight(tmp_path, "models", "card", "--json").stdout)
    assert set(card["training_data"]["categorical"]) >= {"contract", "internet_service"}
    assert not any("Numeric features only" in x for x in card["limitations"])
    try:
        _ok(_insight(tmp_path, "serve", "up"))
        st = json.loads(_insight(tmp_path, "serve", "status", "--json").stdout)
        assert st["url"].startswith("http://127.0.0.1:") and st["versions"] == {"champion": "1"}
        assert st["replicas"] and st["challenger_percent"] == 0
        rows = [
            {
                "gender": "Female",
                "senior_citizen": 0,
                "partner": "Yes",
                "tenure": 2,
                "contract": "Month-to-month",
                "internet_service": "Fiber optic",
                "payment_method": "Electronic check",
                "monthly_charges": 85.5,
                "total_charges": None,
            },
            {
                "gender": "Male",
                "senior_citizen": 1,
                "partner": "No",
                "tenure": 60,
                "contract": "Two year",
                "internet_service": "No",
                "payment_method": "Credit card (automatic)",
                "monthly_charges": 20.1,
                "total_charges": 1206.0,
            },
        ]
        r = httpx.post(f"{st['url']}/predict", json={"rows": rows}, timeout=60)
        assert r.status_code == 200, r.text
        p = [x["score"] for x in r.json()["predictions"]]
        assert p[0] > 0.5 > p[1], f"month-to-month fiber churns, two-year no-internet stays: {p}"
        e = httpx.post(f"{st['url']}/explain", json={"rows": rows[:1]}, timeout=60).json()
        assert set(e["explanations"][0]["shap"]) == set(rows[0]), "one value per column"
        # Rows straight from the user's CSV: its own column names, every cell as text
        # (blanks too), the key, the label and the e-mail alongside: scored as the table
        # reads them, the key as each row's id.
        with (tmp_path / "telco.csv").open() as fh:
            raw = [r for r, _ in zip(csv.DictReader(fh), range(20), strict=False)]
        r = httpx.post(f"{st['url']}/predict", json={"rows": raw}, timeout=60)
        assert r.status_code == 200, r.text
        got = r.json()["predictions"]
        assert [g["id"] for g in got] == [x["customerID"] for x in raw]
        ren = yaml.safe_load((tmp_path / "insight.yaml").read_text())["sources"]["table"]["rename"]
        model = json.loads(_insight(tmp_path, "serve", "status", "--json").stdout)["models"][0]
        feats, cats = model["features"], set(model["categorical"])
        typed = [
            {
                f: (
                    None
                    if not (v := {ren.get(k, k): x for k, x in row.items()}[f]).strip()
                    else v
                    if f in cats
                    else float(v)
                )
                for f in feats
            }
            for row in raw
        ]
        r2 = httpx.post(f"{st['url']}/predict", json={"rows": typed}, timeout=60).json()
        assert [g["score"] for g in got] == [g["score"] for g in r2["predictions"]]
    finally:
        _insight(tmp_path, "serve", "down")
    # Batch scoring of the user's own table as it is: the same 20 rows score as /predict
    # scored them; a 21st row's text in a number column is scored as missing and counted; a
    # column the project does not know is left aside.
    extra = df.head(21).assign(Notes="call back")
    extra.loc[20, "TotalCharges"] = "n/a"
    write_csv(extra, tmp_path / "new_customers.csv")
    out = _ok(_insight(tmp_path, "score", "--input", "new_customers.csv", "-o", "scored"))
    assert "read as the project's source" in out and "1 cell(s)" in out, out
    scored = pd.read_parquet(tmp_path / "scored").set_index("customer_id").loc[extra["customerID"]]
    np.testing.assert_allclose(
        scored["score"].to_numpy()[:20], [g["score"] for g in got], rtol=0, atol=1e-9
    )
    assert scored["unparsed_cells"].tolist() == [0] * 20 + [1]
    # A newer table: the contract mix moves; drift compares the two snapshots.
    newer = telecom(2500, 12)
    newer.loc[: len(newer) // 2, "Contract"] = "Month-to-month"
    old_id = next((tmp_path / ".insight" / "features" / "telco").iterdir()).name
    write_csv(newer, tmp_path / "telco.csv")
    _ok(_insight(tmp_path, "features", "build"))
    out = _ok(_insight(tmp_path, "drift", "--reference", old_id))
    assert "contract" in out and "drifted: " in out
    report = json.loads(next((tmp_path / ".insight" / "reports").glob("drift-*.json")).read_text())
    by = {c["column"]: c for c in report["columns"]}
    assert by["contract"]["kind"] == "categorical" and by["contract"]["drifted"] is True
    assert by["gender"]["drifted"] is False


def _baseline_auc(ts: Any) -> float:
    """The obvious baseline a scikit-learn user writes, on the engine's own rows: one-hot
    logistic regression and HistGradientBoosting (native categoricals), the better of the
    two, fitted on train + validation, scored on the engine's test rows."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    fit = pd.concat([ts.train, ts.valid])
    num, cat = ts.schema.numeric_names, ts.schema.categorical
    y_fit, y_test = fit[ts.label].to_numpy(), ts.test[ts.label].to_numpy()

    def text(d: pd.DataFrame) -> pd.DataFrame:
        return d[ts.features].assign(**{c: d[c].astype(object).fillna("NA") for c in cat})

    lr = make_pipeline(
        ColumnTransformer(
            [
                ("n", make_pipeline(SimpleImputer(), StandardScaler()), num),
                ("c", OneHotEncoder(handle_unknown="ignore"), cat),
            ]
        ),
        LogisticRegression(max_iter=2000),
    ).fit(text(fit), y_fit)

    def cats(d: pd.DataFrame) -> pd.DataFrame:
        return d[ts.features].assign(**{c: d[c].astype("category") for c in cat})

    hgb = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    hgb.fit(cats(fit), y_fit)
    return max(
        roc_auc_score(y_test, lr.predict_proba(text(ts.test))[:, 1]),
        roc_auc_score(y_test, hgb.predict_proba(cats(ts.test))[:, 1]),
    )


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.ray
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_as_good_as_the_obvious_baseline(
    seed: int, spark: Any, ray_local: Workspace, tmp_path: Path
) -> None:
    """Held-out AUC within 0.02 of the better of one-hot logistic regression and
    HistGradientBoosting, trained on the same rows, on tables whose signal is categorical."""
    from engine.config.project import ProjectConfig
    from engine.data.init import plan
    from engine.data.project_file import render
    from engine.stages.features import stage_features
    from engine.stages.train import stage_train
    from engine.train.dataset import load_training_set

    table = write_csv(telecom(3000, 100 + seed), tmp_path / "telco.csv")
    (tmp_path / "insight.yaml").write_text(render(plan(table, "Churn")))
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    cfg = cfg.model_copy(
        update={"train": cfg.train.model_copy(update={"num_samples": 6, "seed": seed})}
    )
    ws = Workspace(tmp_path / ".insight").ensure()
    s, _ = stage_features(cfg, ws, spark)
    r = stage_train(cfg, ws, s.id, show_progress=False)
    ts = load_training_set(cfg, s)
    base = _baseline_auc(ts)
    ours = r.test_auc["estimate"]
    print(f"seed {seed}: engine {ours:.4f} ({r.family}) vs baseline {base:.4f}")
    assert ours >= base - 0.02, f"engine {ours:.4f} vs baseline {base:.4f} ({r.family})"
    assert np.isfinite(ours)
