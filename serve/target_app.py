"""The targeting Serve app: ``POST /decide`` (route prefix ``/decide``).

A request lists customers (the campaign's feature columns, and the customer key when the
project has one). Each replica holds the registered targeter; for every customer it
answers: contact or not, with which arm, the expected lift with the interval of the
customer's effect segment, the segment, and why (the segment's rule and the net value).

**The budget holds across replicas.** Customers arrive one request at a time, so the
policy cannot rank the whole population first: a customer is contacted when the net value
of contacting them is at least the cut-off the budget had on the campaign's rows (the net
value of the last customer the budget reached there; 0 without a budget), and while the
budget lasts. What is left of the budget lives in one Ray actor per app (``BudgetLedger``):
its methods run one at a time, so two replicas can never spend the same contact; it
writes what was spent to a file in the workspace (temp file, then rename) after every
reservation, so a restart continues where the budget stood.

**Live lift needs a control.** A share of the customers the policy would contact
(``holdout``, default 10%) is held out at random and not contacted: their outcomes,
joined later, are the live control (engine.monitor). Every answer is a hash-chained audit
record (kind ``decide``) in the app's audit folder.

Client mistakes are 422s that name the customer and the column.
"""

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from engine.errors import ServiceError
from engine.targeting.targeter import online_decisions

api = FastAPI(title="Insight Engine: whom to contact", version="1")

APP_NAME = "decide"
ROUTE_PREFIX = "/decide"


class TargetSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_uri: str
    model: str
    audit_dir: str
    budget_file: str
    alias: str = "champion"
    num_replicas: int = 1
    num_cpus: float = 0.25
    holdout: float = Field(default=0.1, ge=0, lt=1)
    contacts: int | None = None  # the budget (one of the two, or none)
    money: float | None = None
    threshold: float = 0.0  # least net value worth a contact
    admin_token_sha256: str | None = None  # admin routes need the bearer token
    # SHA-256 of each named token -> holder and role (engine.governance.roles)
    tokens: dict[str, dict[str, str]] = Field(default_factory=dict)
    hash_keys: bool = False  # the customer key is PII: audited as a keyed hash
    workspace: str = ""
    # each customer's key, inputs and decision sealed under their own key
    # (engine.governance.seal): erasable
    seal: bool = False


class DecideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customers: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


class TrafficChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    challenger: str | None = None
    challenger_percent: float = Field(ge=0, le=100)


class ClientError(ValueError):
    """A request the client can fix: a 422 naming what is wrong."""


