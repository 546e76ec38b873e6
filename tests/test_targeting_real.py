"""Targeting on a real randomised campaign and a real null experiment, both shipped inside a
PyPI package (causaldata 0.1.5, the data of Thornton 2008, "The Demand for, and Impact of,
Learning HIV Status", American Economic Review): nothing is downloaded at run time.

- **The campaign**: 2,834 people in rural Malawi were tested for HIV and offered, at random,
  a cash incentive (0 to 3 USD) to collect their result at a centre; outcome: collected it.
  The paper reports that any incentive raised collection by about 43 percentage points.
- **The null experiment**: the same randomised incentive, with the HIV status itself as the
  outcome. The test was taken before the incentive was drawn, so the incentive cannot have
  changed it: every true effect is zero.

The table is exported as a user would (text arms, yes/no outcome, village codes as text)
and goes through `insight init`'s planner and the training stage (local engine).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from engine.config.target import TargetProject
from engine.workspace import Workspace

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _thornton(tmp: Path) -> pd.DataFrame:
    causaldata = pytest.importorskip("causaldata")
    src = Path(causaldata.__file__).parent / "thornton_hiv" / "thornton_hiv.dta"
    df = pd.read_stata(src).dropna(subset=["any", "got"])
    return pd.DataFrame(
        {
            "Village": "V" + df["villnum"].astype("Int64").astype(str),
            "Distance (km)": df["distvct"],
            "Age": df["age"],
            "HIV 2004": df["hiv2004"],
            "Incentive": np.where(df["any"] == 1, "incentive", "no incentive"),
            "Got result": df["got"].map({1.0: "yes", 0.0: "no"}),
        }
    )


def _train(
    tmp: Path, table: pd.DataFrame, outcome: str, learner: str, depth: int, **kw: str
) -> dict:
    from engine.stages.target import stage_target_train
    from engine.targeting.init import plan_campaign, write_campaign_project

    p = tmp / "thornton.csv"
    table.to_csv(p, index=False)
    plan = plan_campaign(p, "Incentive", "no incentive", outcome, **kw)
    path = write_campaign_project(plan, tmp / "insight.yaml", force=True)
    raw = yaml.safe_load(path.read_text())
    raw["target"].update({"learners": [learner], "depths": [depth], "folds": 3})
    raw["business"] = {
        "value_per_conversion": 2.0,
        "cost_per_contact": 0.5,
        "budget": {"contacts": 1000},
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    proj = TargetProject.load(path)
    r = stage_target_train(proj, Workspace(tmp / "ws").ensure(), engine="local", log=lambda _: None)
    return {"plan": plan, "card": r.card}


def test_a_real_randomised_incentive_campaign(tmp_path: Path) -> None:
    out = _train(tmp_path, _thornton(tmp_path), "Got result", "x_learner", 4)
    plan, card = out["plan"], out["card"]
    assert card["campaign"]["rows"] == 2834 and card["campaign"]["outcome_kind"] == "binary"
    eff = card["campaign"]["effects"][0]["ate"]
    assert eff["low"] < 0.43 < eff["high"], eff  # the paper's 43 points
    assert 0.40 < eff["estimate"] < 0.50
    # the check sees what the design did: the incentive's share differed by village
    assert not plan.balance["looks_randomised"]
    assert any(r["feature"] == "village" for r in plan.balance["flagged"])
    q = card["chosen"]["per_arm"][0]["qini_auc"]
    assert q["low"] <= q["estimate"] <= q["high"] and q["estimate"] > 0
    at = card["policy"]["at_budget"]
    assert at["policy"]["contacts"] == 1000
    assert at["policy"]["low"] > 0, "contacting the 1,000 the model picks pays, CI included"
    assert at["policy"]["profit"] > at["treat_by_baseline"]["profit"]
    # every (segment, arm) lift on this strong campaign is positive and declared
    rows = card["segments"]["kmeans"]["table"]
    assert all(r["lift"] > 0 for r in rows)


def test_a_real_null_experiment_declares_nothing(tmp_path: Path) -> None:
    t = _thornton(tmp_path)
    t["HIV result"] = t.pop("HIV 2004").map({1.0: "positive", 0.0: "negative"})
    t = t.drop(columns=["Got result"])
    out = _train(tmp_path, t, "HIV result", "t_learner", 2, positive="positive")
    card = out["card"]
    eff = card["campaign"]["effects"][0]["ate"]
    assert eff["low"] < 0 < eff["high"], eff
    for kind in ("kmeans", "effect_tree"):
        declared = [r for r in card["segments"][kind]["table"] if r["significant"]]
        assert not declared, (kind, declared)
    at = card["policy"]["at_budget"]["policy"]
    assert at["low"] <= 0 <= at["high"], "no policy can be shown to pay without an effect"
