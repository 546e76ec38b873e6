"""The forecasting Serve app: ``POST /forecast`` (route prefix ``/forecast``).

A request names series by their keys, optionally an origin (the first period to forecast;
default: the period after the history's end) and a horizon (at most the trained one), and
gives the planned values of the known-in-advance columns for the periods ahead. The
replica holds the registered forecaster and the history of its panel snapshot; it refits
the chosen local model per series on the history before the origin (milliseconds per
series) and answers point forecasts and intervals per step, with the model version and
the snapshot id. Every answer is a hash-chained audit record (kind ``forecast``) in the
app's own audit folder.

Client mistakes are 422s that name the series and period: an unknown series, a horizon
longer than the backtest measured, an origin off the frequency's grid or beyond the
history, a missing or non-numeric planned value.
"""

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

api = FastAPI(title="Insight Engine: demand forecasts", version="1")

APP_NAME = "forecast"
ROUTE_PREFIX = "/forecast"


class ForecastSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_uri: str
    model: str
    panel_path: str = Field(description="The snapshot's panel.parquet (the history).")
    audit_dir: str
    alias: str = "champion"
    num_cpus: float = 1.0


class ForecastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    series: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    origin: str | None = Field(default=None, description="First period to forecast (ISO).")
    horizon: int | None = Field(default=None, ge=1)
    future: list[dict[str, Any]] = Field(
        default_factory=list, description="Planned known values: keys, time, known columns."
    )
    explain: bool = Field(
        default=False,
        description="SHAP values of the global model's forecasts (series it forecasts).",
    )


class ClientError(ValueError):
    """A request the client can fix: a 422 naming what is wrong."""


@api.exception_handler(ClientError)
async def _client_error(_: Request, exc: ClientError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": str(exc)})


def _with_horizon(f: Any, h: int) -> Any:
    from dataclasses import replace

    cfg = f.config.model_copy(update={"horizon": h})
    return replace(f, config=cfg, quantiles={k: v[:h] for k, v in f.quantiles.items()})


def _shap_by_point(f: Any, hist: pd.DataFrame, fut: Any, out: pd.DataFrame) -> dict:
    """(unique_id, step) -> {"shap": {"base", "contributions" (every feature, largest
    first)}} for the points the global model forecast; base + contributions is the
    model's raw forecast (the answer clips it at zero)."""
    used = out.loc[out["model"] == "global", "unique_id"].unique()
    if f.global_model is None or not len(used):
        return {}
    ex = f.explain(hist[hist["unique_id"].isin(used)], fut)
    feats = [c for c in ex.columns if c not in ("unique_id", "step", "base")]
    res = {}
    for d in ex.to_dict("records"):
        contrib = sorted(((c, float(d[c])) for c in feats), key=lambda t: -abs(t[1]))
        res[(d["unique_id"], int(d["step"]))] = {
            "shap": {"base": float(d["base"]), "contributions": dict(contrib)}
        }
    return res


# Helpers the class uses are defined above it: Serve pickles the deployment class by value
# with the module globals that exist when it is defined.
@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=8)
@serve.ingress(api)
class ForecastServer:
    def __init__(self, settings: dict[str, Any]) -> None:
        import mlflow

        from engine.audit import AuditWriter
        from engine.forecast.predictor import Forecaster
        from engine.registry.models import find

        s = ForecastSettings.model_validate(settings)
        self.s = s
        mlflow.set_tracking_uri(s.tracking_uri)
        mlflow.set_registry_uri(s.tracking_uri)
        self.ref = find(s.model, s.alias)
        self.f = Forecaster.load_run(self.ref.run_id)
        panel = pd.read_parquet(s.panel_path)
        self.history = panel.assign(y=panel["y"].where(panel["observed"]))
        self.by_id = dict(tuple(self.history.groupby("unique_id", sort=False)))
        self.audit = AuditWriter(Path(s.audit_dir), writer=f"forecast-{uuid.uuid4().hex[:8]}")

    @api.get("/healthz")
    def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.s.model, "version": self.ref.version}

    def _ids(self, req: ForecastRequest) -> list[str]:
        from engine.forecast.panel import SEP

        keys = self.f.config.series
        out = []
        for i, s in enumerate(req.series):
            miss = [k for k in keys if k not in s]
            if miss:
                raise ClientError(f"series[{i}] lacks key(s) {miss}; a series is named by {keys}.")
            uid = SEP.join(str(s[k]) for k in keys)
            if uid not in self.by_id:
                raise ClientError(
                    f"series {uid} has no history in snapshot {self.f.snapshot_id}: it cannot "
                    "be forecast here (a new product: forecast it with its family's first "
                    "weeks once it has sold)."
                )
            out.append(uid)
        return out

    def _future(self, req: ForecastRequest) -> pd.DataFrame | None:
        from engine.errors import DataError
        from engine.forecast.predictor import future_frame

        if not req.future:
            return None
        try:
            return future_frame(pd.DataFrame(req.future), self.f.config)
        except DataError as exc:
            raise ClientError(str(exc)) from None

    @api.post("/")
    def forecast(self, req: ForecastRequest) -> dict[str, Any]:
        from engine.errors import DataError

        t0 = time.perf_counter()
        fc = self.f.config
        h = req.horizon or fc.horizon
        if h > fc.horizon:
            raise ClientError(
                f"horizon {h} is longer than the {fc.horizon} periods the backtest measured "
                f"(intervals beyond it are not calibrated). Fix: horizon <= {fc.horizon}."
            )
        ids = self._ids(req)
        off = pd.tseries.frequencies.to_offset(fc.freq)
        hist = pd.concat([self.by_id[u] for u in ids], ignore_index=True)
        if req.origin is not None:
            origin = pd.Timestamp(req.origin)
            if not off.is_on_offset(origin):
                raise ClientError(f"origin {req.origin} is not a {fc.freq} period.")
            end = hist["ds"].max()
            if origin > end + off:
                raise ClientError(
                    f"origin {origin.date()} is after the history's end {end.date()} + 1 "
                    "period: the periods between are unknown."
                )
            hist = hist[hist["ds"] < origin]
        fut = self._future(req)
        forecaster = self.f
        if h != fc.horizon:
            forecaster = _with_horizon(self.f, h)
        try:
            out = forecaster.forecast(hist, fut, every=True)  # the API asks for them always
        except DataError as exc:
            raise ClientError(str(exc)) from None
        rid = uuid.uuid4().hex
        shap = _shap_by_point(forecaster, hist, fut, out) if req.explain else {}
        answer: list[dict[str, Any]] = []
        for uid, part in out.groupby("unique_id", sort=False):
            answer.append(
                {
                    "unique_id": uid,
                    "model": str(part["model"].iloc[0]),
                    "points": [
                        {
                            "ds": str(r["ds"].date()),
                            "step": int(r["step"]),
                            "forecast": float(r["forecast"]),
                            **{
                                f"{side}_{lv}": float(r[f"{side}-{lv}"])
                                for lv in fc.levels
                                for side in ("lo", "hi")
                            },
                            **shap.get((uid, int(r["step"])), {}),
                        }
                        for _, r in part.iterrows()
                    ],
                }
            )
        latency = (time.perf_counter() - t0) * 1000
        self.audit.append(
            [
                {
                    "kind": "forecast",
                    "route": "forecast",
                    "request_id": rid,
                    "time": time.time(),
                    "model": self.s.model,
                    "versions": [self.ref.version],
                    "snapshot_id": self.f.snapshot_id,
                    "series": ids,
                    "origin": req.origin,
                    "horizon": h,
                    "future_sha256": hashlib.sha256(
                        json.dumps(req.future, sort_keys=True, default=str).encode()
                    ).hexdigest(),
                    "forecasts": [[p["forecast"] for p in a["points"]] for a in answer],
                    # what the monitor needs to score it once actuals arrive
                    "ds": [[p["ds"] for p in a["points"]] for a in answer],
                    "steps": [[p["step"] for p in a["points"]] for a in answer],
                    "intervals": {
                        str(lv): [
                            [[p[f"lo_{lv}"], p[f"hi_{lv}"]] for p in a["points"]] for a in answer
                        ]
                        for lv in fc.levels
                    },
                    "series_order": [a["unique_id"] for a in answer],
                    "latency_ms": latency,
                }
            ]
        )
        return {
            "request_id": rid,
            "model": self.s.model,
            "version": self.ref.version,
            "snapshot_id": self.f.snapshot_id,
            "forecasts": answer,
        }


