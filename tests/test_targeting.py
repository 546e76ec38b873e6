"""Targeting from a user's campaign table (generated here, shaped like real ones: text
arms, yes/no outcomes, odd column names, blanks, duplicates): `insight init` writes a
project that loads, `insight target train` registers a targeter with its card, `insight
target decide` writes a contact list within the budget; every bad input is a clear error
and writes nothing. Unit tier (in-process, the local search engine; MLflow on sqlite)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from engine.cli import app
from engine.config.target import Budget, TargetProject
from engine.data.campaign import make_campaign
from engine.errors import ConfigError, DataError
from engine.targeting.init import plan_campaign

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _table(tmp: Path, n: int = 3000, seed: int = 1, amount: bool = False, fmt: str = "csv") -> Path:
    df, _ = make_campaign(n, seed=seed, amount=amount)
    # what real exports have: blanks in attributes, an exact duplicate row, a note column
    df.loc[df.index[:40], "Channel"] = None
    df.loc[df.index[40:60], "Tenure (months)"] = np.nan
    df = pd.concat([df, df.iloc[:3]], ignore_index=True)
    df["Campaign note"] = "spring"
    p = tmp / f"E-mail campaign.{fmt}"
    if fmt == "csv":
        df.to_csv(p, index=False)
    else:
        df.to_parquet(p, index=False)
    return p


def _init(table: Path, *extra: str, outcome: str = "visit") -> tuple[int, str]:
    r = CliRunner().invoke(
        app,
        [
            "init",
            "--from",
            str(table),
            "--treatment",
            "segment",
            "--control",
            "No E-Mail",
            "--outcome",
            outcome,
            *extra,
        ],
    )
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.output


def test_init_train_decide_on_a_campaign_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    table = _table(tmp_path)
    code, out = _init(table)
    assert code == 0, out
    proj = TargetProject.load(tmp_path / "insight.yaml")
    t = proj.target
    assert t.treatment == "segment" and t.control == "No E-Mail"
    assert t.arms == ["Discount E-Mail", "News E-Mail"] and t.outcome_kind == "binary"
    assert t.positive == "yes" and t.key == "customer_id"
    assert set(t.features) == {
        "age",
        "tenure_months",
        "spend_last_year",
        "region",
        "channel",
        "days_since_purchase",
        "churn_score",
    }, "the constant note column is left out, the key is not a feature"
    assert "randomisation check: the arms look randomised" in out
    # the user's economics and a budget
    raw = yaml.safe_load((tmp_path / "insight.yaml").read_text())
    raw["business"] = {
        "value_per_conversion": 30.0,
        "cost_per_contact": {"Discount E-Mail": 1.0, "News E-Mail": 0.5},
        "budget": {"contacts": 600},
    }
    raw["target"].update({"learners": ["t_learner", "x_learner"], "depths": [2], "folds": 3})
    raw["target"]["segments"] = {"k": "auto", "k_max": 4, "n_boot": 300}
    (tmp_path / "insight.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    r = CliRunner().invoke(app, ["target", "train", "--engine", "local"])
    assert r.exit_code == 0, r.output
    assert "dropped 3 row(s): exact duplicate rows" in r.output
    assert "registered e-mail-campaign-uplift v1 as @champion" in " ".join(r.output.split())
    from engine.stages.target import load_targeter
    from engine.workspace import Workspace

    tg, ref = load_targeter(Workspace((tmp_path / ".insight").resolve()), "e-mail-campaign-uplift")
    assert ref.tags["task"] == "target"
    assert tg.arms == ["No E-Mail", "Discount E-Mail", "News E-Mail"] and tg.key == "customer_id"
    import mlflow

    card = json.loads(mlflow.artifacts.load_text(f"runs:/{ref.run_id}/target_card.json"))
    assert card["campaign"]["rows"] == 3000 and card["campaign"]["dropped"] == {
        "exact duplicate rows": 3
    }
    assert {s["name"] for s in card["search"]["configurations"]} == {
        "t_learner(max_depth=2)",
        "x_learner(max_depth=2)",
    }
    at = card["policy"]["at_budget"]
    assert at["policy"]["contacts"] <= 600 and at["random"]["contacts"] == 600
    assert set(at) == {"policy", "treat_all", "treat_none", "random", "treat_by_baseline"}
    for kind in ("kmeans", "effect_tree"):
        rows = card["segments"][kind]["table"]
        assert rows and all(r["low"] <= r["lift"] <= r["high"] for r in rows)
    assert len(card["calibration"]) == 2 * 10
    # the next campaign's customers: the file's own column names
    nxt, _ = make_campaign(500, seed=9)
    customers = tmp_path / "next.csv"
    nxt.drop(columns=["segment", "visit"]).to_csv(customers, index=False)
    out = tmp_path / "contacts.csv"
    r = CliRunner().invoke(
        app, ["target", "decide", "--from", str(customers), "-o", str(out), "--contacts", "100"]
    )
    assert r.exit_code == 0, r.output
    dec = pd.read_csv(out)
    assert len(dec) == 500 and int(dec["contact"].sum()) == 100
    assert set(dec.loc[dec["contact"], "arm"]) <= {"Discount E-Mail", "News E-Mail"}
    assert dec["customer_id"].str.startswith("C09").all()
    first = dec[dec["contact"]]
    assert (first["net_value"].diff().dropna() <= 1e-12).all(), "best first"
    assert first["segment"].notna().all() and first["cluster"].notna().all()
    # `insight score` on a targeting project: the same decisions, the file's budget
    r = CliRunner().invoke(
        app, ["score", "--input", str(customers), "-o", str(tmp_path / "scored")]
    )
    assert r.exit_code == 0, r.output
    scored = pd.read_parquet(tmp_path / "scored" / "decisions.parquet")
    same = CliRunner().invoke(
        app, ["target", "decide", "--from", str(customers), "-o", str(tmp_path / "d.csv")]
    )
    assert same.exit_code == 0, same.output
    ref = pd.read_csv(tmp_path / "d.csv")
    np.testing.assert_allclose(scored["expected_lift"], ref["expected_lift"], rtol=1e-9)
    assert scored["contact"].tolist() == ref["contact"].tolist()
    # a money budget buys fewer contacts than its cheapest arm allows
    r = CliRunner().invoke(
        app, ["target", "decide", "--from", str(customers), "-o", str(out), "--money", "30"]
    )
    assert r.exit_code == 0, r.output
    dec = pd.read_csv(out)
    assert dec.loc[dec["contact"], "cost"].sum() <= 30.0
    # With a consent source: customers without consent to marketing are never selected
    # (listed, with why); the budget is spent among the others.
    rng = np.random.default_rng(3)
    everyone = set(dec["customer_id"])
    ok = set(rng.choice(sorted(everyone), 300, replace=False))
    pd.DataFrame(
        {"cust": sorted(ok), "purpose": "marketing", "status": "granted", "at": "2020-01-01"}
    ).to_csv(tmp_path / "consents.csv", index=False)
    raw = yaml.safe_load((tmp_path / "insight.yaml").read_text())
    raw["sources"]["consents"] = {"path": "consents.csv", "format": "csv"}
    raw["governance"] = {
        "consent": {
            "source": "consents", "subject": "cust", "purpose": "purpose", "status": "status",
            "time": "at",
        }
    }  # fmt: skip
    (tmp_path / "insight.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    r = CliRunner().invoke(
        app, ["target", "decide", "--from", str(customers), "-o", str(out), "--contacts", "100"]
    )
    assert r.exit_code == 0, r.output
    dec = pd.read_csv(out)
    assert len(dec) == 500 and int(dec["contact"].sum()) == 100
    assert set(dec.loc[dec["contact"], "customer_id"]) <= ok
    gone = dec[dec["withheld"].notna()]
    assert set(gone["customer_id"]) == everyone - ok
    assert set(gone["withheld"]) == {"no consent on record for 'marketing'"}
    assert not gone["contact"].any()


def test_an_amount_outcome_and_a_parquet_table(tmp_path: Path) -> None:
    from engine.stages.target import stage_target_train
    from engine.workspace import Workspace

    table = _table(tmp_path, 3000, 2, amount=True, fmt="parquet")
    code, out = _init(table, "--out", str(tmp_path / "p.yaml"), outcome="spend")
    assert code == 0, out
    raw = yaml.safe_load((tmp_path / "p.yaml").read_text())
    assert raw["target"]["outcome_kind"] == "amount"
    raw["target"].update({"learners": ["t_learner"], "depths": [2], "folds": 3})
    raw["target"]["segments"] = {"k": 3, "n_boot": 200}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    proj = TargetProject.load(tmp_path / "p.yaml")
    ws = Workspace(tmp_path / "ws").ensure()
    r = stage_target_train(proj, ws, engine="local", log=lambda _: None)
    assert r.card["campaign"]["outcome_kind"] == "amount"
    assert r.card["chosen"]["per_arm"][0]["uplift_auc"] is None, "no uplift AUC for amounts"
    assert np.isfinite(r.card["chosen"]["qini"])


# ---- bad input: a clear error, nothing written ------------------------------------------


def test_a_control_value_not_in_the_column(tmp_path: Path) -> None:
    table = _table(tmp_path, 400)
    with pytest.raises(
        ConfigError, match=r"'no e-mail', which is not a value.*differs only in case"
    ):
        plan_campaign(table, "segment", "no e-mail", "visit")
    assert not (tmp_path / "insight.yaml").exists()


def test_one_arm_only(tmp_path: Path) -> None:
    df, _ = make_campaign(300, seed=3)
    df["segment"] = "No E-Mail"
    p = tmp_path / "c.csv"
    df.to_csv(p, index=False)
    with pytest.raises(DataError, match="one arm only"):
        plan_campaign(p, "segment", "No E-Mail", "visit")


def test_an_arm_too_small_for_its_interval(tmp_path: Path) -> None:
    df, _ = make_campaign(600, seed=4)
    df.loc[df.index[:5], "segment"] = "SMS"
    p = tmp_path / "c.csv"
    df.to_csv(p, index=False)
    with pytest.raises(
        DataError, match=r"'SMS' \(5 rows\).*min_arm_rows \(30\).*listing the others"
    ):
        plan_campaign(p, "segment", "No E-Mail", "visit")


def test_an_amount_with_negative_values(tmp_path: Path) -> None:
    df, _ = make_campaign(600, seed=5, amount=True)
    df.loc[df.index[:7], "spend"] = -12.5
    p = tmp_path / "c.csv"
    df.to_csv(p, index=False)
    with pytest.raises(DataError, match=r"7 negative value\(s\) \(smallest -12.5\)"):
        plan_campaign(p, "segment", "No E-Mail", "spend")


def test_a_budget_below_one_contact_writes_no_list(tmp_path: Path) -> None:
    from engine.targeting.policy import Economics, check_budget

    econ = Economics(30.0, np.array([0.0, 1.0, 0.5]))
    with pytest.raises(ConfigError, match=r"below the cheapest contact \(0.5\)"):
        check_budget(Budget(money=0.2), econ)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Budget(contacts=0)
    r = CliRunner().invoke(
        app,
        [
            "target",
            "decide",
            "--from",
            "x.csv",
            "-o",
            str(tmp_path / "o.csv"),
            "--contacts",
            "0",
            "-p",
            str(tmp_path / "none.yaml"),
        ],
    )
    assert isinstance(r.exception, ConfigError) and "--contacts/--money" in str(r.exception)
    assert not (tmp_path / "o.csv").exists()


def test_a_targeting_file_given_to_a_churn_command_says_which_command(tmp_path: Path) -> None:
    from engine.config.project import ProjectConfig

    table = _table(tmp_path, 400)
    assert _init(table)[0] == 0
    with pytest.raises(ConfigError, match="insight target train"):
        ProjectConfig.load(tmp_path / "insight.yaml")


# ---- the churn project's treatment block: prerequisites at load, text arms ---------------


def _churn_with_campaign(tmp: Path, **source: object) -> Path:
    from tests.conftest import EXAMPLE

    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["sources"]["campaign"].update(source)
    raw["sources"]["campaign"] = {
        k: v for k, v in raw["sources"]["campaign"].items() if v is not None
    }
    p = tmp / "p.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


def test_a_treatment_source_without_times_is_refused_when_the_file_loads(tmp_path: Path) -> None:
    """Regression: a randomised table has no event_time; this was found only after the
    whole churn search. Now `insight validate` (any load) says it first, with the way out."""
    from engine.config.project import ProjectConfig

    p = _churn_with_campaign(tmp_path, event_time=None)
    with pytest.raises(
        ConfigError, match=r"has no event_time.*insight init --from TABLE --treatment"
    ):
        ProjectConfig.load(p)


def test_a_text_treatment_column_needs_its_control_value() -> None:
    """Regression: 'Womens E-Mail' / 'No E-Mail' crashed with 'a cannot be empty unless no
    samples are taken'."""
    from engine.train.uplift import treated_01

    arms = pd.Series(["Womens E-Mail", "No E-Mail", " No E-Mail", None])
    t = treated_01(arms, "No E-Mail", "segment")
    assert t.tolist()[:3] == [1.0, 0.0, 0.0] and np.isnan(t.iloc[3])
    with pytest.raises(DataError, match=r"not 0/1: which value is the control.*treatment.control"):
        treated_01(arms, None, "segment")
    with pytest.raises(DataError, match=r"3 arms.*targeting project"):
        treated_01(pd.Series(["a", "b", "c"]), "a", "segment")
    assert treated_01(pd.Series([1, 0, True, "false"]), None, "t").tolist() == [1.0, 0.0, 1.0, 0.0]


