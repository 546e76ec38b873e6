"""One monitor run: a window of the audit log against each served version's reference
profile, with the delayed labels joined; the result is one JSON document.

For each model version with traffic in the window (the champion and the challenger
separately, roles from the app's rollout state): per-feature drift (BH-adjusted),
prediction drift, data quality (null rate, unseen categories, out-of-range values),
decision rate, latency against the SLO, volume; and, where labels arrived, realized AUC,
calibration, score-label correlation (and its ratio to training), live fairness per
sensitive attribute and the live ATE, each with its interval. The result cites exactly
which segments and sequence ranges (with their hashes) it read; problems found while
verifying the chains are part of it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

import numpy as np

from engine.audit.window import Window, read_window
from engine.config.monitor import seconds
from engine.config.project import ProjectConfig
from engine.monitor import stats
from engine.monitor.drift import decide
from engine.monitor.result import (
    AuditRead,
    Covered,
    LabelsJoined,
    MonitorResult,
    ScoreStats,
    TimeWindow,
    Traffic,
    VersionResult,
)
from engine.monitor.store import monitor_dir
from engine.workspace import Workspace


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def roles(ws: Workspace, app: str, model: str) -> dict[str, str]:
    """version -> role, from the app's rollout state (else the registry's aliases)."""
    out: dict[str, str] = {}
    p = ws.serve / f"rollout-{app}.json"
    if p.is_file():
        st = json.loads(p.read_text())
        if st.get("champion"):
            out[str(st["champion"])] = "champion"
        if st.get("challenger"):
            out[str(st["challenger"])] = "challenger"
        return out
    from engine.registry.models import try_resolve

    for alias in ("challenger", "champion"):
        ref = try_resolve(model, alias)
        if ref is not None:
            out[ref.version] = alias
    return out


def _profile(ws: Workspace, model: str, version: str) -> dict[str, Any] | None:
    from engine.monitor.profile import load_profile
    from engine.registry.models import get_version

    cache = monitor_dir(ws) / "profiles" / f"{model}-v{version}.json"
    if cache.is_file():  # versions are immutable: so is a profile once read
        return load_profile("", cache)
    try:
        return load_profile(get_version(model, version).run_id, cache)
    except Exception:  # a version registered before profiles existed
        return None


def monitor_window(
    cfg: ProjectConfig, ws: Workspace, t_from: float, t_to: float, *, app: str = "insight"
) -> MonitorResult:
    from engine.monitor.labels import join, load_labels

    t0 = time.perf_counter()
    mc = cfg.monitor
    w = read_window(ws.audit / app, t_from, t_to)
    name = cfg.train.model_name
    result = MonitorResult(
        run_id=time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6],
        project=cfg.name,
        model=name,
        window=TimeWindow.model_validate(
            {"from": t_from, "to": t_to, "from_iso": iso(t_from), "to_iso": iso(t_to)}
        ),
        generated_at=iso(time.time()),
        audit=AuditRead(
            folder=str(ws.audit / app),
            segments_read=w.segments_read,
            covered=[Covered(**c.as_dict()) for c in w.covered],
            problems=w.problems,
            chain_ok=not w.problems,
            inputs_logged=w.inputs_logged,
        ),
        traffic=Traffic(requests=w.requests, rows=w.rows),
        no_traffic=w.rows == 0,
    )
    if w.rows == 0:
        result.seconds = {**w.seconds, "total": time.perf_counter() - t0}
        return result
    labels = load_labels(ws)
    joined = (
        join(
            labels, w.request_id, w.request_of_row, w.entity, w.row_time, seconds(mc.label_horizon)
        )
        if labels is not None and not labels.empty
        else join(None, w.request_of_row[:0], w.request_of_row, w.request_of_row, w.row_time, 0)
    )
    result.labels = LabelsJoined(
        available=0 if labels is None else len(labels),
        joined_rows=int(np.isfinite(joined["y"]).sum()),
    )
    from engine.tracking import use_workspace

    use_workspace(ws)  # the roles and profiles come from this workspace's registry
    role_of = roles(ws, app, name)
    a = time.perf_counter()
    for v in sorted({str(x) for x in w.version}, key=lambda s: (s not in role_of, s)):
        m = w.version == v
        result.models[v] = _version(cfg, ws, w, m, v, role_of.get(v, "other"), joined)
    result.seconds = {
        **w.seconds,
        "statistics": time.perf_counter() - a,
        "total": time.perf_counter() - t0,
    }
    return result


def _version(
    cfg: ProjectConfig,
    ws: Workspace,
    w: Window,
    m: np.ndarray,
    v: str,
    role: str,
    joined: dict[str, np.ndarray],
) -> VersionResult:
    mc = cfg.monitor
    prof = _profile(ws, cfg.train.model_name, v)
    every = bool(m.all())  # one version served the whole window: no copies
    sel: np.ndarray | slice = slice(None) if every else m
    reqs = (
        np.arange(w.requests)
        if every and w.rows == w.requests
        else np.unique(w.request_of_row[sel])
    )
    rows = int(w.rows if every else m.sum())
    y = joined["y"][sel]
    concept = stats.concept(y, w.score[sel], prof or {}, mc.alpha, rows, decisions=w.decision[sel])
    common: dict[str, Any] = {
        "role": role,
        "rows": rows,
        "requests": int(reqs.size),
        "profile": prof is not None,
        "latency": stats.latency(w.latency_ms[reqs], mc.latency_slo_p95_ms),
        "concept": concept,
    }
    if prof is None:
        return VersionResult(
            **common,
            score=ScoreStats(decision_rate=stats.rate(int(w.decision[sel].sum()), rows, mc.alpha)),
            note="no reference profile for this version (registered before profiles): "
            "drift not measured",
        )
    feats: dict[str, stats.NumericFeature | stats.CategoricalFeature] = {}
    for f, ref in prof["features"].items():
        if ref["kind"] == "numeric" and f in w.numeric:
            feats[f] = stats.numeric_feature(w.numeric[f][sel], ref, mc.alpha)
        elif ref["kind"] == "categorical" and f in w.categorical:
            feats[f] = stats.categorical_feature(w.categorical[f][sel], ref, mc.alpha)
    tested = [f for f, s in feats.items() if s.p_value is not None]
    dist = [feats[f].distance() for f in tested]
    adj, verdict = decide(
        [float(feats[f].p_value or 0.0) for f in tested],
        [float("nan") if d is None or d.estimate is None else d.estimate for d in dist],
        [feats[f].kind for f in tested],
        cfg.drift,
    )
    for f, p_adj, drifted in zip(tested, adj, verdict, strict=True):
        feats[f].p_adjusted, feats[f].drifted = p_adj, drifted
    out = VersionResult(
        **common,
        score=stats.score_stats(w.score[sel], w.decision[sel], prof["score"], mc.alpha),
        features=feats,
        drifted=[f for f in tested if feats[f].drifted],
    )
    if not w.inputs_logged:
        out.note = (
            "inputs are logged as hashes (serve.audit_inputs: hash): input drift not measured"
        )
    out.fairness = {
        attr: stats.fairness_stats(
            w.groups[attr][sel],
            w.decision[sel],
            y,
            prof["groups"].get(attr, {}),
            mc.alpha,
            mc.min_rows,
        )
        for attr in cfg.sensitive
        if attr in w.groups
    }
    if np.isfinite(joined["t"][sel]).any():
        out.uplift = stats.uplift_stats(
            joined["o"][sel], joined["t"][sel], prof.get("uplift"), mc.alpha
        )
    return out
