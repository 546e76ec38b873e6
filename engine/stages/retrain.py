"""Stage: retrain, when a firing rule asked for it. Exactly once per request: it is marked
``running`` in the monitor's state before it starts (a crash leaves it ``running``, for a
person to look at, never re-run behind their back).

The loop: a fresh snapshot from the sources as they are now (newer data and labels), the
search on every label up to now (``train.until`` is lifted), the promotion gate without
promoting, and, for a passing challenger while an app is serving, the staggered rollout
(engine.stages.rollout) that promotes it or rolls it back. A failing challenger leaves the
champion serving. Every step is appended to the control audit log (``audit/control``) and
tagged on the model version in MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.config.forecast import ForecastProject
from engine.config.project import ProjectConfig
from engine.errors import InsightError
from engine.workspace import Workspace


@dataclass
class RetrainOutcome:
    incident: str
    snapshot_id: str = ""
    version: str = ""
    gate_passed: bool = False
    gate: list[dict[str, Any]] = field(default_factory=list)
    rollout: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    summary: str = ""


def retrain_config(cfg: ProjectConfig) -> ProjectConfig:
    """The project as a retrain uses it: every label up to now (``train.until`` lifted)."""
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"until": None})})


def retrain(
    cfg: ProjectConfig,
    ws: Workspace,
    request: dict[str, Any],
    *,
    app: str = "insight",
    url: str | None = None,
    traffic: Callable[[float], None] | None = None,
    log: Callable[[str], None] = print,
) -> RetrainOutcome:
    from mlflow.tracking import MlflowClient

    from engine.audit import AuditWriter
    from engine.raycluster import start_ray
    from engine.registry.gate import run_gate
    from engine.registry.models import try_resolve
    from engine.stages.features import stage_features
    from engine.stages.train import stage_train
    from engine.tracking import setup_mlflow

    out = RetrainOutcome(str(request.get("incident", "")))
    control = AuditWriter(ws.audit / "control", writer="retrain")
    rcfg = retrain_config(cfg)

    def note(event: str, **kw: Any) -> None:
        control.append(
            [
                {
                    "kind": "retrain",
                    "event": event,
                    "incident": out.incident,
                    "time": time.time(),
                    **kw,
                }
            ]
        )

    try:
        note("start", rule=request.get("rule"))
        t = time.monotonic()
        s, reused = stage_features(rcfg, ws)
        out.snapshot_id, out.seconds["features"] = s.id, time.monotonic() - t
        upto = (s.manifest.get("event_time_range") or [None, None])[1]
        log(
            f"retrain: snapshot {s.id}"
            + (" (reused: the sources have not changed since it was built)" if reused else "")
            + f" in {out.seconds['features']:.1f} s; train.until lifted: training on labels "
            f"up to {upto}"
        )
        note("snapshot", snapshot_id=s.id)
        t = time.monotonic()
        start_ray(ws)
        setup_mlflow(ws, cfg.name)
        champion = try_resolve(cfg.train.model_name, "champion")
        r = stage_train(rcfg, ws, s.id, alias="challenger", show_progress=False)
        out.version, out.seconds["train"] = r.version, time.monotonic() - t
        log(
            f"retrain: v{r.version} ({r.family}) test AUC {r.test_auc['estimate']:.4f} in {out.seconds['train']:.1f} s"
        )
        MlflowClient().set_model_version_tag(
            r.model_name, r.version, "retrain_incident", out.incident
        )
        note("trained", version=r.version, test_auc=r.test_auc)
        t = time.monotonic()
        g = run_gate(rcfg, ws, promote=False)
        out.seconds["gate"] = time.monotonic() - t
        out.gate_passed = g.passed
        out.gate = [{"check": c.name, "passed": c.passed, "detail": c.detail} for c in g.checks]
        for c in g.checks:
            log(f"retrain gate {c.name}: {'pass' if c.passed else 'FAIL'} - {c.detail}")
        note("gate", passed=g.passed, checks=out.gate)
        MlflowClient().set_model_version_tag(
            r.model_name, r.version, "gate", "passed" if g.passed else "failed"
        )
        if not g.passed:
            out.summary = f"v{r.version} failed the gate; the champion keeps serving"
            return out
        if champion is None:
            out.summary = f"v{r.version} passed; no champion to roll out against"
            return out
        url = url or _serving_url(ws)
        if url is None:
            out.summary = (
                f"v{r.version} passed the gate; no app is serving, so no rollout. Fix: "
                "`insight serve up`, then `insight serve traffic --challenger ...`."
            )
            return out
        from engine.stages.rollout import rollout
        from serve.admin import admin_token

        t = time.monotonic()
        out.rollout = rollout(
            cfg,
            ws,
            r.version,
            champion.version,
            url=url,
            token=admin_token(cfg, ws),
            app=app,
            traffic=traffic,
            control=control,
            log=log,
        )
        out.seconds["rollout"] = time.monotonic() - t
        out.summary = f"v{r.version} passed the gate and was {out.rollout['result']}"
        return out
    finally:
        note("end", summary=out.summary)
        control.close()


def _serving_url(ws: Workspace) -> str | None:
    from serve.daemon import read_state

    st = read_state(ws)
    return None if st is None else str(st["url"])


def run_requested(
    cfg: ProjectConfig,
    ws: Workspace,
    *,
    app: str = "insight",
    url: str | None = None,
    traffic: Callable[[float], None] | None = None,
    log: Callable[[str], None] = print,
) -> list[RetrainOutcome]:
    """Run every retrain the monitor requested, each exactly once."""
    from engine.monitor.alerting import AlertState
    from engine.monitor.store import state_path

    state = AlertState.load(state_path(ws))
    done = []
    for req in [
        r for r in state.retrains if r["status"] == "requested" and r.get("app", "insight") == app
    ]:
        req.update(status="running", started=time.time())
        state.save()
        try:
            o = retrain(cfg, ws, req, app=app, url=url, traffic=traffic, log=log)
            req.update(status="done", outcome=o.summary, version=o.version)
            done.append(o)
        except InsightError as exc:
            req.update(status="failed", error=str(exc))
            log(f"retrain for {req['incident']} failed: {exc}")
        state.save()
    return done


def run_forecast_requested(
    proj: ForecastProject,
    ws: Workspace,
    *,
    use_ray: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run every retrain a forecast-accuracy rule requested, each exactly once: a fresh
    backtest on the series table as it is now (the actuals that fired the rule included),
    registered as a new version, which becomes the champion only if its held-out MASE
    beats the champion's (engine.stages.forecast); each step in the control audit log."""
    from mlflow.tracking import MlflowClient

    from engine.audit import AuditWriter
    from engine.forecast.monitor import APP
    from engine.monitor.alerting import AlertState
    from engine.monitor.store import state_path
    from engine.stages.forecast import stage_forecast_train

    state = AlertState.load(state_path(ws))
    done: list[dict[str, Any]] = []
    todo = [r for r in state.retrains if r["status"] == "requested" and r.get("app") == APP]
    if not todo:
        return done
    control = AuditWriter(ws.audit / "control", writer="retrain-forecast")
    try:
        for req in todo:
            req.update(status="running", started=time.time())
            state.save()
            base = {"kind": "retrain", "app": APP, "incident": req["incident"]}
            control.append([{**base, "event": "start", "rule": req["rule"], "time": time.time()}])
            try:
                r = stage_forecast_train(proj, ws, use_ray=use_ray, log=log)
                MlflowClient().set_model_version_tag(
                    r.model_name, r.version, "retrain_incident", req["incident"]
                )
                h = r.card["holdout"]
                outcome = (
                    f"v{r.version} registered as @{r.alias} (held-out MASE {h['mase']:.3f})"
                    + (
                        "; redeploy the forecasting app to serve it"
                        if r.alias == "champion"
                        else ": the champion's held-out MASE is lower, it keeps serving"
                    )
                )
                req.update(status="done", version=r.version, alias=r.alias, outcome=outcome)
                log(f"retrain for {req['incident']}: {outcome}")
            except InsightError as exc:
                req.update(status="failed", error=str(exc))
                log(f"retrain for {req['incident']} failed: {exc}")
            control.append(
                [
                    {
                        **base,
                        "event": "end",
                        "status": req["status"],
                        "time": time.time(),
                        "summary": req.get("outcome") or req.get("error"),
                    }
                ]
            )
            state.save()
            done.append(dict(req))
    finally:
        control.close()
    return done
