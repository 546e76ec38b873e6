"""Wrong answers that real tables caused, caught without Spark (issue 20): keys that repeat,
leaking columns, label horizons, a CSV without its format, and the smaller traps. Each test
uses a generated table shaped like the case and fails on the old code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.config.project import ProjectConfig
from engine.data.init import plan
from engine.data.project_file import render
from engine.data.sources import check_sources
from engine.errors import DataError
from tests.tables import write_csv


def _accounts(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "account": [f"A{i:05d}" for i in range(n)],
            "plan": rng.choice(["basic", "pro"], n),
            "usage": np.round(rng.gamma(2.0, 3.0, n), 2),
            "churned": rng.choice(["yes", "no"], n),
        }
    )


def _load(tmp: Path, df: pd.DataFrame, label: str, **kw: str) -> tuple[ProjectConfig, Path]:
    table = write_csv(df, tmp / "table.csv")
    (tmp / "insight.yaml").write_text(render(plan(table, label, **kw)))
    return ProjectConfig.load(tmp / "insight.yaml"), table


def test_validate_names_a_repeated_key_and_its_largest_group(tmp_path: Path) -> None:
    df = _accounts()
    cfg, table = _load(tmp_path, df, "churned", key="account")
    check_sources(cfg, tmp_path)  # unique: fine
    # The file changes after init: account A00007 now appears three times, A00009 twice.
    worse = pd.concat([df, df.iloc[[7, 7, 9]]])
    worse.to_csv(table, index=False)
    with pytest.raises(DataError) as e:
        check_sources(cfg, tmp_path)
    msg = str(e.value)
    assert "'account' must be unique in the label rows" in msg
    assert (
        "3 rows repeat one already seen (2 repeated key(s); the largest group: account=A00007, 3 rows)"
        in msg
    )
    assert "Fix:" in msg and "row_id" in msg


def test_a_number_key_that_reads_the_same_is_a_repeat(tmp_path: Path) -> None:
    """'01' and '1' are one key once the build reads the column as a number."""
    df = _accounts(50)
    df["account"] = [str(i) for i in range(50)]
    cfg, table = _load(tmp_path, df, "churned", key="account")
    assert cfg.sources["table"].columns["account"] == "int"
    text = table.read_text().splitlines()
    text.append(text[8].replace("7,", "07,", 1))  # account 7 again, written '07'
    table.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"largest group: account=7\.0, 2 rows|account=7, 2 rows"):
        check_sources(cfg, tmp_path)


def test_label_rows_that_repeat_a_key_and_time(tmp_path: Path) -> None:
    rows = []
    for c in range(40):
        for m in range(3):
            rows.append(
                {
                    "cust_id": f"c{c}",
                    "month": f"2025-0{m + 1}-01",
                    "spend": c + m,
                    "y": "no" if c % 3 else "yes",
                }
            )
    df = pd.DataFrame(rows)
    cfg, table = _load(tmp_path, df, "y", key="cust_id", time="month")
    pd.concat([df, df.iloc[[4]]]).to_csv(table, index=False)
    with pytest.raises(DataError, match=r"'cust_id' and 'month' must be unique per label time"):
        check_sources(cfg, tmp_path)


def test_init_counts_identical_rows_of_a_table_without_id(tmp_path: Path) -> None:
    df = _accounts(200).drop(columns=["account"])
    df = pd.concat([df, df.iloc[[1, 1, 2]]])
    p = plan(write_csv(df, tmp_path / "t.csv"), "churned")
    assert p.row_id and p.key == "row_id"
    sizes = df.astype(str).groupby(list(df.columns)).size()  # pandas as the oracle
    rep = sizes[sizes > 1]
    assert rep.max() == 3 and len(rep) >= 2
    want = f"{rep.sum()} rows fall in {len(rep)} groups of identical rows (the largest: 3 rows)"
    assert want in p.key_note


def _without_format(cfg_path: Path, new_path: str | None = None) -> None:
    import yaml

    raw = yaml.safe_load(cfg_path.read_text())
    src = raw["sources"]["table"]
    src.pop("format", None)
    if new_path:
        src["path"] = new_path
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_a_csv_source_without_format_is_read_as_csv(tmp_path: Path) -> None:
    """Regression: a .csv path without `format: csv` was read as Parquet, and validate
    crashed with 'Parquet magic bytes not found ... a bug in Insight Engine'."""
    _, table = _load(tmp_path, _accounts(), "churned", key="account")
    _without_format(tmp_path / "insight.yaml")
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    assert cfg.sources["table"].format == "csv"
    check_sources(cfg, tmp_path)
    # No telling extension: the first bytes decide.
    table.rename(tmp_path / "export.dat")
    _without_format(tmp_path / "insight.yaml", "export.dat")
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    assert cfg.sources["table"].format == "csv"
    check_sources(cfg, tmp_path)


def test_a_file_that_is_not_its_format_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from tests.test_init import _insight

    _load(tmp_path, _accounts(), "churned", key="account")
    raw = yaml.safe_load((tmp_path / "insight.yaml").read_text())
    raw["sources"]["table"]["format"] = "parquet"
    (tmp_path / "insight.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    project, ws = str(tmp_path / "insight.yaml"), str(tmp_path / "ws")
    code, text = _insight(capsys, "validate", "--project", project, "--workspace", ws)
    assert code != 0
    assert "not a Parquet file" in text and "format: csv" in text and "bug" not in text


def test_predict_names_how_many_fields_are_missing_and_hints_at_entities(
    example_cfg: ProjectConfig,
) -> None:
    """Regression: the missing-field list stopped at five names without saying how many
    more, and a raw transaction sent to /predict got no word about `entities`."""
    from fastapi import HTTPException

    from engine.train.schema import FeatureSpec, InputSchema
    from serve.inputs import row_fields, rows_frame

    feats = [f for f in example_cfg.feature_names() if f != "gender"]
    cats = {"region", "plan"}
    schema = InputSchema(
        tuple(FeatureSpec(f, "categorical" if f in cats else "numeric") for f in feats)
    )
    fields = row_fields(example_cfg)
    event = {"customer_id": 17, "txn_time": "2025-09-01T10:00:00", "amount": 12.5, "channel": "app"}
    with pytest.raises(HTTPException) as e:
        rows_frame([event], schema, fields)
    msg = str(e.value.detail)
    assert e.value.status_code == 422
    assert f"and {len(feats) - 5} more ({len(feats)} in all)" in msg
    assert "['amount', 'channel', 'txn_time']" in msg and '{"entities"' in msg
    assert "insight features materialize" in msg
    # A row of features with one missing: no event hint, the one name.
    row = dict.fromkeys(feats[1:], 1.0) | {"region": "north", "plan": "basic"}
    with pytest.raises(HTTPException) as e:
        rows_frame([row], schema, fields)
    assert str(e.value.detail).startswith(f"rows[0]: missing field(s) ['{feats[0]}']")
    assert "event table" not in str(e.value.detail)


def _monthly_churn(
    tmp: Path, horizon: str | None, seed: int = 0, customers: int = 150
) -> tuple[ProjectConfig, pd.DataFrame]:
    """A purchase log turned into churn labels: at 12 monthly cutoffs, churned = no purchase
    in the 180 days after the cutoff (the label looks ahead of its time)."""
    import yaml

    from engine.data.project_file import render

    rng = np.random.default_rng(seed)
    cutoffs = pd.date_range("2024-01-01", periods=12, freq="MS")
    rows = []
    for c in range(customers):
        rate = rng.gamma(1.0, 0.02)  # purchases per day
        buys = np.sort(rng.uniform(0, 600, rng.poisson(rate * 600)))
        days = pd.Timestamp("2023-10-01") + pd.to_timedelta(buys, "D")
        for t in cutoffs:
            seen = days[days <= t]
            ahead = days[(days > t) & (days <= t + pd.Timedelta(days=180))]
            rows.append(
                {
                    "customer_id": f"c{c:04d}",
                    "cutoff": t,
                    "purchases_90d": int((seen > t - pd.Timedelta(days=90)).sum()),
                    "churned": "yes" if len(ahead) == 0 else "no",
                }
            )
    df = pd.DataFrame(rows)
    path = write_csv(df, tmp / "labels.csv")
    raw = yaml.safe_load(render(plan(path, "churned", key="customer_id", time="cutoff")))
    if horizon:
        raw["label"]["horizon"] = horizon
    (tmp / "insight.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return ProjectConfig.load(tmp / "insight.yaml"), df


def _snapshot_of(df: pd.DataFrame, time: str | None = "cutoff", key: str = "customer_id") -> object:
    from engine.features.snapshot import Snapshot

    frame = df.copy()
    frame["churned"] = (frame["churned"] == "yes").astype(int)
    return Snapshot(Path("."), {"snapshot_id": "s1", "label_time": time, "entity": key}), frame


def test_a_label_horizon_purges_rows_whose_outcome_reaches_the_next_period(tmp_path: Path) -> None:
    """Regression: 180-day labels at monthly cutoffs put rows whose outcome window runs past
    the first test cutoff into training (an optimistic test AUC)."""
    from engine.train.dataset import load_training_set

    cfg, df = _monthly_churn(tmp_path, "180d")
    s, frame = _snapshot_of(df)
    ts = load_training_set(cfg, s, frame)  # type: ignore[arg-type]
    h = pd.Timedelta(days=180)
    assert ts.split == "time" and ts.split_time is not None and ts.test_time is not None
    assert (ts.train["cutoff"] + h <= ts.split_time).all()
    refit = ts.fit_rows(refit=True)
    assert (refit["cutoff"] + h <= ts.test_time).all(), "no fitted outcome reaches the test"
    # pandas as the oracle of the counts
    before = frame[frame["cutoff"] < ts.split_time]
    want_train = int((before["cutoff"] + h > ts.split_time).sum())
    mid = frame[(frame["cutoff"] >= ts.split_time) & (frame["cutoff"] < ts.test_time)]
    want_valid = int((mid["cutoff"] + h > ts.test_time).sum())
    assert ts.purged == {"train": want_train, "refit": want_valid} and want_train > 0
    assert len(ts.valid) == len(mid), "validation rows are only scored in the search: kept"
    assert "label horizon 180d: purged" in ts.describe_split()
    assert len(ts.test) == int((frame["cutoff"] >= ts.test_time).sum()), "the test keeps its rows"
    assert ts.warnings == []
    # The same table without a horizon: nothing purged, and a warning that one is likely.
    cfg2, _ = (
        _monthly_churn(tmp_path / "b", None) if (tmp_path / "b").mkdir() is None else (None, None)
    )
    assert cfg2 is not None
    ts2 = load_training_set(cfg2, s, frame)  # type: ignore[arg-type]
    assert ts2.purged == {} and (ts2.train["cutoff"] + h > ts2.split_time).any()
    assert len(ts2.warnings) == 1 and "every month (12 cutoffs)" in ts2.warnings[0]
    assert "label.horizon" in ts2.warnings[0]


def test_a_horizon_that_purges_everything_is_a_clear_error(tmp_path: Path) -> None:
    from engine.train.dataset import load_training_set

    cfg, df = _monthly_churn(tmp_path, "400d", customers=30)
    s, frame = _snapshot_of(df)
    with pytest.raises(DataError, match=r"label.horizon 400d purges every training row.*Fix:"):
        load_training_set(cfg, s, frame)  # type: ignore[arg-type]


def test_the_card_states_each_splits_exact_label_times(tmp_path: Path) -> None:
    """Regression: the card said 'trained on label times A .. B' with B the test's end."""
    from engine.registry.card import limitations, split_ranges
    from engine.train.dataset import load_training_set

    cfg, df = _monthly_churn(tmp_path, "180d", customers=60)
    s, frame = _snapshot_of(df)
    ts = load_training_set(cfg, s, frame)  # type: ignore[arg-type]
    got = ts.ranges()
    for part in ("train", "valid", "test"):
        t = ts.part(part)["cutoff"]
        assert got[part] == (str(t.min()), str(t.max()))
    fitted = ts.fitted_range(refit=True)
    assert fitted is not None and fitted[1] < str(ts.test_time)
    td = {
        "time_range": list(ts.time_range or ()),
        "fitted_time_range": list(fitted),
        "split": {"ranges": {p: list(r) if r else None for p, r in got.items()}},
        "left_out": {},
        "warnings": [],
    }
    card = {
        "training_data": td,
        "metrics": {"rows": 5000, "calibration": {"ece": 0.0}, "fairness": {}, "threshold": 0.5},
        "uplift": None,
    }
    first = limitations(card, cfg)[0]
    assert first.startswith(f"Trained on label times {fitted[0]} to {fitted[1]} and tested on")
    assert ("test label times", f"{got['test'][0]} to {got['test'][1]}") in split_ranges(td)


