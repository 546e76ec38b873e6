"""The Serve app over real HTTP on 127.0.0.1: a real local Ray cluster, models from a real
MLflow (sqlite) registry, the online table written by Spark, the audit log on disk.

One app serves the whole module: champion (XGBoost) and challenger (logistic baseline)
trained on the tiny snapshot and registered under their aliases."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from engine.config.project import ProjectConfig
from engine.workspace import Workspace

pytestmark = [pytest.mark.ray, pytest.mark.spark, pytest.mark.serve]
TOKEN = "test-admin-token-" + "x" * 16


@dataclass
class Served:
    cfg: ProjectConfig
    ws: Workspace
    url: str
    features: list[str]
    champion: Any  # XGBScorer
    challenger: Any  # LogRegScorer
    versions: tuple[str, str, str]  # champion (XGBoost), challenger (logistic), random forest
    entities: list[str]
    table: Any  # OnlineTable
    rows: list[dict[str, float | None]]
    tokens: dict[str, str]  # holder -> token (engine.governance.roles)


def _register(
    cfg: ProjectConfig, ws: Workspace, snap: Any
) -> tuple[Any, Any, tuple[str, str, str], list[str], Any]:
    import mlflow

    from engine.registry.models import register_model
    from engine.tracking import setup_mlflow
    from engine.train.dataset import load_training_set
    from engine.train.families import logreg, random_forest, xgboost

    exp = setup_mlflow(ws, cfg.name)
    ts = load_training_set(cfg, snap)
    x, y = ts.xy("train")  # numbers and categoricals (region, plan)
    assert ts.schema.categorical == ["region", "plan"]
    kw: dict[str, Any] = {"seed": 0, "nthread": 1, "schema": ts.schema}
    scorers = (
        xgboost.fit({"max_depth": 3, "eta": 0.3}, x, y, rounds=20, **kw),
        logreg.fit({"C": 1.0}, x, y, rounds=1, **kw),
        random_forest.fit({"n_estimators": 30, "max_depth": 5}, x, y, rounds=1, **kw),
    )
    refs = []
    from engine.monitor.profile import log_profile, profile_for

    for scorer, alias in zip(scorers, ("champion", "challenger", "forest"), strict=True):
        with mlflow.start_run(experiment_id=exp):
            refs.append(
                register_model(
                    model_name=cfg.train.model_name,
                    scorer=scorer,
                    x_example=x.head(20),
                    tags={"snapshot_id": snap.id},
                    alias=alias,
                )
            )
            log_profile(profile_for(cfg, ts, scorer), refs[-1].run_id)  # what the monitor reads
    from engine.registry.models import load_scorer

    return (
        load_scorer(refs[0]),
        load_scorer(refs[1]),
        (refs[0].version, refs[1].version, refs[2].version),
        list(x.columns),
        ts,
    )


@pytest.fixture(scope="module")
def served(
    example_cfg: ProjectConfig,
    tiny_ws: Workspace,
    tiny_snapshot: Any,
    spark: Any,
    ray_local: Workspace,
) -> Iterator[Served]:
    from engine.features.online import OnlineTable, materialize
    from serve.deploy import serve_down, serve_up

    ws = Workspace(ray_local.root.parent / "serve-ws").ensure()
    shutil.copytree(tiny_ws.features, ws.features, dirs_exist_ok=True)
    shutil.copytree(tiny_ws.data, ws.data, dirs_exist_ok=True)
    serve_cfg = example_cfg.serve.model_copy(
        update={
            "autoscaling": example_cfg.serve.autoscaling.model_copy(
                update={
                    "min_replicas": 1,
                    "max_replicas": 2,
                    "target_ongoing_requests": 2,
                    "upscale_delay_s": 1,
                    "downscale_delay_s": 3,
                }
            ),
            "max_rows_per_request": 200,
        }
    )
    cfg = example_cfg.model_copy(update={"workspace": str(ws.root), "serve": serve_cfg})
    champ, chall, versions, features, ts = _register(cfg, ws, tiny_snapshot)
    materialize(cfg, ws, spark, tiny_snapshot.id)  # type: ignore[arg-type]
    table = OnlineTable.current(ws, cfg.name)
    os.environ[cfg.serve.admin_token_env] = TOKEN
    from engine.governance.roles import add_token

    tokens = {n: add_token(ws.root, n, r) for n, r in (("vera", "viewer"), ("otto", "operator"))}
    ep = serve_up(cfg, ws)
    from serve.inputs import request_rows

    rows = request_rows(ts.test[features].head(50))
    try:
        yield Served(
            cfg,
            ws,
            ep.url,
            features,
            champ,
            chall,
            versions,
            [str(i) for i in table.frame.index[:300]],
            table,
            rows,
            tokens,
        )
    finally:
        serve_down()
        os.environ.pop(cfg.serve.admin_token_env, None)


def _admin(
    s: Served,
    path: str,
    body: dict[str, Any] | None = None,
    token: str | None = TOKEN,
    timeout: float = 60,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(
        "POST" if body is not None else "GET",
        s.url + path,
        json=body,
        headers=headers,
        timeout=timeout,
    )


def _matrix(rows: list[dict[str, Any]], features: list[str]) -> pd.DataFrame:
    """Request rows as a frame of model inputs (what the replica builds from them)."""
    return pd.DataFrame(rows, columns=features)


def test_predict_rows_scores_are_probabilities_from_the_champion(served: Served) -> None:
    s = served
    r = httpx.post(f"{s.url}/predict", json={"rows": s.rows}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    expect = s.champion.proba(_matrix(s.rows, s.features))
    got = np.array([p["score"] for p in body["predictions"]])
    np.testing.assert_allclose(got, expect, rtol=1e-6)
    assert not np.all(np.isin(got, [0.0, 1.0])), "probabilities, not class labels"
    thr = s.cfg.serve.threshold
    assert [p["decision"] for p in body["predictions"]] == [bool(v >= thr) for v in got]
    assert {p["version"] for p in body["predictions"]} == {s.versions[0]}


def test_predict_entities_uses_the_online_table(served: Served) -> None:
    s = served
    ids = s.entities[:20]
    r = httpx.post(f"{s.url}/predict", json={"entities": ids}, timeout=30)
    assert r.status_code == 200, r.text
    x, missing = s.table.lookup([int(i) for i in ids], s.features)
    assert not missing
    got = np.array([p["score"] for p in r.json()["predictions"]])
    np.testing.assert_allclose(got, s.champion.proba(x), rtol=1e-6)


def test_explain_is_additive_and_equals_xgboost_contributions(served: Served) -> None:
    from engine.train.families.xgboost import dmatrix

    s = served
    r = httpx.post(f"{s.url}/explain", json={"rows": s.rows[:10]}, timeout=60)
    assert r.status_code == 200, r.text
    ex = r.json()["explanations"]
    x = _matrix(s.rows[:10], s.features)
    contribs = s.champion.booster.predict(dmatrix(x, s.champion.schema), pred_contribs=True)
    for e, c in zip(ex, contribs, strict=True):
        assert e["output"] == "log_odds"
        logit = math.log(e["score"] / (1 - e["score"]))
        assert e["base_value"] + sum(e["shap"].values()) == pytest.approx(logit, abs=1e-4)
        np.testing.assert_allclose([e["shap"][f] for f in s.features], c[:-1], atol=1e-4)


def test_a_random_forest_is_served_and_explained_in_probability(served: Served) -> None:
    """The third family, live: deployed as the challenger for every row, it answers
    /predict and /explain, with SHAP values that add up to the score itself."""
    from engine.registry.models import get_version, load_scorer

    s = served
    forest = load_scorer(get_version(s.cfg.train.model_name, s.versions[2]))
    r = _admin(s, "/admin/traffic", {"challenger": s.versions[2], "challenger_percent": 100})
    assert r.status_code == 200, r.text
    try:
        body = {"rows": s.rows[:8], "ids": [f"c{i}" for i in range(8)]}
        p = httpx.post(f"{s.url}/predict", json=body, timeout=30).json()["predictions"]
        assert {x["version"] for x in p} == {s.versions[2]}
        np.testing.assert_allclose(
            [x["score"] for x in p], forest.proba(_matrix(s.rows[:8], s.features)), rtol=1e-9
        )
        ex = httpx.post(f"{s.url}/explain", json=body, timeout=60).json()["explanations"]
        for e in ex:
            assert e["version"] == s.versions[2] and e["output"] == "probability"
            assert e["base_value"] + sum(e["shap"].values()) == pytest.approx(e["score"], abs=1e-6)
    finally:
        back = {"challenger": s.versions[1], "challenger_percent": 0}
        assert _admin(s, "/admin/traffic", back).status_code == 200


def test_models_docs_and_health(served: Served) -> None:
    s = served
    m = httpx.get(f"{s.url}/models", timeout=10).json()
    assert [(d["role"], d["version"]) for d in m["models"]] == [
        ("champion", s.versions[0]),
        ("challenger", s.versions[1]),
    ]
    assert m["models"][0]["features"] == s.features
    assert httpx.get(f"{s.url}/docs", timeout=10).status_code == 200
    spec = httpx.get(f"{s.url}/openapi.json", timeout=10).json()
    assert {"/predict", "/explain", "/models", "/healthz"} <= set(spec["paths"])
    assert httpx.get(f"{s.url}/healthz", timeout=10).json()["status"] == "ok"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ("missing", 422, ["missing field", "send null"]),
        ("unknown", 422, ["unknown field", "bogus"]),
        ({"rows": [{"x": "1.5"}]}, 422, ["rows", "x"]),
        ({"rows": [{"x": True}]}, 422, ["rows", "x"]),
        ({"rows": []}, 422, ["rows"]),
        ({"entities": ["no-such-customer"]}, 404, ["entities[0]", "no-such-customer"]),
        ({"rows": [{}], "entities": ["a"]}, 422, ["exactly one"]),
        ({"rows": [{}], "extra": 1}, 422, ["extra"]),
        ("too_many", 413, ["201 rows", "limit is 200"]),
        ("nonfinite", 422, ["not a finite number"]),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field(
    served: Served, body: Any, status: int, words: list[str]
) -> None:
    s = served
    row = dict(s.rows[0])
    if body == "missing":
        row.pop(s.features[0])
        body = {"rows": [row]}
    elif body == "unknown":
        body = {"rows": [{**row, "bogus": 1.0}]}
    elif body == "too_many":
        body = {"rows": [row] * 201}
    elif body == "nonfinite":
        r = httpx.post(
            f"{s.url}/predict",
            content=json.dumps({"rows": [{**row, s.features[0]: 12345.5}]})
            .replace("12345.5", "1e999")
            .encode(),
            headers={"content-type": "application/json"},
            timeout=10,
        )
        body = None
    if body is not None:
        r = httpx.post(f"{s.url}/predict", json=body, timeout=10)
    assert r.status_code == status, r.text
    text = r.text
    for w in words:
        assert w in text, (w, text)


def test_categorical_fields_take_text_and_unseen_values_are_counted(served: Served) -> None:
    from engine.audit import read_records

    s = served
    row = dict(s.rows[0])
    bad = httpx.post(f"{s.url}/predict", json={"rows": [{**row, "plan": 3}]}, timeout=10)
    assert bad.status_code == 422 and "rows[0].plan" in bad.text and "categorical" in bad.text
    bad = httpx.post(f"{s.url}/predict", json={"rows": [{**row, "age": "thirty"}]}, timeout=10)
    assert bad.status_code == 422 and "rows[0].age" in bad.text and "is text" in bad.text
    # A number as text (a CSV row's cell) is that number.
    same = [{**row, "age": 30}, {**row, "age": " 30 "}]
    r = httpx.post(f"{s.url}/predict", json={"rows": same}, timeout=10)
    p = [x["score"] for x in r.json()["predictions"]]
    assert r.status_code == 200 and p[0] == p[1], r.text
    rows = [{**row, "plan": "platinum"}, {**row, "plan": None}]
    r = httpx.post(
        f"{s.url}/predict", json={"rows": rows}, headers={"x-request-id": "unseen-1"}, timeout=30
    )
    assert r.status_code == 200, r.text
    p = [x["score"] for x in r.json()["predictions"]]
    assert p[0] == pytest.approx(p[1], abs=1e-12), "an unseen category is scored as missing"
    rec = [x for x in read_records(s.ws.audit) if x["request_id"] == "unseen-1"]
    assert rec[0]["unseen_categories"] == {"plan": 1}
    names = rec[0]["input_features"]  # the layout's order: numeric, then categorical
    assert sorted(names) == sorted(s.features)
    assert rec[0]["inputs"][0][names.index("plan")] == "platinum", "inputs kept as sent"
    m = httpx.get(f"{s.url}/models", timeout=10).json()["models"][0]
    assert set(m["categorical"]) == {"region", "plan"} and "premium" in m["categorical"]["plan"]


def test_admin_routes_need_the_token(served: Served) -> None:
    s = served
    assert _admin(s, "/admin/status", token=None).status_code == 401
    r = _admin(s, "/admin/traffic", {"challenger_percent": 50}, token="wrong")
    assert r.status_code == 401 and "Bearer" in r.headers.get("www-authenticate", "")
    assert _admin(s, "/admin/status").status_code == 200
    bad = _admin(s, "/admin/traffic", {"challenger_percent": 150})
    assert bad.status_code == 422 and "challenger_percent" in bad.text


class Load:
    """Bounded load on 127.0.0.1 from a few threads: counts answers by status."""

    def __init__(
        self,
        url: str,
        bodies: list[dict[str, Any]],
        threads: int = 4,
        max_s: float = 120,
        retries: int = 0,
    ) -> None:
        self.url, self.bodies, self.max_s, self.retries = url, bodies, max_s, retries
        self.ok = 0
        self.failed = 0
        self.retried = 0
        self.by_entity: dict[str, set[str]] = {}
        # One request id per logical request, the same on every retry (an idempotency key):
        # a replica killed after it logged a decision but before its answer arrived leaves a
        # record of a request the client then retries.
        self.prefix = f"load-{uuid.uuid4().hex[:8]}-"
        self.answered: set[str] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def _run(self, k: int) -> None:
        t_end = time.monotonic() + self.max_s
        i = k
        with httpx.Client(timeout=30) as c:
            while not self.stop.is_set() and time.monotonic() < t_end:
                body = self.bodies[i % len(self.bodies)]
                rid = f"{self.prefix}{k}-{i}"
                i += len(self.threads)
                for attempt in range(self.retries + 1):
                    try:
                        r = c.post(f"{self.url}/predict", json=body, headers={"x-request-id": rid})
                        if r.status_code == 200:
                            with self.lock:
                                self.ok += 1
                                self.answered.add(rid)
                                for e, p in zip(
                                    body.get("entities", []), r.json()["predictions"], strict=False
                                ):
                                    self.by_entity.setdefault(e, set()).add(p["version"])
                            break
                        err: int | str = r.status_code
                    except httpx.HTTPError as exc:
                        err = type(exc).__name__
                    if attempt < self.retries and (isinstance(err, str) or err >= 500):
                        with self.lock:
                            self.retried += 1
                        time.sleep(0.2)
                        continue
                    with self.lock:
                        self.failed += 1
                    break

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def _audit_decisions(s: Served) -> int:
    from engine.audit import read_records

    return sum(1 for r in read_records(s.ws.audit) if r["route"] == "predict")


def test_split_change_under_load_is_sticky_and_loses_nothing(served: Served) -> None:
    s = served
    before = _audit_decisions(s)
    bodies = [{"entities": [e]} for e in s.entities[:200]]
    try:
        _split_change_checks(s, bodies, before)
    finally:  # the next test starts from the champion alone, whatever happened here
        assert _admin(s, "/admin/traffic", {"challenger_percent": 0}).status_code == 200


def _split_change_checks(s: Served, bodies: list[dict[str, Any]], before: int) -> None:
    with Load(s.url, bodies, threads=4, max_s=60) as load:
        time.sleep(3)
        r = _admin(s, "/admin/traffic", {"challenger_percent": 50})
        assert r.status_code == 200, r.text
        assert r.json()["pending"] == []
        switched = load.ok
        time.sleep(4)
    assert load.failed == 0
    assert load.ok > switched > 0
    # After the switch every entity sticks to one model; about half see the challenger.
    from serve.split import bucket

    with httpx.Client(timeout=30) as c:
        first = c.post(f"{s.url}/predict", json={"entities": s.entities[:200]}).json()[
            "predictions"
        ]
        again = c.post(f"{s.url}/predict", json={"entities": s.entities[:200]}).json()[
            "predictions"
        ]
    assert [p["version"] for p in first] == [p["version"] for p in again]
    expect = [
        s.versions[1] if bucket(e, s.cfg.train.model_name) < 50 else s.versions[0]
        for e in s.entities[:200]
    ]
    assert [p["version"] for p in first] == expect
    share = sum(v == s.versions[1] for v in expect) / len(expect)
    assert 0.35 < share < 0.65
    # Records == successful requests (+ the two requests above).
    assert _audit_decisions(s) - before == load.ok + 2


def test_shadow_mode_challenger_scores_champion_answers(served: Served) -> None:
    from engine.audit import read_records

    s = served
    assert _admin(s, "/admin/traffic", {"shadow": True, "challenger_percent": 0}).status_code == 200
    try:
        _shadow_checks(s, read_records)
    finally:
        assert _admin(s, "/admin/traffic", {"shadow": False}).status_code == 200


def _shadow_checks(s: Served, read_records: Any) -> None:
    r = httpx.post(
        f"{s.url}/predict",
        json={"rows": s.rows[:5]},
        headers={"x-request-id": "shadow-1"},
        timeout=30,
    )
    assert {p["version"] for p in r.json()["predictions"]} == {s.versions[0]}
    rec = [x for x in read_records(s.ws.audit) if x["request_id"] == "shadow-1"]
    assert len(rec) == 1 and rec[0]["shadow"]["version"] == s.versions[1]
    np.testing.assert_allclose(
        rec[0]["shadow"]["scores"], s.challenger.proba(_matrix(s.rows[:5], s.features)), rtol=1e-6
    )


def _replica_states() -> dict[str, int]:
    from ray import serve

    app = serve.status().applications["insight"]
    dep = app.deployments["model"]
    return {str(getattr(k, "value", k)): int(v) for k, v in dep.replica_states.items()}


def _replicas_running() -> int:
    return _replica_states().get("RUNNING", 0)


def _wait_replicas(n: int, timeout_s: float = 90) -> int:
    t_end = time.monotonic() + timeout_s
    while (k := _replicas_running()) != n and time.monotonic() < t_end:
        time.sleep(1)
    return k


def test_autoscaling_up_under_load_then_down(served: Served) -> None:
    s = served
    # Its own starting state: an earlier test's load may have scaled the app up.
    assert _wait_replicas(1) == 1, "the app did not settle at one replica before the test"
    bodies = [{"rows": s.rows[:50]}]
    decided = running = False
    # Two waits, each bounded: the autoscaler's decision (a second replica asked for: it
    # shows as STARTING or RUNNING), then that replica's start, which on a loaded 2-core
    # machine (a fresh process importing the model's libraries) once took longer than the
    # decision itself. The load lasts until the second replica runs, so the autoscaler
    # never sees the load end before the replica it asked for is up.
    with Load(s.url, bodies, threads=8, max_s=240) as load:
        t_decide = time.monotonic() + 90
        t_run = time.monotonic() + 210
        while time.monotonic() < t_run:
            st = _replica_states()
            decided = decided or st.get("STARTING", 0) + st.get("RUNNING", 0) >= 2
            if st.get("RUNNING", 0) >= 2:
                running = True
                break
            if not decided and time.monotonic() > t_decide:
                break
            time.sleep(0.5)
    assert decided, f"no second replica asked for within 90 s of load: {_replica_states()}"
    assert running, f"the second replica did not start within 210 s: {_replica_states()}"
    assert load.failed == 0
    assert _wait_replicas(1) == 1, "no scale-down within 90 s after the load ended"


def test_killed_replica_is_replaced_and_answered_records_survive(served: Served) -> None:
    from engine.audit import verify

    s = served
    before = _audit_decisions(s)
    reps = _admin(s, "/admin/status").json()["replicas"]
    pid = int(next(iter(reps.values()))["pid"])
    bodies = [{"entities": [e]} for e in s.entities[:100]]
    with Load(s.url, bodies, threads=3, max_s=120, retries=20) as load:
        time.sleep(2)
        os.kill(pid, signal.SIGKILL)  # a replica this test's cluster started
        t_end = time.monotonic() + 100
        while time.monotonic() < t_end:
            time.sleep(1)
            try:  # a status call routed to the killed replica before Serve notices: ask again
                live = _admin(s, "/admin/status", timeout=10).json()["replicas"]
            except httpx.TransportError:
                continue
            if (
                live
                and all(int(v["pid"]) != pid for v in live.values())
                and _replicas_running() >= 1
            ):
                break
        time.sleep(2)
    print(f"kill: {load.ok} answered, {load.failed} failed after retries, {load.retried} retried")
    assert load.failed == 0
    from engine.audit import read_records

    ids = [
        r["request_id"]
        for r in read_records(s.ws.audit)
        if r["route"] == "predict" and str(r.get("request_id", "")).startswith(load.prefix)
    ]
    assert _audit_decisions(s) - before == len(ids), "only this load's requests were logged"
    assert set(ids) == load.answered, "every answered request is in the log, nothing invented"
    # At least once: a decision logged by the killed replica whose answer never arrived is
    # logged again by the retry, under the same request id. Never more than the retries.
    assert len(ids) - len(set(ids)) <= load.retried
    assert verify(s.ws.audit).ok


def test_fuzz_openapi_finds_no_5xx(served: Served) -> None:
    """schemathesis generates bodies from the OpenAPI spec (valid and invalid); bounded to
    40 examples per operation. Every answer must be below 500."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    s = served
    schema = schemathesis.openapi.from_url(f"{s.url}/openapi.json")
    failures: list[str] = []
    calls: list[int] = []

    def fuzz(op: str, operation: Any) -> None:
        @settings(
            max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            resp = case.call(base_url=s.url, timeout=30)
            calls.append(resp.status_code)
            if resp.status_code >= 500:
                failures.append(f"{op} {resp.status_code}: {resp.text[:200]} <- {case.body!r}")

        run()

    for op in ("/predict", "/explain", "/admin/traffic", "/models", "/healthz"):
        for method in ("POST", "GET"):
            try:
                operation = schema[op][method]
            except (KeyError, LookupError):
                continue
            fuzz(op, operation)
    assert len(calls) >= 100
    assert failures == []


def test_generated_config_deploys_with_serve_run(served: Served, tmp_path: Path) -> None:
    """`insight serve config` writes a Serve config; Ray's own `serve run` deploys it onto the
    running cluster next to the app (another name and route), and it answers over HTTP."""
    import subprocess
    import sys

    import ray
    import yaml
    from ray import serve

    from serve.deploy import deploy_config

    s = served
    port = int(s.url.rsplit(":", 1)[1].split("/")[0])
    doc = deploy_config(s.cfg, s.ws, port=port)
    app = doc["applications"][0]
    app.update(name="from-config", route_prefix="/from-config")
    app["args"].update(app="from-config", audit_dir=str(s.ws.audit / "from-config"))
    app["args"]["rollout_path"] = str(s.ws.root / "serve" / "rollout-from-config.json")
    path = tmp_path / "serve-config.yaml"
    path.write_text(yaml.safe_dump(doc))
    address = ray.get_runtime_context().gcs_address
    cli = Path(sys.executable).parent / "serve"
    r = subprocess.run(
        [str(cli), "run", str(path), "--address", address, "--non-blocking"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    try:
        url = f"http://127.0.0.1:{port}/from-config"
        t_end = time.monotonic() + 120
        while time.monotonic() < t_end:
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        p = httpx.post(f"{url}/predict", json={"rows": s.rows[:3]}, timeout=30)
        assert p.status_code == 200, p.text
        got = [x["score"] for x in p.json()["predictions"]]
        np.testing.assert_allclose(
            got, s.champion.proba(_matrix(s.rows[:3], s.features)), rtol=1e-6
        )
    finally:
        serve.delete("from-config")
        from serve.deploy import kill_rollout

        kill_rollout("from-config")


INSIGHT = str(Path(sys.executable).parent / "insight")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "retail" / "insight.yaml"


def _cli(
    ws: Workspace, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INSIGHT, *args, "--project", str(EXAMPLE), "--workspace", str(ws.root)],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, **(env or {})},
    )


def test_serve_up_status_traffic_promote_down(served: Served) -> None:
    s = served
    env = {"INSIGHT_ADMIN_TOKEN": TOKEN}
    up = _cli(s.ws, "serve", "up", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    state = s.ws.root / "serve" / "state.json"
    try:
        import json

        st = json.loads(state.read_text())
        url = st["url"]
        assert url.startswith("http://127.0.0.1:"), "loopback by default"
        assert "serving retail-churn@champion" in up.stdout
        r = httpx.post(f"{url}/predict", json={"rows": s.rows[:2]}, timeout=30)
        assert r.status_code == 200 and r.json()["predictions"][0]["version"] == s.versions[0]
        status = _cli(s.ws, "serve", "status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "champion" in status.stdout and "challenger" in status.stdout
        assert "live replica" in status.stdout
        no_token = _cli(
            s.ws, "serve", "traffic", "--percent", "30", env={"INSIGHT_ADMIN_TOKEN": "wrong"}
        )
        assert no_token.returncode != 0 and "401" in no_token.stdout + no_token.stderr
        assert "Traceback" not in no_token.stdout + no_token.stderr
        tr = _cli(s.ws, "serve", "traffic", "--percent", "30", env=env)
        assert tr.returncode == 0 and "30%" in tr.stdout, tr.stdout + tr.stderr
        pr = _cli(s.ws, "serve", "promote", env=env)
        assert pr.returncode == 0 and f"v{s.versions[1]} is champion" in pr.stdout, (
            pr.stdout + pr.stderr
        )
        r = httpx.post(f"{url}/predict", json={"rows": s.rows[:2]}, timeout=30)
        assert {p["version"] for p in r.json()["predictions"]} == {s.versions[1]}
    finally:
        down = _cli(s.ws, "serve", "down", env=env)
        # The promotion went to the registry too: put the aliases back for later tests.
        from engine.registry.models import find, promote

        if find(s.cfg.train.model_name, "champion").version != s.versions[0]:
            promote(s.cfg.train.model_name, s.versions[0], "test cleanup")
    assert down.returncode == 0 and "stopped" in down.stdout, down.stdout + down.stderr
    assert not state.exists()
    again = _cli(s.ws, "serve", "status", env=env)
    assert again.returncode == 1 and "not up" in again.stdout


# ---- the monitoring loop on this app's live traffic -------------------------------------


def _send_rows(s: Served, rows: pd.DataFrame, batch: int = 50) -> list[dict[str, Any]]:
    from serve.inputs import request_rows

    out = []
    with httpx.Client(timeout=60) as c:
        for i in range(0, len(rows), batch):
            part = rows.iloc[i : i + batch]
            body = {
                "rows": request_rows(part[s.features]),
                "ids": [str(v) for v in part["customer_id"]],
            }
            r = c.post(f"{s.url}/predict", json=body)
            assert r.status_code == 200, r.text
            out += r.json()["predictions"]
    return out


def _test_rows(s: Served) -> pd.DataFrame:
    from engine.features.snapshot import find
    from engine.train.dataset import load_training_set

    ts = load_training_set(s.cfg, find(s.ws, s.cfg.name))
    return pd.concat([ts.valid, ts.test]).sample(frac=1.0, random_state=0)


def test_monitor_measures_each_version_of_live_traffic(served: Served) -> None:
    from engine.stages.monitor import stage_monitor

    s = served
    rows = _test_rows(s).head(400)
    assert _admin(s, "/admin/traffic", {"challenger_percent": 50}).status_code == 200
    try:
        t0 = time.time()
        preds = _send_rows(s, rows)
        t1 = time.time()
    finally:
        assert _admin(s, "/admin/traffic", {"challenger_percent": 0}).status_code == 200
    run = stage_monitor(s.cfg, s.ws, t0, t1, send=False, log=lambda m: None)
    res = run.result.dump()  # the form written to runs/<run_id>.json
    assert res["audit"]["chain_ok"] and res["traffic"]["rows"] == len(preds) == 400
    by_version = {v: sum(p["version"] == v for p in preds) for v in s.versions[:2]}
    models = res["models"]
    assert {v: models[v]["rows"] for v in by_version} == by_version, "each version's own rows"
    assert (
        models[s.versions[0]]["role"] == "champion"
        and models[s.versions[1]]["role"] == "challenger"
    )
    for v in s.versions[:2]:
        m = models[v]
        assert m["profile"], "the reference profile logged with the model"
        decided = [p["decision"] for p in preds if p["version"] == v]
        assert m["score"]["decision_rate"]["estimate"] == pytest.approx(np.mean(decided))
        assert set(m["features"]) == set(s.features)
        assert m["features"]["plan"]["kind"] == "categorical" and "js" in m["features"]["plan"]
        assert m["latency"]["p95_ms"]["estimate"] > 0
        assert "gender" in m["fairness"], "groups come from the online table by entity id"
    covered = sum(c["requests"] for c in res["audit"]["covered"])
    assert covered == res["traffic"]["requests"] and all(
        len(c["last_hash"]) == 64 for c in res["audit"]["covered"]
    )
    assert run.path.is_file() and json.loads(run.path.read_text())["run_id"] == res["run_id"]


def test_rollout_promotes_a_good_challenger_and_rolls_back_a_bad_one(served: Served) -> None:
    """The staggered rollout with its guards, on this app: a challenger as good as the
    champion goes 20% -> 100% and is promoted; one fitted on shuffled labels is rolled back
    at its first step, on lift measured from the labels that arrive meanwhile."""
    import mlflow

    from engine.monitor.labels import ingest
    from engine.registry.models import find, promote, register_model
    from engine.stages.rollout import rollout
    from engine.train.families import logreg

    s = served
    cfg = s.cfg.model_copy(
        update={
            "monitor": s.cfg.monitor.model_copy(
                update={
                    "rollout": s.cfg.monitor.rollout.model_copy(
                        update={"steps": [20.0, 100.0], "min_rows": 60, "max_wait": "3m"}
                    )
                }
            )
        }
    )
    name = cfg.train.model_name
    pool = _test_rows(s)
    cursor = {"i": 0}
    label_dir = s.ws.root / "tmp-labels"
    label_dir.mkdir(exist_ok=True)

    def traffic(pct: float) -> None:
        part = pool.iloc[cursor["i"] % (len(pool) - 300) :].head(300)
        cursor["i"] += 300
        _send_rows(s, part)
        f = label_dir / f"l{cursor['i']}.csv"  # their outcomes arrive right after
        pd.DataFrame(
            {
                "customer_id": part["customer_id"].astype(str),
                "churned": part["churned"].astype(int),
                "label_time": pd.Timestamp.now(tz="UTC").isoformat(),
            }
        ).drop_duplicates("customer_id").to_csv(f, index=False)
        ingest(cfg, s.ws, f)

    from engine.features.snapshot import find as find_snap
    from engine.monitor.profile import log_profile, profile_for
    from engine.train.dataset import load_training_set

    ts = load_training_set(cfg, find_snap(s.ws, cfg.name))
    x, y = ts.xy("train")
    exp = mlflow.get_experiment_by_name(cfg.name)

    def register(scorer: Any) -> str:
        with mlflow.start_run(experiment_id=exp.experiment_id):
            ref = register_model(
                model_name=name, scorer=scorer, x_example=x.head(5), tags={}, alias="challenger"
            )
            log_profile(profile_for(cfg, ts, scorer), ref.run_id)
        return ref.version

    bad = register(
        logreg.fit(
            {"C": 1.0},
            x,
            np.random.default_rng(1).permutation(y),
            seed=0,
            nthread=1,
            rounds=1,
            schema=ts.schema,
        )
    )
    champion = find(name, "champion").version
    try:
        out = rollout(
            cfg, s.ws, bad, champion, url=s.url, token=TOKEN, traffic=traffic, log=lambda m: None
        )
        assert out["result"] == "rolled back" and len(out["steps"]) == 1
        assert any("lift" in b for b in out["steps"][0]["breaches"]), out["steps"][0]
        m = httpx.get(f"{s.url}/models", timeout=10).json()
        assert m["challenger_percent"] == 0 and find(name, "champion").version == champion
        good = register(s.champion)
        out = rollout(
            cfg, s.ws, good, champion, url=s.url, token=TOKEN, traffic=traffic, log=lambda m: None
        )
        assert out["result"] == "promoted", out
        assert [st["percent"] for st in out["steps"]] == [20.0, 100.0] and all(
            not st["breaches"] for st in out["steps"]
        )
        assert find(name, "champion").version == good
        assert httpx.get(f"{s.url}/models", timeout=10).json()["models"][0]["version"] == good
    finally:
        if find(name, "champion").version != champion:
            promote(name, champion, "test cleanup")
        _admin(s, "/admin/traffic", {"challenger": s.versions[1], "challenger_percent": 0})


def test_no_decision_without_consent_and_a_withdrawal_reaches_every_replica(
    served: Served,
) -> None:
    """A second app on the same Serve instance whose policy asks for consent to
    'profiling' (two replicas): a subject without consent gets no automated decision (the
    row answered with why, not scored, audited as withheld); a withdrawal written to the
    workspace's consent log by another process takes effect on the next request of each
    replica; an explanation for such a subject is refused and audited; the chain verifies."""
    import datetime as dt
    import subprocess
    import sys

    from ray import serve

    from engine.audit import verify
    from engine.audit.verify import _records_of, segments
    from engine.config.project import AutoscalingConfig
    from engine.governance.live import record_consent
    from serve.app import build_app
    from serve.deploy import kill_rollout, settings_for, wait_healthy

    s = served
    a, b, c = s.entities[10:13]
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    for e in (a, b):
        record_consent(s.ws.root, e, "profiling", True, actor="test", at=past)
    settings = settings_for(
        s.cfg,
        s.ws,
        app="consent",
        consent={"purposes": ["profiling"], "policy_version": "test"},
        autoscaling=AutoscalingConfig(min_replicas=2, max_replicas=2),
    )
    Path(settings.rollout_path).unlink(missing_ok=True)
    serve.run(build_app(settings), name="consent", route_prefix="/consent", blocking=False)
    url = s.url.rstrip("/") + "/consent"
    try:
        wait_healthy(url)
        r = httpx.post(f"{url}/predict", json={"entities": [a, c, b]}, timeout=30)
        assert r.status_code == 200, r.text
        p = r.json()["predictions"]
        assert [x["id"] for x in p] == [a, c, b]
        assert isinstance(p[0]["score"], float) and isinstance(p[2]["score"], float)
        assert p[1] == {
            "score": None,
            "decision": None,
            "version": None,
            "id": c,
            "withheld": "no consent on record for 'profiling'",
        }
        code = (
            "import sys; from pathlib import Path; from engine.governance.live import "
            "record_consent; record_consent(Path(sys.argv[1]), sys.argv[2], 'profiling', "
            "False, actor='dpo')"
        )
        subprocess.run([sys.executable, "-c", code, str(s.ws.root), b], check=True)
        root = s.ws.audit / "consent"
        answered: list[dict[str, Any]] = []
        for _ in range(200):  # until each replica has answered after the withdrawal
            r = httpx.post(f"{url}/predict", json={"entities": [b]}, timeout=30)
            answered.append(r.json()["predictions"][0])
            writers = {
                seg.name.rsplit("-", 2)[1]  # the writing process
                for seg in segments(root)
                if any(x.get("kind") == "withheld" and b in x["ids"] for x in _records_of(seg))
            }
            if len(writers) == 2:
                break
        assert len(writers) == 2, "both replicas answered after the withdrawal"
        assert {x["withheld"] for x in answered} == {"consent withdrawn for 'profiling'"}
        assert all(x["score"] is None for x in answered)
        r = httpx.post(f"{url}/explain", json={"entities": [c]}, timeout=30)
        assert r.status_code == 422 and "no explanation" in r.text, r.text
        r = httpx.post(f"{url}/predict", json={"rows": s.rows[:1]}, timeout=30)
        assert r.status_code == 422 and "give each row its id" in r.text, r.text
    finally:
        serve.delete("consent")
        kill_rollout("consent")
    res = verify(root)
    assert res.ok, res.problems
    recs = [x for seg in segments(root) for x in _records_of(seg)]
    withheld = [x for x in recs if x.get("kind") == "withheld"]
    assert sum(x["ids"].count(b) for x in withheld) == len(answered)
    assert sum(x["ids"].count(c) for x in withheld) == 2  # the predict and the explain
    assert all(x["policy_version"] == "test" for x in withheld)
    decided = [i for x in recs if x.get("kind") == "decision" for i in x.get("ids") or []]
    assert c not in decided and decided.count(b) == 1  # before the withdrawal only


def test_admin_roles_name_the_actor_and_never_log_the_token(served: Served) -> None:
    """A viewer reads the status but may not change traffic (403 naming the role needed);
    an operator may; the change is an audit record naming the operator, and no token
    appears in the audit log."""
    from engine.audit.verify import _records_of, segments

    s = served
    viewer, operator = s.tokens["vera"], s.tokens["otto"]
    assert _admin(s, "/admin/status", token=viewer).status_code == 200
    r = _admin(s, "/admin/traffic", {"challenger_percent": 0}, token=viewer)
    assert r.status_code == 403 and "'vera' holds the role viewer" in r.text, r.text
    assert "needs operator" in r.text
    r = _admin(s, "/admin/traffic", {"challenger_percent": 0}, token=operator)
    assert r.status_code == 200, r.text
    assert _admin(s, "/admin/status", token="not-a-token").status_code == 401
    root = s.ws.audit / "insight"
    recs = [x for seg in segments(root) for x in _records_of(seg) if x.get("kind") == "admin"]
    mine = [x for x in recs if x["actor"] == "otto"]
    assert mine and mine[-1]["action"] == "traffic" and mine[-1]["role"] == "operator"
    assert mine[-1]["change"] == {"challenger_percent": 0.0}
    for seg in segments(root):
        blob = seg.read_bytes()
        assert viewer.encode() not in blob and operator.encode() not in blob
        assert TOKEN.encode() not in blob


def test_a_key_store_that_cannot_be_written_answers_503_and_logs_nothing(served: Served) -> None:
    """Another process holds the key store's lock past the wait: a request about a subject
    whose key is not cached is refused with a 503 naming the cause, and nothing of it is
    logged (no record in the clear, none at all); once the lock is gone, it is answered."""
    import sqlite3

    from engine.audit.verify import read_records
    from engine.governance.keys import store_root

    s = served
    e = s.entities[290]  # asked about by no other test: its key is in no replica's cache
    first = httpx.post(f"{s.url}/predict", json={"entities": [s.entities[291]]}, timeout=60)
    assert first.status_code == 200, first.text  # the store exists (made on first use)
    lock = sqlite3.connect(store_root(s.ws.root) / "subjects.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        r = httpx.post(
            f"{s.url}/predict", json={"entities": [e]}, headers={"x-request-id": "ks-down"},
            timeout=60,
        )  # fmt: skip
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert r.status_code == 503, r.text
    assert "not written in the clear" in r.json()["detail"]
    assert not [x for x in read_records(s.ws.audit / "insight", kind=None)
                if x.get("request_id") == "ks-down"]  # fmt: skip
    raw = b"".join(p.read_bytes() for p in (s.ws.audit / "insight").iterdir() if p.is_file())
    assert b"ks-down" not in raw
    ok = httpx.post(f"{s.url}/predict", json={"entities": [e]}, timeout=60)
    assert ok.status_code == 200, ok.text
    assert ok.json()["predictions"][0]["score"] is not None


def test_an_erased_subject_is_not_looked_up_again_by_any_replica(served: Served) -> None:
    """Runs last (it erases a customer of the module's workspace): after `erase`, the
    online table is rewritten and every replica re-reads it on its next request, so the
    subject's features are not served again (a 404 naming the unknown id); their sealed
    records no longer read back, and the log still verifies."""
    from engine.audit import verify
    from engine.audit.verify import read_records
    from engine.governance.erase import erase

    s = served
    e = s.entities[295]
    before = httpx.post(f"{s.url}/predict", json={"entities": [e]}, timeout=60)
    assert before.status_code == 200, before.text
    assert any(e in (r.get("ids") or []) for r in read_records(s.ws.audit / "insight"))
    done = erase(s.cfg, s.ws, e, "GDPR art. 17", actor="test")
    assert "online table" in {t["store"] for t in done.touched}
    for _ in range(6):  # requests land on either replica
        r = httpx.post(f"{s.url}/predict", json={"entities": [e]}, timeout=60)
        assert r.status_code == 404 and "unknown entity id" in r.text and e in r.text, r.text
    assert not any(e in (r.get("ids") or []) for r in read_records(s.ws.audit / "insight"))
    assert verify(s.ws.audit).ok