# ---- live lift ---------------------------------------------------------------------------


def _served(tmp: Path, true_lift: float, expected: float, n: int = 4000, seed: int = 0) -> tuple:
    """A targeting project and audited /decide answers: the policy chose every customer,
    10% held out at random; outcomes drawn with a known lift; the model expected another."""
    from engine.audit import AuditWriter
    from engine.workspace import Workspace

    raw = {
        "name": "shop",
        "sources": {"campaign": {"path": "campaign.csv", "format": "csv"}},
        "target": {
            "source": "campaign",
            "key": "customer_id",
            "treatment": "segment",
            "control": "No E-Mail",
            "outcome": "visit",
            "positive": "yes",
            "features": ["age"],
        },
        "pii": ["campaign.customer_id"],
        "monitor": {
            "sinks": {"hook": {"type": "webhook", "url_env": "INSIGHT_TEST_HOOK_URL"}},
            "rules": [
                {
                    "name": "lift-decline",
                    "statistic": "target.lift_change",
                    "op": "<",
                    "threshold": -0.05,
                    "min_rows": 40,
                    "severity": "critical",
                    "sinks": ["hook"],
                }
            ],
        },
    }
    proj = TargetProject.from_dict({**raw, "base_dir": str(tmp)})
    ws = Workspace(tmp / "ws").ensure()
    rng = np.random.default_rng(seed)
    held = rng.random(n) < 0.1
    seg = np.where(rng.random(n) < 0.5, "young", "old")
    keys = [f"C{i}" for i in range(n)]
    from engine.pii import hmac_hex, load_key

    k = load_key(ws.root)
    w = AuditWriter(ws.audit / "decide", writer="t")
    for i in range(0, n, 100):
        w.append(
            [
                {
                    "kind": "decide",
                    "route": "decide",
                    "request_id": f"r{i}",
                    "time": time.time(),
                    "model": "shop-uplift",
                    "versions": ["1"],
                    "keys": [hmac_hex(k, x) for x in keys[i : i + 100]],
                    "decisions": [
                        {
                            "contact": not h,
                            "arm": None if h else "E-Mail",
                            "best_arm": "E-Mail",
                            "expected_lift": expected,
                            "held_out": bool(h),
                            "segment": s,
                        }
                        for h, s in zip(held[i : i + 100], seg[i : i + 100], strict=True)
                    ],
                }
            ]
        )
    y = rng.random(n) < 0.2 + true_lift * ~held
    f = tmp / "outcomes.csv"
    pd.DataFrame({"Customer ID": keys, "visit": np.where(y, "yes", "no")}).rename(
        columns={"Customer ID": "customer_id"}
    ).to_csv(f, index=False)
    return proj, ws, f


