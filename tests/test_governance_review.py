"""The human review queue: rows sampled at the policy's rates (random, low confidence),
none twice; the next item comes with its explanation; verdicts are audited and a dispute
needs a reason and becomes a label; the dispute rate's interval is statsmodels' Wilson
interval and covers by simulation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def _setup(tmp_path: Path, n: int = 600) -> tuple[object, object, np.ndarray]:
    import mlflow

    from engine.audit import AuditWriter, audit_inputs, decision_record
    from engine.config.governance import GovernanceConfig, ReviewConfig
    from engine.config.project import ProjectConfig
    from engine.registry.models import register_model
    from engine.tracking import setup_mlflow
    from engine.train.families import logreg
    from engine.train.schema import InputSchema
    from engine.workspace import Workspace

    ex = Path(__file__).resolve().parent.parent / "examples" / "retail" / "insight.yaml"
    ws = Workspace(tmp_path / ".insight").ensure()
    gov = GovernanceConfig(
        review=ReviewConfig(random_rate=0.1, low_confidence_band=0.05, low_confidence_rate=1.0)
    )
    cfg = ProjectConfig.load(ex).model_copy(update={"workspace": str(ws.root), "governance": gov})
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(0, 1, 300), "b": rng.normal(0, 1, 300)})
    y = (x["a"] + rng.normal(0, 1, 300) > 0).astype(float).to_numpy()
    model = logreg.fit({"C": 1.0}, x, y, seed=0, nthread=1, rounds=1,
                       schema=InputSchema.infer(x, ["a", "b"]))  # fmt: skip
    with mlflow.start_run(experiment_id=setup_mlflow(ws, cfg.name)):
        ref = register_model(model_name="m", scorer=model, x_example=x.head(3), tags={},
                             alias="champion")  # fmt: skip
    rows = pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.normal(0, 1, n)})
    p = model.proba(rows)
    w = AuditWriter(ws.audit / "insight", writer="t", columnar=True)
    lid = w.register_layout(["a", "b"], [], [])
    for i in range(0, n, 3):  # requests of 3 rows
        part = list(range(i, min(n, i + 3)))
        xr = rows.iloc[part].reset_index(drop=True)
        w.append([decision_record(
            route="predict", request_id=f"q{i}", model="m", versions=[ref.version] * len(part),
            generation=1, ids=[f"C{j}" for j in part], layout=lid,
            inputs=audit_inputs(xr, "values", ["a", "b"], []), input_policy="values",
            scores=[float(p[j]) for j in part], threshold=0.5, latency_ms=1.0)])  # fmt: skip
    w.close()
    return cfg, ws, p


def test_the_queue_samples_at_its_rates_and_verdicts_are_audited_labels(tmp_path: Path) -> None:
    from statsmodels.stats.proportion import proportion_confint

    from engine.audit.verify import read_records, verify
    from engine.errors import ConfigError, StateError
    from engine.governance.review import next_item, record, review_dir, sample, stats

    cfg, ws, p = _setup(tmp_path)
    s = sample(cfg, ws)  # type: ignore[arg-type]
    assert s["rows_seen"] == len(p)
    queue = (review_dir(ws) / "queue.jsonl").read_text().splitlines()  # type: ignore[arg-type]
    q = [json.loads(line) for line in queue]
    low = {f"insight:q{3 * (j // 3)}:{j % 3}" for j in np.flatnonzero(np.abs(p - 0.5) <= 0.05)}
    got = {it["item"] for it in q}
    assert low <= got, "every low-confidence row (rate 1.0)"
    rand = [it for it in q if it["why"] == "random"]
    n_other = len(p) - len(low)
    assert abs(len(rand) - 0.1 * len(p)) <= 4 * np.sqrt(len(p) * 0.09) and n_other > 0
    assert sample(cfg, ws)["queued"] == 0, "a re-run adds none twice"  # type: ignore[arg-type]
    assert all(len(it["subject_hash"]) == 64 and "C" not in it["subject_hash"] for it in q)
    it = next_item(ws)  # type: ignore[arg-type]
    assert it is not None and it["explanation"]["score_recomputed"] == pytest.approx(it["score"])
    with pytest.raises(ConfigError, match="needs --reason"):
        record(ws, it["item"], "dispute", "ana")  # type: ignore[arg-type]
    record(ws, it["item"], "dispute", "ana", "the customer had just renewed")  # type: ignore[arg-type]
    with pytest.raises(StateError, match="reviewed already"):
        record(ws, it["item"], "confirm", "ben")  # type: ignore[arg-type]
    nxt = next_item(ws)  # type: ignore[arg-type]
    assert nxt is not None and nxt["item"] != it["item"]
    record(ws, nxt["item"], "confirm", "ben")  # type: ignore[arg-type]
    st = stats(ws)  # type: ignore[arg-type]
    assert (st["reviewed"], st["disputed"], st["pending"]) == (2, 1, len(got) - 2)
    lo, hi = proportion_confint(1, 2, alpha=0.05, method="wilson")
    assert st["dispute_rate"]["low"] == pytest.approx(lo) and st["dispute_rate"][
        "high"
    ] == pytest.approx(hi)
    lab = pd.read_parquet(review_dir(ws) / "labels-review.parquet")  # type: ignore[arg-type]
    assert lab.set_index("id")["disputed"].to_dict() == {it["request_id"]: 1, nxt["request_id"]: 0}
    recs = list(read_records(ws.audit / "control", kind="review"))  # type: ignore[attr-defined]
    assert [(r["reviewer"], r["verdict"]) for r in recs] == [("ana", "dispute"), ("ben", "confirm")]
    assert verify(ws.audit).ok  # type: ignore[attr-defined]
    # the dispute rate is a monitored statistic an alert rule can fire on
    from engine.config.monitor import RuleConfig
    from engine.monitor.alerting.rules import judge
    from engine.monitor.run import monitor_window

    res = monitor_window(cfg, ws, 0.0, 4e9)  # type: ignore[arg-type]
    assert res.review is not None and (res.review.estimate, res.review.n) == (0.5, 2)
    rule = RuleConfig.model_validate(
        {"name": "disputes", "statistic": "review.dispute_rate", "op": ">", "threshold": 0.05,
         "min_rows": 2}
    )  # fmt: skip
    mc = cfg.monitor.model_copy(update={"rules": [rule]})  # type: ignore[attr-defined]
    [j] = judge(mc, res)
    assert j.holds and j.key == "insight|disputes|-|-"
    strict = mc.model_copy(update={"rules": [rule.model_copy(update={"min_rows": 3})]})
    assert not judge(strict, res)[0].holds, "too few reviews: not enough data"


def test_the_dispute_rates_interval_covers_by_simulation() -> None:
    """95% Wilson intervals of the dispute rate cover the true rate about 95% of the time
    (2,000 simulated review batches at each of three rates and sizes)."""
    from engine.kernels.intervals import wilson

    rng = np.random.default_rng(7)
    for p, n in ((0.05, 80), (0.2, 40), (0.5, 25)):
        k = rng.binomial(n, p, 2000)
        cover = np.mean([lo <= p <= hi for lo, hi in (wilson(x, n, 1.959963984540054) for x in k)])
        assert 0.92 <= cover <= 0.985, (p, n, cover)


def test_the_reviewers_page_takes_verdicts_from_a_reviewer_only(tmp_path: Path) -> None:
    """The live dashboard's /review: no token 401, a viewer 403, a reviewer sees the item
    with its explanation and records a verdict in their name (audited); a form whose key
    is not the token's is refused; a dispute without a reason is said; the rest of the
    dashboard stays read-only."""
    import re
    import threading

    import httpx

    from engine.audit.verify import read_records
    from engine.governance.review import next_item, sample
    from engine.governance.roles import add_token
    from engine.report.review_page import form_key
    from engine.report.server import dashboard_url, serve_dashboard

    cfg, ws, _ = _setup(tmp_path, n=60)
    sample(cfg, ws)  # type: ignore[arg-type]
    first = next_item(ws)  # type: ignore[arg-type]
    assert first is not None
    ana = add_token(ws.root, "ana", "reviewer")  # type: ignore[attr-defined]
    vic = add_token(ws.root, "vic", "viewer")  # type: ignore[attr-defined]
    srv = serve_dashboard(cfg, ws, port=0, log=lambda _: None)  # type: ignore[arg-type]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = dashboard_url(srv) + "review"
    try:
        with httpx.Client(timeout=30) as c:
            assert c.get(url).status_code == 401
            r = c.get(url, headers={"Authorization": f"Bearer {vic}"})
            assert r.status_code == 403 and "needs the role reviewer" in r.text
            r = c.get(url, params={"token": ana})
            assert r.status_code == 200 and "insight_reviewer=" in r.headers["set-cookie"]
            assert "form-action 'self'" in r.headers["content-security-policy"]
            assert first["item"] in r.text and "Reviewer: <strong>ana</strong>" in r.text
            assert "SHAP" in r.text
            key = re.search(r"name='form_key' value='([0-9a-f]+)'", r.text).group(1)  # type: ignore[union-attr]
            assert key == form_key(ana)
            bad = c.post(url, data={"item": first["item"], "verdict": "confirm", "form_key": "x"})
            assert bad.status_code == 403  # the cookie alone does not post a verdict
            r = c.post(url, data={"item": first["item"], "verdict": "dispute", "form_key": key})
            assert r.status_code == 400 and "needs --reason" in r.text
            r = c.post(
                url,
                data={"item": first["item"], "verdict": "dispute", "form_key": key,
                      "reason": "tenure was wrong"},
            )  # fmt: skip
            assert r.status_code == 200 and f"{first['item']}: dispute recorded, by ana" in r.text
            again = c.post(url, data={"item": first["item"], "verdict": "confirm", "form_key": key})
            assert again.status_code == 400 and "reviewed already" in again.text
            assert c.post(dashboard_url(srv), data={}).status_code == 405
    finally:
        srv.shutdown()
        srv.server_close()
    [rec] = list(read_records(ws.audit / "control", kind="review"))  # type: ignore[attr-defined]
    assert rec["reviewer"] == "ana" and rec["verdict"] == "dispute"
    assert rec["reason"] == "tenure was wrong"


def test_drift_flagged_and_high_impact_rows_are_queued_at_their_rates(tmp_path: Path) -> None:
    """Rates of 1 for one reason and 0 for the others: exactly the rows with an input out
    of the version's profile range are queued as drift, then exactly the rows decided yes
    as high impact; at 0.5, about half of them (binomial bounds)."""
    from engine.config.governance import GovernanceConfig, ReviewConfig
    from engine.governance.review import review_dir, sample
    from engine.monitor.store import monitor_dir

    cfg, ws, p = _setup(tmp_path, n=900)
    profiles = monitor_dir(ws) / "profiles"  # type: ignore[arg-type]
    profiles.mkdir(parents=True, exist_ok=True)
    (profiles / "m-v1.json").write_text(json.dumps({"features": {
        "a": {"kind": "numeric", "min": -1.0, "max": 1.0},
        "b": {"kind": "numeric", "min": -5.0, "max": 5.0}}}))  # fmt: skip
    from engine.audit.verify import read_records

    a = [row[0] for r in read_records(ws.audit / "insight") for row in r["inputs"]]  # type: ignore[attr-defined]
    out_of_range = set(np.flatnonzero(np.abs(np.asarray(a)) > 1.0).tolist())
    assert 0 < len(out_of_range) < len(a)

    def queued(**rates: float) -> dict[int, str]:
        q = review_dir(ws) / "queue.jsonl"  # type: ignore[arg-type]
        q.unlink(missing_ok=True)
        base = {"random_rate": 0.0, "low_confidence_rate": 0.0, "drift_rate": 0.0,
                "high_impact_rate": 0.0}  # fmt: skip
        c = cfg.model_copy(
            update={"governance": GovernanceConfig(review=ReviewConfig(**{**base, **rates}))}
        )  # type: ignore[attr-defined]
        sample(c, ws)  # type: ignore[arg-type]
        items = [json.loads(x) for x in q.read_text().splitlines()] if q.is_file() else []
        return {int(it["request_id"][1:]) + int(it["row"]): it["why"] for it in items}

    got = queued(drift_rate=1.0)
    assert set(got) == out_of_range and set(got.values()) == {"drift"}
    got = queued(high_impact_rate=1.0)
    assert set(got) == set(np.flatnonzero(p >= 0.5).tolist()) and set(got.values()) == {
        "high impact"
    }
    half = queued(drift_rate=0.5)
    n = len(out_of_range)
    assert set(half) <= out_of_range and abs(len(half) - n / 2) <= 4 * np.sqrt(n / 4)
