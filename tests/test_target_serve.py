"""``POST /decide`` through Ray Serve over real HTTP: two replicas share one budget under
concurrent load (never more contacts than it allows), every answer names the arm, the
expected lift with its segment's interval and why, matches the targeter called in
process, and is an audit record whose chain verifies; client mistakes are 422s."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

pytestmark = [pytest.mark.serve, pytest.mark.filterwarnings("ignore::FutureWarning")]

BUDGET = 30
TOKEN = "test-admin-token"  # a test's own token for its own app


@pytest.fixture(scope="module")
def decide_url(tmp_path_factory: pytest.TempPathFactory, ray_local: Any) -> Any:
    import yaml

    from engine.config.target import TargetProject
    from engine.data.campaign import make_campaign
    from engine.stages.target import stage_target_train
    from engine.workspace import Workspace
    from serve.target_app import target_up

    d = tmp_path_factory.mktemp("tg")
    df, _ = make_campaign(2500, seed=4)
    df.to_csv(d / "campaign.csv", index=False)
    from engine.targeting.init import plan_campaign, write_campaign_project

    p = plan_campaign(d / "campaign.csv", "segment", "No E-Mail", "visit")
    path = write_campaign_project(p, d / "insight.yaml", force=False)
    raw = yaml.safe_load(path.read_text())
    raw["target"].update({"learners": ["t_learner"], "depths": [2], "folds": 3})
    raw["target"]["segments"] = {"k": 3, "n_boot": 200}
    raw["business"] = {
        "value_per_conversion": 30.0,
        "cost_per_contact": 0.2,
        "budget": {"contacts": 1500},
    }
    raw["pii"] = ["campaign.customer_id"]
    raw["sensitive"] = ["region"]
    raw["target"]["rollout"] = {"steps": [50, 100], "min_rows": 120, "max_wait": "3m"}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    proj = TargetProject.load(path)
    ws = Workspace(d / ".insight").ensure()
    stage_target_train(proj, ws, engine="local", log=lambda m: None)
    from ray import serve

    from engine.config.target import Budget

    # today's budget: 30 contacts (the project's 1,500 of 2,500 set the cut-off)
    url = target_up(proj, ws, replicas=2, holdout=0.1, budget=Budget(contacts=BUDGET), token=TOKEN)
    try:
        yield url, proj, ws
    finally:
        serve.shutdown()


def _customers(n: int, seed: int) -> list[dict[str, Any]]:
    from engine.data.campaign import make_campaign
    from engine.data.init import snake

    df, _ = make_campaign(n, seed=seed)
    df.columns = [snake(c) for c in df.columns]
    return df.drop(columns=["segment", "visit"]).to_dict("records")


def test_the_budget_holds_across_replicas_under_concurrent_load(decide_url: Any) -> None:
    url = decide_url[0]
    batches = [_customers(8, 100 + i) for i in range(40)]
    with httpx.Client(timeout=60) as c, ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(lambda b: c.post(f"{url}/", json={"customers": b}), batches))
        budget = c.get(f"{url}/budget").json()
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200]
    decisions = [d for r in rs for d in r.json()["decisions"]]
    contacted = [d for d in decisions if d["contact"]]
    assert len(contacted) == BUDGET, "320 customers, many worth it: the budget is spent exactly"
    assert budget["spent"]["contacts"] == BUDGET
    spent = [d for d in decisions if d["why"].startswith("budget spent")]
    assert spent, "later customers worth a contact are refused once the budget is gone"
    assert any(d["held_out"] for d in decisions), "a random share held out: the live control"
    for d in contacted:
        assert d["arm"] in ("Discount E-Mail", "News E-Mail") and d["net_value"] > 0
        lo, hi = d["lift_interval"]
        assert lo is None or lo <= hi
        assert d["segment"] and d["why"].startswith("contact; segment:")
    replicas = {r.headers.get("x-request-id") for r in rs}
    assert len(replicas) == len(rs)


def test_an_answer_matches_the_targeter_and_is_audited(decide_url: Any) -> None:
    import pandas as pd

    from engine.audit import read_records, verify
    from engine.stages.target import load_targeter

    url, proj, ws = decide_url
    cust = _customers(5, 7)
    r = httpx.post(f"{url}/", json={"customers": cust}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    tg, ref = load_targeter(ws, proj.model_name)
    local = tg.decide(pd.DataFrame(cust)[tg.model.features]).sort_values("row")
    got = [d["expected_lift"] for d in body["decisions"]]
    np.testing.assert_allclose(got, local["expected_lift"].to_numpy(), rtol=1e-6)
    assert [d["customer_id"] for d in body["decisions"]] == [c["customer_id"] for c in cust]
    assert body["version"] == ref.version
    assert verify(ws.audit / "decide").ok
    recs = [
        x
        for x in read_records(ws.audit / "decide", kind="decide")
        if x.get("request_id") == body["request_id"]
    ]
    assert len(recs) == 1 and recs[0]["kind"] == "decide"
    assert recs[0]["keys"][0] != cust[0]["customer_id"], "the PII key is audited as a hash"


def test_client_mistakes_are_422s_naming_the_customer(decide_url: Any) -> None:
    url, _, _ = decide_url
    cust = _customers(2, 8)
    del cust[1]["age"]
    r = httpx.post(f"{url}/", json={"customers": cust}, timeout=60)
    assert r.status_code == 422 and "customers[1] lacks ['age']" in r.text
    cust = _customers(1, 9)
    cust[0]["age"] = "forty"
    r = httpx.post(f"{url}/", json={"customers": cust}, timeout=60)
    assert r.status_code == 422 and "customers[0].age is 'forty'" in r.text
    r = httpx.post(f"{url}/", json={"customers": []}, timeout=60)
    assert r.status_code == 422


def _traffic(url: str, proj: Any, ws: Any, lift: dict[str, float], seed: int) -> Any:
    """A traffic hook for the roll-out: 10 requests of 30 new customers, then their
    outcomes (0.2 without contact, plus the version's true lift when contacted)."""
    import pandas as pd

    from engine.targeting.live import ingest_outcomes

    state = {"batch": seed}

    def send(_: float) -> None:
        rng = np.random.default_rng(state["batch"])
        rows = []
        with httpx.Client(timeout=60) as c:
            for _i in range(10):
                state["batch"] += 1
                cust = _customers(30, state["batch"] % 100 + 10)
                for x in cust:
                    x["customer_id"] = f"R{state['batch']}-{x['customer_id']}"
                r = c.post(f"{url}/", json={"customers": cust})
                r.raise_for_status()
                for d in r.json()["decisions"]:
                    p = 0.2 + (lift[d["version"]] if d["contact"] else 0.0)
                    rows.append((d["customer_id"], "yes" if rng.random() < p else "no"))
        f = ws.root / f"outcomes-{state['batch']}.csv"
        pd.DataFrame(rows, columns=["customer_id", "visit"]).to_csv(f, index=False)
        ingest_outcomes(proj, ws, f)

    return send


def test_a_new_policy_rolls_out_in_steps_and_rolls_back_on_a_lift_breach(decide_url: Any) -> None:
    """The staggered roll-out of a policy, on real HTTP: v2 hurts the customers it contacts
    (live lift -0.1 against the champion's +0.3): rolled back at the first step, v1 keeps
    answering. Then a v3 as good as v1 goes 50% -> 100% and is promoted."""
    from engine.audit import AuditWriter, verify
    from engine.config.target import Budget
    from engine.governance.roles import add_token
    from engine.registry.models import resolve
    from engine.stages.target import stage_target_train
    from engine.targeting.rollout import rollout_policy
    from serve.target_app import target_up

    url, proj, ws = decide_url
    viewer = add_token(ws.root, "vera", "viewer")  # known to the app deployed next
    # a budget that does not run out (the first test spent the other), more held out
    url = target_up(proj, ws, replicas=1, holdout=0.3, budget=Budget(contacts=10**6), token=TOKEN)
    champion = resolve(proj.model_name, "champion").version
    v2 = stage_target_train(proj, ws, engine="local", log=lambda m: None).version
    control = AuditWriter(ws.audit / "control", writer="rollout-test")
    lift = {champion: 0.3, v2: -0.1}
    r = rollout_policy(
        proj,
        ws,
        v2,
        champion,
        url=url,
        token=TOKEN,
        traffic=_traffic(url, proj, ws, lift, 500),
        control=control,
        log=lambda m: None,
    )
    assert r["result"] == "rolled back", r
    assert r["steps"][0]["percent"] == 50 and any("lift" in b for b in r["steps"][0]["breaches"])
    after = httpx.post(f"{url}/", json={"customers": _customers(20, 77)}, timeout=60).json()
    assert {d["version"] for d in after["decisions"]} == {champion}, "v1 answers everyone again"
    v3 = stage_target_train(proj, ws, engine="local", log=lambda m: None).version
    lift[v3] = 0.3
    r = rollout_policy(
        proj,
        ws,
        v3,
        champion,
        url=url,
        token=TOKEN,
        traffic=_traffic(url, proj, ws, lift, 900),
        control=control,
        log=lambda m: None,
    )
    assert r["result"] == "promoted", r
    assert [s["percent"] for s in r["steps"]] == [50, 100]
    assert resolve(proj.model_name, "champion").version == v3
    after = httpx.post(f"{url}/", json={"customers": _customers(20, 78)}, timeout=60).json()
    assert {d["version"] for d in after["decisions"]} == {v3}
    assert verify(ws.audit / "control").ok
    # the admin routes need the token
    r401 = httpx.post(f"{url}/admin/traffic", json={"challenger_percent": 0}, timeout=60)
    assert r401.status_code == 401
    # a viewer's token is known but may not change traffic; every change names its actor
    r403 = httpx.post(
        f"{url}/admin/traffic",
        json={"challenger_percent": 0},
        headers={"Authorization": f"Bearer {viewer}"},
        timeout=60,
    )
    assert r403.status_code == 403 and "'vera' holds the role viewer" in r403.text, r403.text
    from engine.audit.verify import read_records
    from serve.target_app import APP_NAME

    admin = list(read_records(ws.audit / APP_NAME, kind="admin"))
    assert {a["action"] for a in admin} == {"traffic", "promote"}
    assert {(a["actor"], a["role"]) for a in admin} == {("admin-token", "admin")}