def test_live_lift_per_segment_covers_the_true_lift_and_fires_on_a_decline(tmp_path: Path) -> None:
    from engine.targeting.live import ingest_outcomes, live_lift

    proj, ws, f = _served(tmp_path / "a", true_lift=0.10, expected=0.10)
    r1 = ingest_outcomes(proj, ws, f)
    assert r1["rows"] == 4000
    assert ingest_outcomes(proj, ws, f)["path"] == r1["path"], "the same file is stored once"
    out = live_lift(proj, ws)
    assert out["with_outcome"] == 4000 and set(out["segments"]) == {"all", "old", "young"}
    lo, hi = out["segments"]["all"]["lift"][1:]
    assert lo <= 0.10 <= hi and not out["firing"]
    # the model promised 0.10, customers now give 0.02: the whole interval of the change
    # lies below -5% in every segment
    proj2, ws2, f2 = _served(tmp_path / "b", true_lift=0.02, expected=0.10, seed=1)
    ingest_outcomes(proj2, ws2, f2)
    out2 = live_lift(proj2, ws2)
    assert "target|lift-decline|all|v1" in out2["firing"]
    assert out2["segments"]["all"]["change"][2] < -0.05
    # the same rule, declared in monitor.rules, through the alert pipeline: firing per
    # segment, a notification queued for its sink (not sent here)
    from engine.stages.monitor import stage_target_monitor

    run = stage_target_monitor(proj2, ws2, send=False, log=lambda m: None)
    assert run.result.rules is not None
    firing = run.result.rules.firing
    want = {f"decide|lift-decline|v1|{s}" for s in ("all", "old", "young")}
    assert want <= set(firing), firing
    assert run.result.rules.queued_notifications >= 1
    ok = stage_target_monitor(proj, ws, send=False, log=lambda m: None)
    assert ok.result.rules is not None and not ok.result.rules.firing
    from engine.report.targeting import targeting_section  # the report reads the history

    assert targeting_section(ws2) == [], "no registered targeting model: no panel entry"


