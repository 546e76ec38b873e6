"""Model endpoint on Ray Serve with a FastAPI ingress.

Routes: ``POST /predict`` (feature rows, or entity ids looked up in the online table),
``POST /explain`` (SHAP values per feature, per row), ``GET /healthz``, ``GET /models``,
OpenAPI at ``/docs``; admin routes under ``/admin`` need ``Authorization: Bearer <token>``.

- Models come from the MLflow registry by alias (champion, and challenger if set); scores
  are probabilities (never pyfunc class labels) and the decision threshold is applied here,
  explicitly; both are in the answer and in the audit record.
- Champion and challenger are served side by side: a row goes to the challenger when the
  hash bucket of its entity id is below ``challenger_percent`` (sticky per entity); in shadow
  mode the challenger scores every row and only the audit log sees it.
- Model calls go through ``@serve.batch`` (concurrent requests on one replica share one
  model call), unless ``batching`` is off.
- Every answered request appends one hash-chained record to this replica's audit segment
  before the answer leaves (engine.audit).
"""

# No `from __future__ import annotations` here: Serve's ingress re-binds the methods and
# FastAPI must resolve the request-model annotations at import time (else `req` becomes a
# query parameter and every /predict is a 422).
import asyncio
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve import Application

from engine.errors import ServiceError
from serve.consent import live_consent, withheld_reasons
from serve.inputs import request_inputs
from serve.models import Active, Loaded, explain_rows, score_many
from serve.schemas import (
    Deployed,
    Explained,
    ExplainResponse,
    ModelsResponse,
    Prediction,
    PredictRequest,
    PredictResponse,
    TrafficChange,
)
from serve.settings import ServeSettings

log = logging.getLogger("insight.serve")
api = FastAPI(
    title="Insight Engine",
    version="0.2.0",
    description="Churn scores from the MLflow registry, served by Ray Serve. Admin routes "
    "need `Authorization: Bearer <INSIGHT_ADMIN_TOKEN>`.",
)


