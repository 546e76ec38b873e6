"""What the report shows, gathered from aggregates only: the monitor history (one line per
monitor run), the alert state, the control audit log (retrain and rollout events), the
registry (versions, aliases, tags) and the model cards. No audit record of a request, no
input row and no identifier is read into the page, so its size depends on the number of
monitor runs (capped at ``max_points`` per series) and versions, not on traffic.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

from engine.config.project import ProjectConfig
from engine.workspace import Workspace


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(float(t), dt.UTC).isoformat(timespec="seconds")


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def thin(rows: list[dict[str, Any]], max_points: int) -> list[dict[str, Any]]:
    """At most ``max_points`` rows, evenly spaced, always keeping the first and the last."""
    if len(rows) <= max_points:
        return rows
    step = (len(rows) - 1) / (max_points - 1)
    return [rows[round(i * step)] for i in range(max_points)]


def roi(business: Any, tp: float, contacts: float) -> float | None:
    """(TP x save_rate x retained_value - contacts x contact_cost) / (contacts x contact_cost):
    the return on the campaign's spend (engine.config.BusinessConfig); None until the project
    file gives the business values (no number is assumed)."""
    if not business.is_set:
        return None
    spend = contacts * business.contact_cost
    if spend <= 0:
        return None
    return (tp * business.save_rate * business.retained_value - spend) / spend


def audit_ranges(history: list[dict[str, Any]]) -> dict[str, list[tuple[int, int]]]:
    """Per audit segment, the union of the sequence ranges the monitor runs read."""
    by: dict[str, list[tuple[int, int]]] = {}
    for h in history:
        for seg, a, b in h.get("covered") or []:
            by.setdefault(str(seg), []).append((int(a), int(b)))
    out: dict[str, list[tuple[int, int]]] = {}
    for seg, rs in by.items():
        merged: list[tuple[int, int]] = []
        for a, b in sorted(rs):
            if merged and a <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        out[seg] = merged
    return out


def _main_version(models: dict[str, Any]) -> str | None:
    """The version a window's headline numbers describe: the champion, else the busiest."""
    if not models:
        return None
    champ = [v for v, m in models.items() if m.get("role") == "champion"]
    if champ:
        return champ[0]
    return max(models, key=lambda v: models[v].get("rows", 0))


