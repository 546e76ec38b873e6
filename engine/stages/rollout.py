"""A staggered rollout of a challenger that passed the gate, watched by the monitor.

At each step (``monitor.rollout.steps``, e.g. 10% -> 50% -> 100% of entities) the app's
split is changed live; once the challenger has answered ``min_rows`` rows in the step
(or ``max_wait`` has passed), the monitor measures the step's window for both versions and
the guards judge the challenger:

- fairness: its selection-rate gap (per sensitive attribute) exceeds the champion's, in the
  same window, by more than ``max_selection_gap_increase``, interval and all;
- lift, where labels have arrived: its realized AUC is below the champion's by more than
  ``max_auc_drop`` (its upper bound below the champion's estimate minus the margin);
- any alert rule scoped to the challenger (``models: challenger``) that holds. Rules on
  every model (input drift, say) describe the traffic, not the challenger: both versions
  see the same inputs, so they do not judge a rollout.

A breach, or too little traffic to judge, rolls back at once (challenger share 0; the
champion answers everyone); passing every step promotes it (registry aliases and app, no
restart). Every step is appended to the control audit log and recorded on the model
version in MLflow (tag ``rollout``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from engine.config.monitor import seconds
from engine.config.project import ProjectConfig
from engine.monitor.alerting import judge
from engine.monitor.result import MonitorResult
from engine.monitor.run import monitor_window
from engine.workspace import Workspace


def guards(cfg: ProjectConfig, res: MonitorResult, challenger: str, champion: str) -> list[str]:
    """What the challenger breached in a step's result (empty: nothing)."""
    rc = cfg.monitor.rollout
    ch, cp = res.models.get(challenger), res.models.get(champion)
    out = []
    for attr, f in (ch.fairness if ch else {}).items():
        g = f.selection_rate_gap
        bf = cp.fairness.get(attr) if cp else None
        base = bf.selection_rate_gap if bf else None
        if (
            g is not None
            and base is not None
            and g.estimate is not None
            and g.low is not None
            and base.estimate is not None
            and g.low - base.estimate > rc.max_selection_gap_increase
        ):
            out.append(
                f"fairness: selection-rate gap on '{attr}' {g.estimate:.3f} (low "
                f"{g.low:.3f}) vs champion {base.estimate:.3f}: more than "
                f"+{rc.max_selection_gap_increase}"
            )
    a = ch.concept.auc if ch else None
    b = cp.concept.auc if cp else None
    if (
        a is not None
        and b is not None
        and a.estimate is not None
        and a.high is not None
        and b.estimate is not None
        and b.estimate - a.high > rc.max_auc_drop
    ):
        out.append(
            f"lift: realized AUC {a.estimate:.3f} (high {a.high:.3f}) vs champion {b.estimate:.3f}"
        )
    scoped = cfg.monitor.model_copy(
        update={"rules": [r for r in cfg.monitor.rules if r.models == "challenger"]}
    )
    for j in judge(scoped, res):
        if j.version == f"v{challenger}" and j.holds:
            out.append(f"rule {j.rule} holds on {j.slice or 'the model'} ({j.value})")
    return out


def _challenger_rows(cfg: ProjectConfig, ws: Workspace, app: str, t0: float, version: str) -> int:
    from engine.audit.window import read_window

    w = read_window(ws.audit / app, t0, time.time() + 1)
    return int((w.version == version).sum())


def rollout(
    cfg: ProjectConfig,
    ws: Workspace,
    version: str,
    champion: str,
    *,
    url: str,
    token: str | None,
    app: str = "insight",
    traffic: Callable[[float], None] | None = None,
    control: Any = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Roll ``version`` out step by step; promote it, or roll back on a breach."""
    from mlflow.tracking import MlflowClient

    from serve.admin import admin_call

    rc = cfg.monitor.rollout
    steps: list[dict[str, Any]] = []
    name = cfg.train.model_name

    def record(event: str, **kw: Any) -> None:
        if control is not None:
            control.append(
                [
                    {
                        "kind": "rollout",
                        "event": event,
                        "model": name,
                        "version": version,
                        "time": time.time(),
                        **kw,
                    }
                ]
            )
        MlflowClient().set_model_version_tag(name, version, "rollout", json.dumps(steps))

    for pct in rc.steps:
        t_step = time.time()
        admin_call(
            url,
            token,
            "POST",
            "/admin/traffic",
            {"challenger": version, "challenger_percent": pct, "shadow": False},
        )
        record("step", percent=pct)
        deadline = time.monotonic() + seconds(rc.max_wait)
        rows = 0
        while time.monotonic() < deadline:
            if traffic is not None:
                traffic(pct)
            rows = _challenger_rows(cfg, ws, app, t_step, version)
            if rows >= rc.min_rows:
                break
            if traffic is None:
                time.sleep(2.0)
        res = monitor_window(cfg, ws, t_step, time.time() + 1e-3, app=app)
        breaches = (
            guards(cfg, res, version, champion)
            if rows >= rc.min_rows
            else [f"only {rows} challenger rows in {rc.max_wait}: too little traffic to judge"]
        )
        step = {
            "percent": pct,
            "seconds": round(time.time() - t_step, 1),
            "challenger_rows": rows,
            "champion_rows": res.models[champion].rows if champion in res.models else 0,
            "breaches": breaches,
            "run_id": res.run_id,
        }
        steps.append(step)
        log(
            f"rollout v{version} at {pct:g}%: {rows} challenger rows in {step['seconds']} s; "
            + ("[red]breach: " + "; ".join(breaches) + "[/]" if breaches else "guards pass")
        )
        if breaches:
            admin_call(url, token, "POST", "/admin/traffic", {"challenger_percent": 0})
            record("rolled-back", percent=pct, breaches=breaches)
            MlflowClient().set_model_version_tag(name, version, "rolled_back", "true")
            return {"result": "rolled back", "steps": steps}
    admin_call(url, token, "POST", "/admin/promote")
    record("promoted")
    return {"result": "promoted", "steps": steps}