def test_the_rollout_guards_name_a_fairness_breach_and_a_lift_breach(tmp_path: Path) -> None:
    """The roll-out's guards on two versions' live results: a challenger that contacts one
    region far more often than the champion does is a fairness breach; a lift interval
    wholly below the champion's is a lift breach; equal versions pass."""
    from engine.targeting.rollout import contact_gaps, guards

    proj, _, _ = _served(tmp_path, 0.1, 0.1, n=200)
    proj = proj.model_copy(update={"sensitive": ["region"]})
    rng = np.random.default_rng(0)

    def decided(north_rate: float) -> pd.DataFrame:
        region = rng.choice(["north", "south"], 400)
        rate = np.where(region == "north", north_rate, 0.5)
        return pd.DataFrame(
            {"inputs": [{"region": r} for r in region], "contact": rng.random(400) < rate}
        )

    def res(lift: list[float], north_rate: float, v: str) -> dict:
        seg = {"contacted": 300, "held_out": 100, "lift": lift, "change": [0, 0, 0]}
        return {
            "segments": {"all": seg},
            "firing": [],
            "version": v,
            "_decided": decided(north_rate),
        }

    gap = contact_gaps(decided(0.9), ["region"])["region"]
    assert 0.3 < gap < 0.5
    champ = res([0.10, 0.05, 0.15], 0.5, "1")
    assert guards(proj, champ, res([0.10, 0.05, 0.15], 0.5, "2")) == []
    unfair = guards(proj, champ, res([0.10, 0.05, 0.15], 0.95, "2"))
    assert len(unfair) == 1 and unfair[0].startswith("fairness: contact-rate gap on 'region'")
    worse = guards(proj, champ, res([-0.05, -0.10, 0.0], 0.5, "2"))
    assert len(worse) == 1 and worse[0].startswith("lift:")