def series(cfg: ProjectConfig, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Per monitor run (the x axis is the window's end): traffic, latency, decision and
    label rates, predicted rate, lift, ATE, ROI, and drift per feature, for the window's
    main version (the champion)."""
    b = cfg.business
    out: dict[str, list[Any]] = {
        k: []
        for k in (
            "t",
            "requests",
            "rows",
            "version",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "decision_rate",
            "predicted_rate",
            "observed_rate",
            "lift_top_decile",
            "auc",
            "ate",
            "ate_low",
            "ate_high",
            "roi",
            "firing",
        )
    }
    drift: dict[str, list[float | None]] = {}
    kind: dict[str, str] = {}
    fair: dict[str, list[list[float | None] | None]] = {}
    for i, h in enumerate(history):
        models = h.get("models") or {}
        v = _main_version(models)
        m = models.get(v, {}) if v else {}
        lat = m.get("latency") or {}
        con = m.get("concept") or {}
        ate = m.get("ate")
        ate = ate if isinstance(ate, list) else [ate, None, None]  # older lines: the estimate
        cm = m.get("confusion") or {}
        tp, fp = cm.get("tp", 0), cm.get("fp", 0)
        out["t"].append(_num(h.get("to")))
        out["requests"].append(h.get("requests", 0))
        out["rows"].append(h.get("rows", 0))
        out["version"].append(v)
        for k in ("p50_ms", "p95_ms", "p99_ms"):
            out[k].append(_num(lat.get(k)))
        out["decision_rate"].append(_num(m.get("decision_rate")))
        out["predicted_rate"].append(_num(m.get("score_mean")))
        out["observed_rate"].append(_num(con.get("label_rate")))
        out["lift_top_decile"].append(_num(con.get("lift_top_decile")))
        out["auc"].append(_num(con.get("auc")))
        out["ate"].append(_num(ate[0]))
        out["ate_low"].append(_num(ate[1]))
        out["ate_high"].append(_num(ate[2]))
        out["roi"].append(_num(roi(b, tp, tp + fp)) if cm else None)
        out["firing"].append(len(h.get("firing") or []))
        for k in ("psi", "js"):
            for f in m.get(k) or {}:
                drift.setdefault(f, [None] * i)
                kind[f] = k
        for f, col in drift.items():
            val = (m.get(kind[f]) or {}).get(f)
            col.append(_num(val))
        for a in m.get("fairness") or {}:
            fair.setdefault(a, [None] * i)
        for a, col2 in fair.items():
            g = ((m.get("fairness") or {}).get(a) or {}).get("selection_rate_gap")
            col2.append([_num(x) for x in g] if isinstance(g, list) else None)
    return {
        **out,
        "fairness": fair,
        "drift": {
            "features": drift,
            "kind": kind,
            # the lines drawn are the alert rules' own thresholds (a rule per statistic)
            "rules": {
                k: [
                    {"rule": r.name, "threshold": r.threshold, "op": r.op}
                    for r in cfg.monitor.rules
                    if r.statistic == f"feature.{k}"
                ]
                for k in ("psi", "js")
            },
        },
        "latency_slo_p95_ms": cfg.monitor.latency_slo_p95_ms,
    }


MAX_EVENTS = 300  # the newest transitions are listed; older ones are counted per alert


def alerts(history: list[dict[str, Any]], state: dict[str, Any]) -> dict[str, Any]:
    """The alert transitions (pending, firing, resolved) in time order, the newest
    ``MAX_EVENTS`` listed and the rest summarised per alert (20,000 transitions once made
    a 2.9 MB page), and every alert's state now."""
    every = [
        {
            "key": c["key"],
            "from": c.get("from"),
            "to": c["to"],
            "at": _num(c.get("at")),
            "at_iso": _iso(_num(c.get("at"))),
        }
        for h in history
        for c in h.get("changes") or []
    ]
    events = every[-MAX_EVENTS:]
    older: dict[str, int] = {}
    for e in every[: max(0, len(every) - MAX_EVENTS)]:
        older[e["key"]] = older.get(e["key"], 0) + 1
    order = {"firing": 0, "pending": 1, "resolved": 2}
    items = sorted(
        (state.get("alerts") or {}).items(),
        key=lambda kv: (order.get(kv[1].get("state"), 3), kv[0]),
    )
    now = {
        k: {
            "state": a.get("state"),
            "since_iso": _iso(
                _num(a.get("active_since") or a.get("fired_at") or a.get("resolved_at"))
            ),
            "value": _num(a.get("value")),
            "interval": a.get("interval"),
            "incident": a.get("incident"),
        }
        for k, a in items
    }
    return {
        "events": events,
        "now": now,
        "total_events": len(every),
        "older": dict(sorted(older.items(), key=lambda kv: -kv[1])[:50]),
    }


def control_events(ws: Workspace) -> dict[str, Any]:
    """Retrain and rollout events from the control audit log, its chain checked."""
    from engine.audit.verify import read_records, verify

    root = ws.audit / "control"
    if not root.is_dir():
        return {"events": [], "chain_ok": None}
    keep = ("event", "version", "percent", "passed", "breaches", "rule", "incident")
    events = [
        {
            "kind": r["kind"],
            "at": _num(r.get("time")),
            "at_iso": _iso(_num(r.get("time"))),
            **{k: r[k] for k in keep if k in r},
        }
        for r in read_records(root, kind=None)
        if r.get("kind") in ("retrain", "rollout")
    ]
    return {"events": events, "chain_ok": verify(root).ok}


_CARDS: dict[tuple[str, str], dict[str, Any]] = {}


def _card(tracking_uri: str, run_id: str) -> dict[str, Any] | None:
    """A version's card. A logged card never changes, so it is kept (the dashboard rebuilds
    often); a missing one is not, since it may be logged a moment after registration."""
    from engine.registry.card import load_card

    key = (tracking_uri, run_id)
    if key not in _CARDS and run_id:
        try:
            _CARDS[key] = load_card(run_id)
        except Exception:  # a version registered without a card (yet)
            return None
    return _CARDS.get(key)


def _json_tag(text: str | None) -> Any:
    import json

    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def versions(cfg: ProjectConfig, ws: Workspace, name: str) -> list[dict[str, Any]]:
    """Every registered version with its aliases, gate verdict, rollout steps and card (one
    registry search; tags come with it)."""
    import json

    import mlflow

    from engine.errors import StateError
    from engine.registry.models import list_versions
    from engine.tracking import setup_mlflow

    setup_mlflow(ws, cfg.name)
    try:
        rows = list_versions(name)
    except StateError:  # nothing registered yet: the page says so
        return []
    out: list[dict[str, Any]] = []
    for row in rows:
        tags = row.pop("tags")
        try:
            rollout = json.loads(tags.get("rollout", "[]"))
        except json.JSONDecodeError:
            rollout = []
        out.append(
            {
                **row,
                "created_iso": _iso(row["created"] / 1000) if row.get("created") else None,
                "gate": tags.get("gate"),
                "gate_paired": _json_tag(tags.get("gate_paired_auc")),
                "promoted_reason": tags.get("promoted_reason"),
                "rolled_back": tags.get("rolled_back") == "true",
                "retrain_incident": tags.get("retrain_incident"),
                "rollout": [
                    {k: s.get(k) for k in ("percent", "challenger_rows", "breaches", "seconds")}
                    for s in rollout
                ],
                "card": _card(mlflow.get_tracking_uri(), row["run_id"]),
            }
        )
    return out


def fairness_groups(fair: dict[str, Any], alpha: float) -> dict[str, Any]:
    """The card's fairness per attribute, each group's selection rate with its Wilson
    interval (count and rate are in the card; the interval is computed here)."""
    from engine.monitor.stats import rate

    out: dict[str, Any] = {}
    for attr, f in fair.items():
        groups = {}
        for g, v in (f.get("by_group") or {}).items():
            n = int(v.get("count") or 0)
            r = rate(round((v.get("selection_rate") or 0.0) * n), n, alpha)
            groups[str(g)] = {
                "count": n,
                "selection_rate": [r.estimate, r.low, r.high],
                "tpr": _num(v.get("tpr")),
                "fpr": _num(v.get("fpr")),
            }
        metrics = {
            k: [_num(m.get("value")), _num(m.get("low")), _num(m.get("high"))]
            for k, m in f.items()
            if k != "by_group" and isinstance(m, dict)
        }
        out[attr] = {"groups": groups, "metrics": metrics}
    return out


def collect(
    cfg: ProjectConfig,
    ws: Workspace,
    model: str | None = None,
    *,
    max_points: int = 500,
    registered: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able dict of aggregates. ``registered``: the
    output of :func:`versions`, when the caller has read it already (the card pages)."""
    import json

    from engine.monitor.store import monitor_dir, read_history
    from engine.report.demand import demand_section
    from engine.report.targeting import targeting_section

    name = model or cfg.train.model_name
    full = read_history(ws)
    history = thin(full, max_points)
    sp = monitor_dir(ws) / "state.json"
    state = json.loads(sp.read_text()) if sp.is_file() else {}
    vs = versions(cfg, ws, name) if registered is None else registered
    champion = next((v for v in vs if "champion" in v["aliases"]), vs[0] if vs else None)
    card = (champion or {}).get("card") or {}
    metrics = card.get("metrics") or {}
    uplift = card.get("uplift") or {}
    cm = metrics.get("confusion") or {}
    b = cfg.business
    segments = sorted({c[0] for h in full for c in h.get("covered") or []})
    ranges = audit_ranges(full)
    served = sorted({v for h in full for v in (h.get("models") or {})}, key=int)
    return {
        "header": {
            "project": cfg.name,
            "model": name,
            "generated_at": _iso(time.time()),
            "monitor_runs": len(full),
            "points": len(history),
            "from_iso": _iso(_num(full[0].get("from"))) if full else None,
            "to_iso": _iso(_num(full[-1].get("to"))) if full else None,
            # the audit log as the monitor last read it: traffic since then is not counted
            "requests": sum(int(h.get("requests") or 0) for h in full),
            "requests_as_of": (full[-1].get("ran_at") or _iso(_num(full[-1].get("to"))))
            if full
            else None,
            "audit_folder": str(ws.audit),
            "audit_segments": segments,
            # each record once, however many runs read it (windows can overlap)
            "audit_records": sum(b_ - a + 1 for rs in ranges.values() for a, b_ in rs),
            "audit_ranges": {s: [[a, b_] for a, b_ in rs] for s, rs in ranges.items()},
            "chain_ok": all(h.get("chain_ok", True) for h in full),
            "versions_served": served,
            "versions_registered": [v["version"] for v in vs],
            "champion": champion["version"] if champion else None,
        },
        "business": {**b.model_dump(), "set": b.is_set},
        "training": {
            "positive_rate": _num(metrics.get("positive_rate")),
            "selection_rate": _num(metrics.get("selection_rate")),
            "lift_top_decile": _num(metrics.get("lift_top_decile")),
            "auc": metrics.get("auc"),
            "version": champion["version"] if champion else None,
            "roi": roi(b, cm.get("tp", 0), cm.get("tp", 0) + cm.get("fp", 0)) if cm else None,
            "ate": uplift.get("ate"),
            "uplift_rows": uplift.get("rows"),
            "curves": uplift.get("curves"),
            "best_learner": uplift.get("best"),
            "qini": uplift.get("best_qini"),
            "fairness": fairness_groups(metrics.get("fairness") or {}, cfg.monitor.alpha),
        },
        "series": series(cfg, history),
        "alerts": alerts(full, state),
        "control": control_events(ws),
        "versions": [
            {**{k: v for k, v in x.items() if k != "card"}, "has_card": bool(x.get("card"))}
            for x in vs
        ],
        "threshold": cfg.serve.threshold,
        "demand": demand_section(ws),
        "targeting": targeting_section(ws),
    }