def build_forecast_app(settings: dict[str, Any]) -> Any:
    s = ForecastSettings.model_validate(settings)
    dep: Any = ForecastServer.options(ray_actor_options={"num_cpus": s.num_cpus})  # type: ignore[attr-defined]
    return dep.bind(s.model_dump())


def forecast_up(proj: Any, ws: Any, *, port: int | None = None, alias: str = "champion") -> str:
    """Deploy the forecasting app beside any other app (its own route prefix) on the
    connected Ray cluster, bound to 127.0.0.1 (Serve started on ``port`` unless it runs
    already: then on its proxy's port); returns its URL once it answers."""
    from ray import serve

    from engine.stages.forecast import load_forecaster
    from serve.deploy import free_port, wait_healthy

    f, _ = load_forecaster(ws, proj.forecast.model_name, alias)
    panel = ws.features / proj.name / f.snapshot_id / "data" / "panel.parquet"
    settings = {
        "tracking_uri": ws.tracking_uri,
        "model": proj.forecast.model_name,
        "panel_path": str(panel),
        "audit_dir": str(ws.audit / APP_NAME),
        "alias": alias,
    }
    from ray.serve.context import _get_global_client

    running = _get_global_client(raise_if_no_controller_running=False)
    if running is not None:  # beside the churn app: its proxy, its port
        port = int(running.http_config.port)
    else:
        port = port or free_port("127.0.0.1")
        serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        build_forecast_app(settings), name=APP_NAME, route_prefix=ROUTE_PREFIX, blocking=False
    )
    url = f"http://127.0.0.1:{port}{ROUTE_PREFIX}"
    wait_healthy(url)
    return url
