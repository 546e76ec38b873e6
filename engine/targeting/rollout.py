"""A staggered roll-out of a new targeting policy, watched by live lift and fairness.

At each step (``target.rollout.steps``, e.g. 10% -> 50% -> 100% of customers, by their
key's hash) the running ``/decide`` app gives that share to the challenger version (admin
route, no restart). Once both versions have ``min_rows`` chosen customers with an outcome
in the step's window (or ``max_wait`` has passed: too little to judge is a rollback), the
guards compare them on the same window:

- **lift**: the challenger's live lift (contacted vs held out at random among the customers
  it chose) lies wholly below the champion's, minus ``max_lift_drop``; or the challenger's
  own "5% decline" rule fires (its lift below what it promised);
- **fairness**: on a sensitive attribute (``sensitive:`` of the file, a feature column), the
  gap between the groups' contact rates under the challenger exceeds the champion's by more
  than ``max_contact_gap_increase`` (groups of at least 30 customers).

A breach rolls back at once (challenger share 0); passing every step promotes the
challenger (registry alias and app). Every step goes to the control audit log and to the
model version's ``rollout`` tag in MLflow.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from engine.config.monitor import seconds
from engine.config.target import TargetProject
from engine.targeting.live import live_lift
from engine.workspace import Workspace

MIN_GROUP = 30


def contact_gaps(decided: pd.DataFrame, sensitive: list[str]) -> dict[str, float]:
    """Per sensitive attribute: max minus min contact rate over groups of >= MIN_GROUP."""
    out: dict[str, float] = {}
    if decided.empty:
        return out
    for attr in sensitive:
        g = pd.Series([(x or {}).get(attr) for x in decided["inputs"]], index=decided.index)
        rates = decided.groupby(g.astype(str))["contact"].agg(["mean", "size"])
        rates = rates[rates["size"] >= MIN_GROUP]
        if len(rates) >= 2:
            out[attr] = float(rates["mean"].max() - rates["mean"].min())
    return out


def guards(proj: TargetProject, champ: dict[str, Any], chall: dict[str, Any]) -> list[str]:
    rc = proj.target.rollout
    out = []
    a, b = chall["segments"].get("all"), champ["segments"].get("all")
    if (
        a
        and b
        and a["lift"][2] is not None
        and b["lift"][0] is not None
        and a["lift"][2] < b["lift"][0] - rc.max_lift_drop
    ):
        out.append(
            f"lift: live {a['lift'][0]:+.4f} (high {a['lift'][2]:+.4f}) vs champion "
            f"{b['lift'][0]:+.4f}"
        )
    out += [f"rule {k}" for k in chall["firing"] if k.endswith(f"|all|v{chall['version']}")]
    gc = contact_gaps(chall["_decided"], proj.sensitive)
    gb = contact_gaps(champ["_decided"], proj.sensitive)
    for attr, gap in gc.items():
        base = gb.get(attr)
        if base is not None and gap - base > rc.max_contact_gap_increase:
            out.append(
                f"fairness: contact-rate gap on '{attr}' {gap:.3f} vs champion {base:.3f}: more "
                f"than +{rc.max_contact_gap_increase}"
            )
    return out


def _rows(res: dict[str, Any]) -> int:
    s = res["segments"].get("all")
    return 0 if not s else int(s["contacted"] + s["held_out"])


def rollout_policy(
    proj: TargetProject,
    ws: Workspace,
    version: str,
    champion: str,
    *,
    url: str,
    token: str,
    traffic: Callable[[float], None] | None = None,
    control: Any = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Roll ``version`` out step by step; promote it, or roll back on a breach."""
    from mlflow.tracking import MlflowClient

    from serve.admin import admin_call

    rc = proj.target.rollout
    name = proj.model_name
    steps: list[dict[str, Any]] = []

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
            url, token, "POST", "/admin/traffic", {"challenger": version, "challenger_percent": pct}
        )
        record("step", percent=pct)
        deadline = time.monotonic() + seconds(rc.max_wait)
        ch = cp = None
        while time.monotonic() < deadline:
            if traffic is not None:
                traffic(pct)
            ch = live_lift(proj, ws, t_from=t_step, version=version, history=False)
            cp = (
                live_lift(proj, ws, t_from=t_step, version=champion, history=False)
                if pct < 100
                else None
            )
            if _rows(ch) >= rc.min_rows and (cp is None or _rows(cp) >= rc.min_rows):
                break
            if traffic is None:
                time.sleep(5.0)
        assert ch is not None
        enough = _rows(ch) >= rc.min_rows and (cp is None or _rows(cp) >= rc.min_rows)
        if not enough:
            breaches = [f"too few chosen customers with an outcome by {rc.max_wait} to judge"]
        elif cp is None:  # 100%: no champion traffic in the window; its own promise only
            breaches = [f"rule {k}" for k in ch["firing"] if k.endswith(f"|all|v{version}")]
        else:
            breaches = guards(proj, cp, ch)
        step = {
            "percent": pct,
            "seconds": round(time.time() - t_step, 1),
            "challenger_rows": _rows(ch),
            "champion_rows": 0 if cp is None else _rows(cp),
            "challenger_lift": ch["segments"].get("all", {}).get("lift"),
            "champion_lift": None if cp is None else cp["segments"].get("all", {}).get("lift"),
            "breaches": breaches,
        }
        steps.append(step)
        log(
            f"roll-out v{version} at {pct:g}%: {step['challenger_rows']} challenger / "
            f"{step['champion_rows']} champion customers with outcomes in {step['seconds']} s; "
            + ("breach: " + "; ".join(breaches) if breaches else "guards pass")
        )
        if breaches:
            admin_call(url, token, "POST", "/admin/traffic", {"challenger_percent": 0})
            record("rolled-back", percent=pct, breaches=breaches)
            MlflowClient().set_model_version_tag(name, version, "rolled_back", "true")
            return {"result": "rolled back", "steps": steps}
    admin_call(url, token, "POST", "/admin/promote")
    record("promoted")
    return {"result": "promoted", "steps": steps}