@api.exception_handler(ClientError)
async def _client_error(_: Request, exc: ClientError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": str(exc)})


@api.exception_handler(ServiceError)
async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
    # the key store, say: the server's side; nothing personal was written in the clear
    return JSONResponse(status_code=503, content={"detail": str(exc)})


@ray.remote(num_cpus=0)
class BudgetLedger:
    """What is left of the budget, for every replica of the app (one at a time)."""

    def __init__(self, path: str, contacts: int | None, money: float | None) -> None:
        self.path = Path(path)
        self.contacts, self.money = contacts, money
        self.spent = {"contacts": 0, "money": 0.0}
        if self.path.is_file():
            self.spent = json.loads(self.path.read_text())

    def reserve(self, costs: list[float]) -> list[bool]:
        """Grant the contacts in order while the budget lasts; persist what was spent."""
        out = []
        for c in costs:
            ok = (self.contacts is None or self.spent["contacts"] + 1 <= self.contacts) and (
                self.money is None or self.spent["money"] + c <= self.money + 1e-9
            )
            if ok:
                self.spent["contacts"] += 1
                self.spent["money"] += c
            out.append(ok)
        if any(out):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.spent))
            os.replace(tmp, self.path)
        return out

    def state(self) -> dict[str, Any]:
        return {"spent": dict(self.spent), "contacts": self.contacts, "money": self.money}

    # the champion/challenger split, for every replica (changed by the admin routes)
    def split(self) -> dict[str, Any]:
        return dict(getattr(self, "_split", {"champion": None, "challenger": None, "percent": 0.0}))

    def set_split(self, upd: dict[str, Any]) -> dict[str, Any]:
        self._split = {**self.split(), **upd}
        return dict(self._split)


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=32)
@serve.ingress(api)
class TargetServer:
    def __init__(self, settings: dict[str, Any]) -> None:
        import mlflow

        from engine.audit import AuditWriter
        from engine.registry.models import find
        from engine.targeting.targeter import ARTIFACT, Targeter

        s = TargetSettings.model_validate(settings)
        self.s = s
        mlflow.set_tracking_uri(s.tracking_uri)
        mlflow.set_registry_uri(s.tracking_uri)
        self.ref = find(s.model, s.alias)
        path = mlflow.artifacts.download_artifacts(f"models:/{s.model}/{self.ref.version}")
        self.t = Targeter.loads((Path(path) / "artifacts" / ARTIFACT).read_bytes())
        self.models: dict[str, Targeter] = {str(self.ref.version): self.t}
        # one ledger per model version and budget, shared by the replicas (a redeploy with
        # another budget gets its own; the file keeps what was spent across restarts)
        self.ledger = BudgetLedger.options(  # type: ignore[attr-defined]
            name="insight-budget-" + hashlib.sha256(s.budget_file.encode()).hexdigest()[:16],
            namespace="insight",
            get_if_exists=True,
            lifetime="detached",
        ).remote(s.budget_file, s.contacts, s.money)
        self.rng = np.random.default_rng()
        self.pii_key = None
        if s.hash_keys:
            from engine.pii import load_key

            self.pii_key = load_key(Path(s.workspace))
        self.audit = AuditWriter(Path(s.audit_dir), writer=f"decide-{uuid.uuid4().hex[:8]}")
        self.keys = None
        if s.seal:
            from engine.governance.keys import shared, store_root

            self.keys = shared(store_root(Path(s.workspace)))

    @api.get("/healthz")
    def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.s.model, "version": self.ref.version}

    def _key(self, k: Any) -> str:
        """A customer key as audited: keyed-hashed when the project marks it as PII."""
        if self.pii_key is None:
            return str(k)
        from engine.pii import hmac_hex

        return hmac_hex(self.pii_key, str(k))

    def _targeter(self, version: str) -> Any:
        """A registered version's targeter, loaded once per replica."""
        if version not in self.models:
            import mlflow

            from engine.targeting.targeter import ARTIFACT, Targeter

            path = mlflow.artifacts.download_artifacts(f"models:/{self.s.model}/{version}")
            self.models[version] = Targeter.loads(
                (Path(path) / "artifacts" / ARTIFACT).read_bytes()
            )
        return self.models[version]

    def _admin(self, request: Request, need: str = "operator") -> tuple[str, str]:
        from serve.admin import authorize

        auth = request.headers.get("authorization", "")
        return authorize(self.s.tokens, self.s.admin_token_sha256, auth, need)

    def _audit_admin(self, actor: tuple[str, str], action: str, change: Any) -> None:
        from serve.admin import admin_record

        self.audit.append([admin_record(actor, action, change, self.s.model)])

    @api.post("/admin/traffic")
    def admin_traffic(self, change: TrafficChange, request: Request) -> dict[str, Any]:
        """Give ``challenger_percent`` of the customers (by their key's hash: a customer
        stays with one version) to the ``challenger`` version."""
        actor = self._admin(request)
        upd: dict[str, Any] = {"percent": float(change.challenger_percent)}
        if change.challenger is not None:
            from engine.registry.models import find

            try:
                upd["challenger"] = str(find(self.s.model, change.challenger).version)
            except Exception as exc:
                raise ClientError(f"challenger {change.challenger!r}: {exc}") from None
            self._targeter(upd["challenger"])  # loads before anyone is routed to it
        out = dict(ray.get(self.ledger.set_split.remote(upd)))
        self._audit_admin(actor, "traffic", upd)
        return out

    @api.post("/admin/promote")
    def admin_promote(self, request: Request) -> dict[str, Any]:
        """The challenger becomes the champion: registry alias and this app."""
        from engine.registry.models import promote

        actor = self._admin(request)
        st = ray.get(self.ledger.split.remote())
        if not st.get("challenger"):
            raise ClientError("no challenger is deployed: nothing to promote")
        v = str(st["challenger"])
        promote(self.s.model, v, "promoted by the targeting roll-out")
        out = dict(
            ray.get(
                self.ledger.set_split.remote({"champion": v, "challenger": None, "percent": 0.0})
            )
        )
        self._audit_admin(actor, "promote", {"champion": v})
        return out

    @api.get("/budget")
    def budget(self) -> dict[str, Any]:
        return ray.get(self.ledger.state.remote())  # type: ignore[no-any-return]

    def _frame(self, req: DecideRequest) -> pd.DataFrame:
        feats = self.t.model.features
        for i, c in enumerate(req.customers):
            miss = [f for f in feats if f not in c]
            if miss:
                raise ClientError(
                    f"customers[{i}] lacks {miss}; a customer is described by {feats}."
                )
            for f in feats:
                v = c[f]
                if (
                    f not in self.t.model.categories
                    and v is not None
                    and not isinstance(v, int | float)
                ):
                    try:
                        float(v)
                    except (TypeError, ValueError):
                        raise ClientError(
                            f"customers[{i}].{f} is {v!r}, not a number. Fix: send a number "
                            "or null."
                        ) from None
        return pd.DataFrame(req.customers)

    @api.post("/")
    def decide(self, req: DecideRequest) -> dict[str, Any]:
        t0 = time.perf_counter()
        x = self._frame(req)
        key = self.t.key
        keys = x[key] if key and key in x.columns else None
        ledger = self.ledger

        def reserve(costs: list[float]) -> list[bool]:
            return list(ray.get(ledger.reserve.remote(costs)))

        split = ray.get(ledger.split.remote())
        champ = str(split.get("champion") or self.ref.version)
        chall = split.get("challenger")
        pct = float(split.get("percent") or 0.0)
        route = np.zeros(len(x), dtype=bool)  # True: the challenger decides
        if chall and pct > 0:
            if keys is not None:  # by the key's hash: a customer stays with one version
                h = [int(hashlib.sha256(str(k).encode()).hexdigest()[:8], 16) for k in keys]
                route = np.asarray(h) % 10_000 < pct * 100
            else:
                route = self.rng.random(len(x)) < pct / 100
        answer: list[dict[str, Any]] = [{} for _ in range(len(x))]
        for version, on in ((champ, ~route), (str(chall), route)):
            if not on.any():
                continue
            tg = self._targeter(version)
            rows = np.flatnonzero(on)
            part = online_decisions(
                tg,
                x.iloc[rows][tg.model.features].reset_index(drop=True),
                reserve,
                self.rng,
                self.s.holdout,
                # each version's own cut-off (the deployment's is the champion's)
                float(tg.meta.get("cutoff", self.s.threshold)),
            )
            for r, a in zip(rows, part, strict=True):
                answer[int(r)] = {**a, "version": version}
        if keys is not None and key is not None:
            for p, k in enumerate(keys.tolist()):
                answer[p] = {key: k, **answer[p]}
        rid = uuid.uuid4().hex
        latency = (time.perf_counter() - t0) * 1000
        rec = {
            "kind": "decide",
            "route": "decide",
            "request_id": rid,
            "time": time.time(),
            "model": self.s.model,
            "versions": sorted({a["version"] for a in answer}),
            "inputs": [{f: c.get(f) for f in self.t.model.features} for c in req.customers],
            "keys": None if keys is None else [self._key(k) for k in keys],
            "decisions": [
                {
                    k: a[k]
                    for k in (
                        "contact",
                        "arm",
                        "best_arm",
                        "expected_lift",
                        "held_out",
                        "segment",
                        "version",
                    )
                }
                for a in answer
            ],
            "latency_ms": latency,
        }
        if self.keys is not None:  # each customer's part under their own key
            from engine.governance.seal import seal_record

            rec = seal_record(rec, self.keys)
        self.audit.append([rec])
        return {
            "request_id": rid,
            "model": self.s.model,
            "version": champ,
            "decisions": answer,
        }