@api.exception_handler(ValueError)
async def _value_error(_: Request, exc: ValueError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


@api.exception_handler(ServiceError)
async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
    # the server's side (the key store, say), not the client's: 503, the cause named
    log.error("%s", exc)
    return JSONResponse({"detail": str(exc)}, status_code=503)


_DEFAULT = ServeSettings.model_fields


# Helpers the class uses are defined above it (or imported): Serve pickles the deployment
# class by value with the module globals that exist when it is defined.
def _ordered(groups: dict[str, list[Any]] | None, names: list[str]) -> dict[str, list[Any]] | None:
    """Groups in the layout's attribute order (all attributes, None where unknown)."""
    if groups is None:
        return None
    n = len(next(iter(groups.values())))
    return {a: groups.get(a, [None] * n) for a in names}


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # RayTaskError wraps the actor's exception
    return str(cause if cause is not None else exc).strip().splitlines()[-1]


@serve.deployment(
    name="model",
    # The same defaults as ServeSettings (and the project file): build_app sets both anyway.
    max_ongoing_requests=_DEFAULT["max_ongoing_requests"].default,
    ray_actor_options={"num_cpus": _DEFAULT["num_cpus"].default},
    health_check_period_s=2,
    health_check_timeout_s=10,
    graceful_shutdown_timeout_s=5,
)
@serve.ingress(api)
class ModelServer:
    def __init__(self, settings: ServeSettings | dict[str, Any]) -> None:
        import mlflow
        import ray

        from engine.audit import AuditWriter
        from engine.registry.models import resolve, try_resolve
        from serve.split import get_or_create

        s = settings if isinstance(settings, ServeSettings) else ServeSettings.parse(settings)
        self.s = s
        mlflow.set_tracking_uri(s.tracking_uri)
        mlflow.set_registry_uri(s.tracking_uri)
        self.name = s.model
        self.threshold = s.threshold
        self.max_rows = s.max_rows
        self.fields = s.rows
        self._token = s.admin_token_sha256
        self._models: dict[str, Loaded] = {}
        self._load_lock = threading.Lock()
        try:
            ctx = serve.get_replica_context()
            self.replica = str(ctx.replica_id.unique_id)
        except Exception:  # outside Serve (unit use)
            self.replica = uuid.uuid4().hex[:8]
        champ = resolve(self.name, s.champion_alias)
        chall = try_resolve(self.name, s.challenger_alias) if s.challenger_alias else None
        if chall is not None and chall.version == champ.version:
            chall = None
        initial = {
            "champion": champ.version,
            "challenger": chall.version if chall else None,
            "challenger_percent": s.challenger_percent if chall else 0.0,
            "shadow": s.shadow if chall else False,
        }
        self.store = get_or_create(s.app, s.rollout_path, initial)
        self.active = self._activate(ray.get(self.store.get.remote(), timeout=60))
        self.online: Any = None  # engine.features.online.OnlineTable
        self._online_stamp: tuple[int, int] | None = None
        if s.online_path:
            self._fresh_online()
        self._pii_key: bytes | None = None
        if s.hash_entity_ids:
            from engine.pii import load_key

            if s.workspace is None:
                raise ValueError("hash_entity_ids needs 'workspace' (where the PII key lives)")
            self._pii_key = load_key(Path(s.workspace))
        self.audit = AuditWriter(
            Path(s.audit_dir),
            writer=f"replica-{self.replica}",
            fsync=s.audit_fsync,
            columnar=s.audit_format == "columnar",
        )
        batched: Any = self._batched
        batched.set_max_batch_size(s.max_batch_size)
        batched.set_batch_wait_timeout_s(s.batch_wait_timeout_s)
        self.consent = live_consent(s)
        self.keys = None
        if s.seal:
            from engine.governance.keys import shared, store_root

            if s.workspace is None:
                raise ValueError("seal needs 'workspace' (where the key store is)")
            self.keys = shared(store_root(Path(s.workspace)))
        self._stop = threading.Event()
        threading.Thread(target=self._poll, name="rollout-poll", daemon=True).start()

    # ---- rollout ------------------------------------------------------------------------
    def _load(self, version: str) -> Loaded:
        from engine.registry.models import get_version, load_scorer

        with self._load_lock:
            if version not in self._models:
                ref = get_version(self.name, version)
                self._models[version] = Loaded(version, ref, load_scorer(ref))
            return self._models[version]

    def _activate(self, state: dict[str, Any]) -> Active:
        champion = self._load(str(state["champion"]))
        challenger = self._load(str(state["challenger"])) if state.get("challenger") else None
        if champion.ref.features != (challenger or champion).ref.features:
            raise ValueError(
                f"champion v{champion.version} and challenger v{state['challenger']} take "
                "different features; serve them as separate apps"
            )
        return Active(dict(state), champion, challenger)

    def _poll(self) -> None:
        import ray

        from serve.split import POLL_S

        while not self._stop.wait(POLL_S):
            try:
                gen = int(self.active.state["generation"])
                st = ray.get(self.store.get.remote(self.replica, os.getpid(), gen), timeout=10)
                if int(st["generation"]) != gen:
                    self.active = self._activate(st)  # models loaded first, then one swap
                    log.warning(
                        "replica %s applied rollout generation %s", self.replica, st["generation"]
                    )
            except Exception as exc:  # keep serving the last good state
                log.warning("rollout poll failed: %s", exc)

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
        audit = getattr(self, "audit", None)
        if audit is not None:
            audit.close()

    # ---- inputs -------------------------------------------------------------------------
    # ---- scoring ------------------------------------------------------------------------
    def _route(self, act: Active, ids: list[str] | None, n: int, request_id: str) -> np.ndarray:
        """True where the challenger answers the row."""
        pct = float(act.state.get("challenger_percent") or 0.0)
        if act.challenger is None or pct <= 0.0 or act.state.get("shadow"):
            return np.zeros(n, dtype=bool)
        from serve.split import bucket

        keys = ids if ids is not None else [f"{request_id}:{i}" for i in range(n)]
        return np.array([bucket(k, self.name) < pct for k in keys], dtype=bool)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _batched(self, items: list[tuple[Loaded, pd.DataFrame]]) -> list[np.ndarray]:
        return score_many(items)

    async def _score(
        self, m: Loaded, x: pd.DataFrame, unseen: dict[str, int] | None = None
    ) -> np.ndarray:
        """Scores of ``m`` on rows ``x``; categories ``m`` never saw are scored as missing
        and counted into ``unseen`` (None: do not count, e.g. shadow scoring)."""
        if len(x) == 0:
            return np.empty(0)
        xm, new = m.scorer.schema.frame_and_unseen(x)
        if unseen is not None:
            for k, v in new.items():
                unseen[k] = unseen.get(k, 0) + v
        if self.s.batching:
            return await self._batched((m, xm))
        return score_many([(m, xm)])[0]

    def _audit_ids(self, ids: list[str] | None) -> list[str] | None:
        if ids is None or self._pii_key is None:
            return ids
        from engine.pii import hmac_hex

        return [hmac_hex(self._pii_key, i) for i in ids]

    def _fresh_online(self) -> None:
        """The online table, re-read when its file changed (an erasure rewrites it): one
        ``stat`` per request; a subject erased is not looked up again by any replica."""
        from engine.features.online import OnlineTable

        path = Path(str(self.s.online_path))
        try:
            st = (path / "table.parquet").stat()
        except OSError:
            return  # gone: keep what is loaded (a new table comes with a redeploy)
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._online_stamp:
            self.online = OnlineTable.load(path)
            self._online_stamp = stamp

    async def _append(self, recs: list[dict[str, Any]]) -> None:
        """Append to this replica's segment, each subject's part sealed under their key
        (engine.governance.seal). A key store that cannot be reached is a 503: the answer
        is not given, and nothing personal is written in the clear."""
        if self.keys is not None:
            from engine.governance.seal import seal_record

            ids = [str(i) for r in recs for i in (r.get("ids") or [])]
            if self.keys.all_cached(ids):
                recs = [seal_record(r, self.keys) for r in recs]
            else:  # a new subject: its key is written to the store, off the event loop
                keys = self.keys
                recs = await asyncio.to_thread(lambda: [seal_record(r, keys) for r in recs])
        await self.audit.append_async(recs)

    def _request_id(self, request: Request) -> str:
        rid = request.headers.get("x-request-id", "")
        return rid[:100] if rid else uuid.uuid4().hex

    def _record(
        self,
        route: str,
        rid: str,
        act: Active,
        versions: list[str],
        ids: list[str] | None,
        x: pd.DataFrame,
        scores: list[float],
        t0: float,
        shadow: dict[str, Any] | None = None,
        unseen: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        from engine.audit import audit_inputs, decision_record
        from serve.inputs import sensitive_groups

        schema = act.champion.scorer.schema
        num, cat = schema.numeric_names, schema.categorical
        return decision_record(
            route=route,
            request_id=rid,
            model=self.name,
            versions=versions,
            generation=int(act.state["generation"]),
            ids=self._audit_ids(ids),
            layout=self.audit.register_layout(num, cat, list(self.s.sensitive)),
            inputs=audit_inputs(x, self.s.audit_inputs, num, cat),
            input_policy=self.s.audit_inputs,
            groups=_ordered(sensitive_groups(self.online, ids, self.s.sensitive), self.s.sensitive),
            scores=scores,
            threshold=self.threshold,
            latency_ms=(time.perf_counter() - t0) * 1000,
            shadow=shadow,
            unseen=unseen or None,
        )

    # ---- public routes ------------------------------------------------------------------
    @api.get("/healthz")
    def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.name, "generation": self.active.state["generation"]}

    @api.get("/models", response_model=ModelsResponse)
    def models(self) -> ModelsResponse:
        act = self.active
        out = []
        for role, m in (("champion", act.champion), ("challenger", act.challenger)):
            if m is not None:
                out.append(
                    Deployed(
                        role=role,
                        version=m.version,
                        features=m.ref.features,
                        categorical={
                            c: list(m.scorer.schema.spec(c).categories)
                            for c in m.scorer.schema.categorical
                        },
                        snapshot_id=m.ref.tags.get("snapshot_id"),
                        family=m.ref.family,
                    )
                )
        return ModelsResponse(
            name=self.name,
            threshold=self.threshold,
            challenger_percent=float(act.state.get("challenger_percent") or 0.0),
            shadow=bool(act.state.get("shadow")),
            generation=int(act.state["generation"]),
            models=out,
        )

    @api.post("/predict", response_model=PredictResponse)
    async def predict(self, req: PredictRequest, request: Request) -> PredictResponse:
        t0 = time.perf_counter()
        act = self.active  # one consistent state for the whole request
        rid = self._request_id(request)
        if self.s.online_path:
            self._fresh_online()
        x, ids = request_inputs(
            req, act.champion.scorer.schema, self.online, self.max_rows, self.fields
        )
        withheld, x, ids = self._consent_gate(x, ids)
        n = len(x)
        if n == 0:  # every row withheld: nothing scored, the refusals audited
            await self._append([self._withheld_record(rid, withheld)])
            return self._answer(rid, np.empty(0), np.empty(0, object), ids, withheld)
        to_chal = self._route(act, ids, n, rid)
        scores = np.empty(n)
        versions = np.full(n, act.champion.version, dtype=object)
        shadow = None
        unseen: dict[str, int] = {}
        if to_chal.any():
            assert act.challenger is not None
            ch, cc = await asyncio.gather(
                self._score(act.champion, x[~to_chal], unseen),
                self._score(act.challenger, x[to_chal], unseen),
            )
            scores[~to_chal], scores[to_chal] = ch, cc
            versions[to_chal] = act.challenger.version
        elif act.challenger is not None and act.state.get("shadow"):
            scores, shadow = await asyncio.gather(
                self._score(act.champion, x, unseen), self._score(act.challenger, x)
            )
        else:
            scores = await self._score(act.champion, x, unseen)
        shadow_rec = None
        if shadow is not None and act.challenger is not None:
            shadow_rec = {"version": act.challenger.version, "scores": shadow.tolist()}
        rec = self._record(
            "predict", rid, act, versions.tolist(), ids, x, scores.tolist(), t0, shadow_rec, unseen
        )
        recs = [rec] if not withheld else [rec, self._withheld_record(rid, withheld)]
        await self._append(recs)  # group commit: one write per loop turn
        return self._answer(rid, scores, versions, ids, withheld)

    def _consent_gate(
        self, x: pd.DataFrame, ids: list[str] | None
    ) -> tuple[list[tuple[int, str, str]], pd.DataFrame, list[str] | None]:
        """The rows without consent to the served purposes (position, id, why), and the
        request's rows and ids without them. A request whose rows have no ids cannot be
        checked: a client error naming the fix."""
        if self.consent is None:
            return [], x, ids
        assert self.s.consent is not None
        if ids is None:
            raise ValueError(
                "this model decides only for subjects who consented to "
                f"{self.s.consent.purposes}: give each row its id ('ids', 'entities' or the "
                "key field in each row)"
            )
        why = withheld_reasons(self.consent, ids, self.s.consent.purposes)
        gone = [(i, ids[i], w) for i, w in enumerate(why) if w is not None]
        if not gone:
            return [], x, ids
        keep = np.array([w is None for w in why])
        kept_ids = [i for i, k in zip(ids, keep, strict=True) if k]
        return gone, x[keep].reset_index(drop=True), kept_ids

    def _withheld_record(self, rid: str, withheld: list[tuple[int, str, str]]) -> dict[str, Any]:
        """The audit record of the rows given no automated decision (ids hashed as the
        decision records hash them)."""
        assert self.s.consent is not None
        return {
            "kind": "withheld",
            "route": "predict",
            "request_id": rid,
            "model": self.name,
            "time": time.time(),
            "ids": self._audit_ids([w[1] for w in withheld]),
            "reasons": [w[2] for w in withheld],
            "purposes": self.s.consent.purposes,
            "policy_version": self.s.consent.policy_version,
        }

    def _answer(
        self,
        rid: str,
        scores: np.ndarray,
        versions: np.ndarray,
        ids: list[str] | None,
        withheld: list[tuple[int, str, str]],
    ) -> PredictResponse:
        """Predictions in the request's row order, the withheld rows in their places."""
        row_ids: list[str | None] = list(ids) if ids is not None else [None] * len(scores)
        out = [
            Prediction(score=float(s), decision=bool(s >= self.threshold), version=str(v), id=i)
            for s, v, i in zip(scores, versions, row_ids, strict=True)
        ]
        for pos, sid, why in withheld:  # ascending positions: each lands where it was
            out.insert(
                pos, Prediction(score=None, decision=None, version=None, id=sid, withheld=why)
            )
        return PredictResponse(
            request_id=rid, model=self.name, threshold=self.threshold, predictions=out
        )

    @api.post("/explain", response_model=ExplainResponse)
    async def explain(self, req: PredictRequest, request: Request) -> ExplainResponse:
        from engine.train.families import explainer_for

        t0 = time.perf_counter()
        act = self.active
        rid = self._request_id(request)
        features = act.champion.ref.features
        if self.s.online_path:
            self._fresh_online()
        x, ids = request_inputs(
            req, act.champion.scorer.schema, self.online, self.max_rows, self.fields
        )
        withheld, _, _ = self._consent_gate(x, ids)
        if withheld:  # an explanation is profiling too: refused, and the refusal audited
            await self._append([self._withheld_record(rid, withheld)])
            raise ValueError(
                f"no explanation for {len(withheld)} row(s) whose subject has not consented: "
                + "; ".join(f"row {p} ({sid}): {w}" for p, sid, w in withheld[:5])
            )
        to_chal = self._route(act, ids, len(x), rid)
        out: list[Explained | None] = [None] * len(x)
        unseen: dict[str, int] = {}
        for m, mask in ((act.champion, ~to_chal), (act.challenger, to_chal)):
            if m is None or not mask.any():
                continue
            if m.explainer is None:
                m.explainer = explainer_for(m.scorer)
            xe, new = m.scorer.schema.frame_and_unseen(x[mask])
            for k, v in new.items():
                unseen[k] = unseen.get(k, 0) + v
            e, p = await asyncio.to_thread(explain_rows, m, xe)
            for j, i in enumerate(np.flatnonzero(mask)):
                out[i] = Explained(
                    score=float(p[j]),
                    version=m.version,
                    base_value=e.base_value,
                    output=e.output,
                    shap={f: float(v) for f, v in zip(features, e.values[j], strict=True)},
                )
        done = [o for o in out if o is not None]
        scores = [o.score for o in done]
        await self._append(
            [
                self._record(
                    "explain", rid, act, [o.version for o in done], ids, x, scores, t0, None, unseen
                )
            ]
        )
        return ExplainResponse(request_id=rid, model=self.name, explanations=done)

    # ---- admin routes -------------------------------------------------------------------
    def _admin(self, request: Request, need: str = "operator") -> tuple[str, str]:
        from serve.admin import authorize

        return authorize(self.s.tokens, self._token, request.headers.get("authorization", ""), need)

    async def _audit_admin(self, actor: tuple[str, str], action: str, change: Any) -> None:
        from serve.admin import admin_record

        await self.audit.append_async([admin_record(actor, action, change, self.name)])

    async def _wait_applied(self, generation: int, timeout_s: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            reps = await self.store.replicas.remote()
            pending = [r for r, v in reps.items() if int(v["applied"]) < generation]
            if not pending or time.monotonic() > deadline:
                return {
                    "replicas": len(reps),
                    "applied": len(reps) - len(pending),
                    "pending": pending,
                }
            await asyncio.sleep(0.1)

    @api.get("/admin/status")
    async def admin_status(self, request: Request) -> dict[str, Any]:
        self._admin(request, "viewer")
        return {
            "state": await self.store.get.remote(),
            "replicas": await self.store.replicas.remote(),
        }

    @api.post("/admin/traffic")
    async def admin_traffic(self, change: TrafficChange, request: Request) -> dict[str, Any]:
        """Change the challenger's share, shadow mode, or the challenger itself (a registry
        version or alias). Answers once every live replica serves the new state."""
        actor = self._admin(request, "operator")
        upd: dict[str, Any] = {}
        if change.challenger is not None:
            upd["challenger"] = await asyncio.to_thread(self._resolve_version, change.challenger)
        if change.challenger_percent is not None:
            upd["challenger_percent"] = float(change.challenger_percent)
        if change.shadow is not None:
            upd["shadow"] = change.shadow
        if not upd:
            raise HTTPException(
                422, "nothing to change: send challenger_percent, shadow or challenger"
            )
        if "challenger" in upd:  # load before anyone routes to it
            await asyncio.to_thread(self._load, upd["challenger"])
        try:
            state = await self.store.set.remote(upd)
        except Exception as exc:
            raise HTTPException(422, _cause(exc)) from None
        await self._audit_admin(actor, "traffic", upd)
        return {"state": state, **(await self._wait_applied(int(state["generation"])))}

    @api.post("/admin/promote")
    async def admin_promote(self, request: Request) -> dict[str, Any]:
        """The challenger becomes champion, in the registry (aliases) and in this app."""
        from engine.registry.models import promote

        actor = self._admin(request, "operator")
        st = await self.store.get.remote()
        if not st.get("challenger"):
            raise HTTPException(409, "no challenger is deployed: nothing to promote")
        v = str(st["challenger"])
        await asyncio.to_thread(promote, self.name, v, "promoted through the serve admin API")
        state = await self.store.set.remote(
            {"champion": v, "challenger": None, "challenger_percent": 0.0, "shadow": False}
        )
        await self._audit_admin(actor, "promote", {"champion": v})
        return {"state": state, **(await self._wait_applied(int(state["generation"])))}

    def _resolve_version(self, v: str) -> str:
        from engine.registry.models import find

        try:
            return find(self.name, v).version
        except Exception as exc:
            raise HTTPException(404, f"challenger '{v}': {_cause(exc)}") from None


def build_app(args: ServeSettings | dict[str, Any]) -> Application:
    """Application builder for ``serve run serve.app:build_app`` and the config YAML that
    ``insight serve config`` writes; ``args`` are :class:`serve.settings.ServeSettings`
    (bad args: a ValueError naming each field)."""
    settings = args if isinstance(args, ServeSettings) else ServeSettings.parse(args)
    dep: Any = ModelServer.options(**settings.deployment_options())  # type: ignore[attr-defined]
    return dep.bind(settings)  # type: ignore[no-any-return]