def campaign(n: int = 6000, seed: int = 0) -> pd.DataFrame:
    """Shaped like the public randomised e-mail campaign: three arms as text, visit as the
    outcome, and conversion and spend measured after it (spend > 0 implies a visit)."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(["Mens E-Mail", "Womens E-Mail", "No E-Mail"], n)
    recency = rng.integers(1, 13, n)
    history = np.round(rng.gamma(2.0, 120.0, n), 2)
    logit = -2.2 + 0.6 * (segment != "No E-Mail") - 0.05 * recency + 0.001 * history
    visit = rng.random(n) < 1 / (1 + np.exp(-logit))
    conversion = visit & (rng.random(n) < 0.06)
    spend = np.where(conversion, np.round(rng.gamma(2.0, 60.0, n), 2), 0.0)
    return pd.DataFrame(
        {
            "recency": recency,
            "history": history,
            "mens": rng.integers(0, 2, n),
            "zip_code": rng.choice(["Urban", "Suburban", "Rural"], n),
            "newbie": rng.integers(0, 2, n),
            "channel": rng.choice(["Web", "Phone", "Multichannel"], n),
            "segment": segment,
            "visit": visit.astype(int),
            "conversion": conversion.astype(int),
            "spend": spend,
            "visited_flag": np.where(visit, "Y", "N"),  # a copy of the label
            "engagement_score": visit * 10 + rng.normal(0, 1, n),  # separates it alone
        }
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_init_leaves_out_columns_that_leak_the_label(tmp_path: Path, seed: int) -> None:
    """Regression: init --label visit proposed conversion, spend and the treatment column
    as features, with no warning."""
    from engine.data.leaks import leak_reason

    df = campaign(seed=seed)
    p = plan(write_csv(df, tmp_path / "campaign.csv"), "visit")
    out = p.left_out
    assert set(p.leaks) == {"conversion", "spend", "visited_flag", "engagement_score", "segment"}
    assert ("implies the label: all" in out["spend"] and "'0.0'" in out["spend"]) or "'0'" in out[
        "spend"
    ]
    assert "implies the label" in out["conversion"]
    assert "determines the label" in out["visited_flag"]
    assert "single-feature AUC" in out["engagement_score"]
    assert "campaign arms" in out["segment"] and "treatment" in out["segment"]
    assert {"recency", "history", "mens", "zip_code", "newbie", "channel"} <= set(p.features)
    text = render(p)
    assert "#   spend: leaks the label" in text
    # The oracle of the first sign: pandas' crosstab says every spender visited.
    spent = df[df["spend"] > 0]
    assert len(spent) >= 30 and (spent["visit"] == 1).all()
    # No honest column of the table is flagged, on any seed.
    for col in ("recency", "history", "mens", "newbie"):
        assert leak_reason(df[col], df["visit"].to_numpy()) is None


def test_training_refuses_a_leaking_feature_unless_allowed(tmp_path: Path) -> None:
    import yaml

    from engine.train.dataset import load_training_set

    df = campaign(6000)
    path = write_csv(df, tmp_path / "c.csv")
    raw = yaml.safe_load(render(plan(path, "visit")))
    raw["features"]["views"][0]["columns"].append("spend")  # put it back by hand
    (tmp_path / "insight.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    from engine.features.snapshot import Snapshot

    frame = df.assign(row_id=[f"r{i}" for i in range(len(df))])
    s = Snapshot(Path("."), {"snapshot_id": "s", "label_time": None, "entity": "row_id"})
    with pytest.raises(DataError) as e:
        load_training_set(cfg, s, frame)
    msg = str(e.value)
    assert "1 feature(s) leak the label 'visit': 'spend'" in msg and "allow_leaky" in msg
    raw["train"] = {**raw.get("train", {}), "allow_leaky": ["spend"]}
    (tmp_path / "insight.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    ts = load_training_set(ProjectConfig.load(tmp_path / "insight.yaml"), s, frame)
    assert "spend" in ts.features


def test_drift_reference_never_holds_the_current_window(tmp_path: Path) -> None:
    """Regression: with train.until after drift.current_from, the 'training window'
    reference included every current row, and nothing said so."""
    import json

    import yaml

    from engine.stages.drift import stage_drift
    from engine.workspace import Workspace
    from tests.conftest import EXAMPLE

    rng = np.random.default_rng(0)
    times = pd.to_datetime(rng.choice(pd.date_range("2025-01-01", "2025-12-01", freq="MS"), 3000))
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["train"]["until"] = "2025-11-30"
    raw["drift"]["current_from"] = "2025-10-01"
    raw.pop("sample", None)
    (tmp_path / "insight.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    feats = [f for f in cfg.feature_names() if f not in cfg.sensitive]
    late = np.asarray(times >= pd.Timestamp("2025-10-01"))
    df = pd.DataFrame({f: rng.normal(0, 1, len(times)) for f in feats})
    for f in ("region", "plan"):
        df[f] = rng.choice(["a", "b"], len(times))
    df["amount_sum_30d"] = df["amount_sum_30d"] + 3.0 * late  # the current window drifts
    df["label_time"], df["customer_id"], df["churned"] = times, np.arange(len(times)), 0
    ws = Workspace(tmp_path / ".insight").ensure()
    d = ws.features / cfg.name / "s1" / "data"
    d.mkdir(parents=True)
    df.to_parquet(d / "part-0.parquet")
    manifest = {
        "snapshot_id": "s1",
        "label_time": "label_time",
        "event_time_range": [str(times.min()), str(times.max())],
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    (d.parent / "manifest.json").write_text(json.dumps(manifest))
    r = stage_drift(cfg, ws, "s1")
    n_cur = int(late.sum())
    assert r.current_rows == n_cur and r.reference_rows == len(times) - n_cur
    assert "rows of the current window" in r.reference and "do not overlap" in r.reference
    assert "amount_sum_30d" in r.drifted
    rep = json.loads(r.report_path.read_text())
    assert rep["windows_overlap"] is False and "train.until (2025-11-30)" in rep["reference_cut"]


@pytest.mark.parametrize("seed", range(4))
def test_the_baselines_match_sklearn_and_pick_the_best_feature_on_fitted_rows(seed: int) -> None:
    """The first gate's floor: the best single feature is chosen on the fitted rows (not the
    test), its test AUC equals scikit-learn's, and a model no better than it is not promoted."""
    import yaml
    from sklearn.metrics import roc_auc_score

    from engine.features.snapshot import Snapshot
    from engine.registry.baseline import baselines
    from engine.train.dataset import load_training_set
    from tests.conftest import EXAMPLE

    rng = np.random.default_rng(seed)
    n = 4000
    strong = rng.normal(0, 1, n)
    weak = rng.normal(0, 1, n)
    cat = rng.choice(["a", "b", "c"], n)
    logit = 1.6 * strong - 0.9 * weak + np.where(cat == "a", 0.8, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    df = pd.DataFrame(
        {"row_id": [f"r{i}" for i in range(n)], "strong": -strong, "weak": weak, "cat": cat, "y": y}
    )
    raw = {
        "name": "b",
        "entities": {"row": {"key": "row_id"}},
        "sources": {
            "t": {
                "path": "t.csv",
                "format": "csv",
                "entity": "row",
                "columns": {
                    "row_id": "string",
                    "strong": "double",
                    "weak": "double",
                    "cat": "string",
                    "y": "int",
                },
            }
        },
        "label": {"source": "t", "column": "y"},
        "features": {"views": [{"name": "v", "source": "t", "columns": ["strong", "weak", "cat"]}]},
        "train": {"seed": seed},
    }
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "p.yaml").write_text(yaml.safe_dump(raw))
        cfg = ProjectConfig.load(Path(d) / "p.yaml")
    s = Snapshot(Path("."), {"snapshot_id": "s", "label_time": None, "entity": "row_id"})
    ts = load_training_set(cfg, s, df)
    yt = ts.test["y"].to_numpy()
    # A model that is the best feature itself (direction fixed): not better than it.
    same = -ts.test["strong"].to_numpy()
    b = baselines(ts, same, refit=True, n_boot=200, alpha=0.05, seed=seed, rule="better")
    f = b["best_single_feature"]
    assert f["feature"] == "strong"
    assert f["auc"]["estimate"] == pytest.approx(roc_auc_score(yt, same), abs=1e-12)
    assert f["difference"]["estimate"] == pytest.approx(0.0, abs=1e-12) and not f["beaten"]
    assert b["class_prior"]["beaten"]
    # The default rule: not significantly worse passes, and says it is not shown better.
    nw = baselines(ts, same, refit=True, n_boot=200, alpha=0.05, seed=seed)
    assert nw["best_single_feature"]["beaten"] and not nw["best_single_feature"]["better"]
    # A model clearly worse than the feature fails under either rule.
    worse = same + rng.normal(0, 2.0, len(same))
    for rule in ("not_worse", "better"):
        bw = baselines(ts, worse, refit=True, n_boot=200, alpha=0.05, seed=seed, rule=rule)
        assert not bw["best_single_feature"]["beaten"], rule
    # The true logit beats both.
    true = (
        1.6 * -ts.test["strong"] - 0.9 * ts.test["weak"] + np.where(ts.test["cat"] == "a", 0.8, 0.0)
    )
    b2 = baselines(
        ts, true.to_numpy(), refit=True, n_boot=200, alpha=0.05, seed=seed, rule="better"
    )
    assert b2["best_single_feature"]["beaten"] and b2["class_prior"]["beaten"]
    # Noise beats neither.
    b3 = baselines(ts, rng.random(len(yt)), refit=True, n_boot=200, alpha=0.05, seed=seed)
    assert not b3["best_single_feature"]["beaten"] and not b3["class_prior"]["beaten"]
    _ = EXAMPLE