def build_target_app(settings: dict[str, Any]) -> Any:
    s = TargetSettings.model_validate(settings)
    dep: Any = TargetServer.options(  # type: ignore[attr-defined]
        num_replicas=s.num_replicas, ray_actor_options={"num_cpus": s.num_cpus}
    )
    return dep.bind(s.model_dump())


def target_up(
    proj: Any,
    ws: Any,
    *,
    port: int | None = None,
    alias: str = "champion",
    replicas: int = 1,
    holdout: float = 0.1,
    budget: Any = None,
    token: str | None = None,
) -> str:
    """Deploy the targeting app (its own route prefix) on the connected Ray cluster, bound to
    127.0.0.1; returns its URL once it answers. ``budget`` (an engine.config.target.Budget):
    the budget of this deployment, instead of the project's (today's budget, say); the
    cut-off stays the one the project's budget had on the campaign. ``token``: the admin
    bearer token (replicas see only its SHA-256); without one the admin routes are shut."""
    from ray import serve

    from engine.governance.roles import load_tokens
    from engine.stages.target import budget_cutoff, load_targeter
    from serve.deploy import free_port, wait_healthy

    tg, ref = load_targeter(ws, proj.model_name, alias)
    b = budget if budget is not None else tg.budget
    settings = {
        "tracking_uri": ws.tracking_uri,
        "model": proj.model_name,
        "audit_dir": str(ws.audit / APP_NAME),
        "budget_file": str(
            ws.serve
            / (
                f"budget-{proj.model_name}-v{ref.version}-"
                + ("none" if b is None else f"{b.contacts or 0}c-{b.money or 0:g}m")
                + ".json"
            )
        ),
        "alias": alias,
        "num_replicas": replicas,
        "holdout": holdout,
        "contacts": None if b is None else b.contacts,
        "money": None if b is None else b.money,
        "threshold": budget_cutoff(tg),
        "hash_keys": bool(tg.key) and f"{proj.target.source}.{tg.key}" in proj.pii,
        "workspace": str(ws.root),
        "seal": proj.governance.erasure.seal_audit,
        "admin_token_sha256": None if token is None else hashlib.sha256(token.encode()).hexdigest(),
        "tokens": load_tokens(ws.root),
    }
    from ray.serve.context import _get_global_client

    running = _get_global_client(raise_if_no_controller_running=False)
    if running is not None:
        port = int(running.http_config.port)
    else:
        port = port or free_port("127.0.0.1")
        serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_target_app(settings), name=APP_NAME, route_prefix=ROUTE_PREFIX, blocking=False)
    url = f"http://127.0.0.1:{port}{ROUTE_PREFIX}"
    wait_healthy(url)
    return url