@pytest.mark.parametrize("fmt", ["csv", "parquet-ms"])
def test_a_csv_treatment_table_is_read_as_its_source_says(tmp_path: Path, fmt: str) -> None:
    """Regression: the treatment source was read with pd.read_parquet whatever its format
    ('Parquet magic bytes' for a CSV campaign), and a Parquet file of milliseconds crashed
    the as-of merge ('incompatible merge keys')."""
    import yaml

    from engine.features.snapshot import Snapshot
    from engine.train.dataset import load_training_set
    from engine.train.uplift import uplift_data
    from tests.conftest import EXAMPLE

    rng = np.random.default_rng(0)
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw.pop("sample", None)
    raw["train"].pop("until", None)
    cfg0 = ProjectConfig.model_validate({**raw, "base_dir": str(tmp_path)})
    feats = [f for f in cfg0.feature_names() if f != "gender"]
    n = 600
    times = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 6, n) * 30, "D")
    frame = pd.DataFrame({f: rng.normal(0, 1, n) for f in feats})
    frame["region"], frame["plan"] = rng.choice(["n", "s"], n), rng.choice(["a", "b"], n)
    frame["gender"] = rng.choice(["f", "m"], n)
    frame["customer_id"], frame["label_time"] = np.arange(n) % 150, times
    frame["churned"] = rng.integers(0, 2, n)
    frame = frame.drop_duplicates(["customer_id", "label_time"])
    camp = pd.DataFrame(
        {
            "customer_id": np.arange(150),
            "campaign_time": pd.Timestamp("2025-07-15"),
            "treated": rng.integers(0, 2, 150),
            "converted": rng.integers(0, 2, 150),
        }
    )
    if fmt == "csv":
        path = tmp_path / "campaign.csv"
        camp.assign(campaign_time="15/07/2025").to_csv(path, index=False, sep=";")
        raw["sources"]["campaign"] |= {
            "path": str(path),
            "format": "csv",
            "delimiter": ";",
            "time_formats": {"campaign_time": "dd/MM/yyyy"},
        }
    else:
        path = tmp_path / "campaign.parquet"
        camp.assign(campaign_time=camp["campaign_time"].astype("datetime64[ms]")).to_parquet(path)
        raw["sources"]["campaign"]["path"] = str(path)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = ProjectConfig.load(tmp_path / "p.yaml")
    s = Snapshot(
        Path("."), {"snapshot_id": "s", "label_time": "label_time", "entity": "customer_id"}
    )
    ts = load_training_set(cfg, s, frame)
    d = uplift_data(cfg, ts, frame, tmp_path)
    assert len(d.t_train) + len(d.t_test) == 150, "every campaign row found its features"
    assert set(np.unique(d.t_train)) == {0.0, 1.0}


def test_an_unknown_model_version_lists_the_known_ones(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from engine.errors import StateError
    from engine.registry import models
    from engine.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    client = MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.tracking_uri)
    client.create_registered_model("m")
    for _ in range(2):
        client.create_model_version("m", source=str(tmp_path), tags={"features": "[]"})
    import mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(ws.tracking_uri)
    mlflow.set_registry_uri(ws.tracking_uri)
    try:
        with pytest.raises(StateError, match=r"no version '7' \(versions: 2, 1\)"):
            models.get_version("m", "7")
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
