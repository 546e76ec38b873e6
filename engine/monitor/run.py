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
    Stat,
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
    cfg: ProjectConfig,
    ws: Workspace,
    t_from: float,
    t_to: float,
    *,
    app: str = "insight",
    mode: str = "partials",
    executor: str = "auto",
    threads: int | None = None,
    cache: bool = True,
) -> MonitorResult:
    """One monitor run over ``[t_from, t_to)``.

    ``mode="partials"`` (the default) aggregates each segment on its own, in parallel, and
    merges the parts (engine.monitor.partials); ``"single"`` reads the whole window into
    memory and computes each statistic over it at once (the reference the parts are
    tested against). ``executor``: ``threads`` (the cores this process is given), ``ray``
    (one task per group of segments, on every node), or ``auto`` (Ray where a cluster is
    named: the profile's ``ray:`` or ``RAY_ADDRESS``, and 8 or more segments to read)."""
    if mode == "single":
        return _monitor_single(cfg, ws, t_from, t_to, app=app)
    return _monitor_parts(
        cfg, ws, t_from, t_to, app=app, executor=executor, threads=threads, cache=cache
    )


def _base_result(
    cfg: ProjectConfig, ws: Workspace, app: str, t_from: float, t_to: float
) -> MonitorResult:
    return MonitorResult(
        run_id=time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6],
        project=cfg.name,
        model=cfg.train.model_name,
        window=TimeWindow.model_validate(
            {"from": t_from, "to": t_to, "from_iso": iso(t_from), "to_iso": iso(t_to)}
        ),
        generated_at=iso(time.time()),
        audit=AuditRead(
            folder=str(ws.audit / app), segments_read=0, chain_ok=True, inputs_logged=True
        ),
        traffic=Traffic(requests=0, rows=0),
        no_traffic=True,
        review=_review(ws),
    )


def _review(ws: Workspace) -> Stat | None:
    """The review queue's dispute rate, for the rules (statistic review.dispute_rate)."""
    from engine.governance.review import stats

    st = stats(ws)
    r = st["dispute_rate"]
    if isinstance(r, str):
        return None
    return Stat.of(r["estimate"], r["low"], r["high"], st["reviewed"])


RAY_MIN_SEGMENTS = 8  # below this, Ray's task overhead outweighs a thread pool's


def _monitor_parts(
    cfg: ProjectConfig,
    ws: Workspace,
    t_from: float,
    t_to: float,
    *,
    app: str,
    executor: str,
    threads: int | None,
    cache: bool,
) -> MonitorResult:
    from engine.audit.window import chosen_segments
    from engine.kernels import cores
    from engine.monitor import partials as P
    from engine.monitor.labels import join, load_labels

    t0 = time.perf_counter()
    mc = cfg.monitor
    name = cfg.train.model_name
    result = _base_result(cfg, ws, app, t_from, t_to)
    chosen = chosen_segments(ws.audit / app, t_from, t_to)
    labels = load_labels(ws)
    keys = P.LabelKeys.of(labels)
    attrs = list(cfg.sensitive)
    from engine.tracking import use_workspace

    use_workspace(ws)  # the roles and profiles come from this workspace's registry
    role_of = roles(ws, app, name)
    memo: dict[str, dict[str, Any] | None] = {}

    def profile_of(v: str) -> dict[str, Any] | None:
        if v not in memo:
            memo[v] = _profile(ws, name, v)
        return memo[v]

    known = set(role_of) | _cached_profile_versions(ws, name)
    for v in sorted(known):
        profile_of(v)
    ray_tasks = 0
    if executor == "ray" or (executor == "auto" and len(chosen) >= RAY_MIN_SEGMENTS):
        import os

        from engine.raycluster import start_ray

        # A named cluster (the profile's ray:, RAY_ADDRESS: every submitted job) has other
        # nodes' cores; a local Ray adds none over this process's threads.
        if executor == "ray" or ws.ray_address or os.environ.get("RAY_ADDRESS"):
            import ray

            start_ray(ws)
            ray_tasks = max(1, int(ray.cluster_resources().get("CPU", 1)))
            # Tasks cannot reach back for a profile: give them every registered version's.
            for v in _registered_versions(name):
                profile_of(v)
    part_cache = None
    if cache:
        from engine.pii import load_key

        part_cache = P.PartCache(
            monitor_dir(ws) / "partials" / app,
            load_key(ws.root),
            P.context_fingerprint(keys, attrs),
            profile_of,
        )
    parts, how = P.window_parts(
        chosen,
        t_from,
        t_to,
        dict(memo),
        profile_of,
        attrs,
        keys,
        cache=part_cache,
        threads=threads or cores.allowed(),
        ray_tasks=ray_tasks,
    )
    read_s = time.perf_counter() - t0
    m = P.merge(parts, attrs)
    result.audit = AuditRead(
        folder=str(ws.audit / app),
        segments_read=len(chosen),
        covered=[Covered(**c.as_dict()) for c in m.covered],
        problems=m.problems,
        chain_ok=not m.problems,
        inputs_logged=m.inputs_logged,
        read_by=how,
        segments_cached=sum(p.cached for p in parts),
    )
    result.traffic = Traffic(requests=m.requests, rows=m.rows)
    result.no_traffic = m.rows == 0
    seconds = {
        k: sum(p.seconds.get(k, 0.0) for p in parts if not p.cached)
        for k in ("verify", "parse", "assemble", "statistics")
    }
    if m.rows == 0:
        result.seconds = {**seconds, "read": read_s, "total": time.perf_counter() - t0}
        return result
    a = time.perf_counter()
    lab = m.labels
    joined: dict[str, np.ndarray] = {}
    if lab is not None and labels is not None:
        n = lab.time.size
        joined = join(labels, lab.request_id, np.arange(n), lab.entity, lab.time, seconds_of(mc))
    result.labels = LabelsJoined(
        available=0 if labels is None else len(labels),
        joined_rows=int(np.isfinite(joined["y"]).sum()) if joined else 0,
    )
    for v in sorted(m.versions, key=lambda s: (s not in role_of, s)):
        result.models[v] = _finish_version(
            cfg, m, v, role_of.get(v, "other"), profile_of(v), lab, joined
        )
    result.seconds = {
        **seconds,
        "read": read_s,
        "merge_and_finish": time.perf_counter() - a,
        "total": time.perf_counter() - t0,
    }
    return result


def seconds_of(mc: Any) -> float:
    return seconds(mc.label_horizon)


def _registered_versions(model: str) -> list[str]:
    from engine.registry.models import list_versions

    try:
        return [str(r["version"]) for r in list_versions(model)]
    except Exception:  # no registry or no such model here: the cached profiles only
        return []


def _cached_profile_versions(ws: Workspace, model: str) -> set[str]:
    folder = monitor_dir(ws) / "profiles"
    prefix = f"{model}-v"
    return {
        p.stem[len(prefix) :] for p in folder.glob(f"{prefix}*.json") if p.stem.startswith(prefix)
    }


def _finish_version(
    cfg: ProjectConfig,
    m: Any,
    v: str,
    role: str,
    prof: dict[str, Any] | None,
    lab: Any,
    joined: dict[str, np.ndarray],
) -> VersionResult:
    """A version's result from its merged part: the same as :func:`_version` over the
    whole window (tests/test_monitor_partials.py)."""
    from engine.monitor import partials as P

    mc = cfg.monitor
    vp = m.versions[v]
    if lab is not None and joined:
        on = lab.version == v
        y, s, d = joined["y"][on], lab.score[on], lab.decision[on]
        t, o = joined["t"][on], joined["o"][on]
        groups = {a: g[on] for a, g in lab.groups.items()}
    else:
        y = s = t = o = np.empty(0)
        d = np.empty(0, dtype=bool)
        groups = {}
    concept = stats.concept(y, s, prof or {}, mc.alpha, vp.rows, decisions=d)
    common: dict[str, Any] = {
        "role": role,
        "rows": vp.rows,
        "requests": vp.requests,
        "profile": prof is not None,
        "latency": stats.latency_from_counts(vp.latency[0], vp.latency[1], mc.latency_slo_p95_ms),
        "concept": concept,
    }
    if prof is None or vp.score is None:
        return VersionResult(
            **common,
            score=ScoreStats(decision_rate=stats.rate(vp.decisions, vp.rows, mc.alpha)),
            note="no reference profile for this version (registered before profiles): "
            "drift not measured",
        )
    feats: dict[str, stats.NumericFeature | stats.CategoricalFeature] = {}
    for f, ref in prof["features"].items():
        part = vp.features.get(f)
        if ref["kind"] == "numeric" and isinstance(part, stats.NumericPart):
            feats[f] = stats.numeric_from_part(part, ref, mc.alpha)
        elif ref["kind"] == "categorical" and isinstance(part, stats.CategoricalPart):
            feats[f] = stats.categorical_from_part(part, ref, mc.alpha)
    _decide(cfg, feats)
    out = VersionResult(
        **common,
        score=stats.score_from_part(vp.score, prof["score"], mc.alpha),
        features=feats,
        drifted=[f for f, x in feats.items() if x.p_value is not None and x.drifted],
    )
    if not m.inputs_logged:
        out.note = (
            "inputs are logged as hashes (serve.audit_inputs: hash): input drift not measured"
        )
    lab_y = y
    out.fairness = {}
    for attr in cfg.sensitive:
        if attr not in vp.groups:
            continue
        lg = groups.get(attr, np.full(y.size, None, dtype=object))
        g_all, d_all, y_all = P.fairness_arrays(vp, attr, lg, d, lab_y)
        out.fairness[attr] = stats.fairness_stats(
            g_all, d_all, y_all, prof["groups"].get(attr, {}), mc.alpha, mc.min_rows
        )
    if t.size and np.isfinite(t).any():
        out.uplift = stats.uplift_stats(o, t, prof.get("uplift"), mc.alpha)
    return out


def _decide(cfg: ProjectConfig, feats: dict[str, Any]) -> None:
    """Benjamini-Hochberg across the tested features (engine.monitor.drift.decide)."""
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


def _monitor_single(
    cfg: ProjectConfig, ws: Workspace, t_from: float, t_to: float, *, app: str = "insight"
) -> MonitorResult:
    from engine.monitor.labels import join, load_labels

    t0 = time.perf_counter()
    mc = cfg.monitor
    w = read_window(ws.audit / app, t_from, t_to)
    name = cfg.train.model_name
    result = _base_result(cfg, ws, app, t_from, t_to)
    result.audit = AuditRead(
        folder=str(ws.audit / app),
        segments_read=w.segments_read,
        covered=[Covered(**c.as_dict()) for c in w.covered],
        problems=w.problems,
        chain_ok=not w.problems,
        inputs_logged=w.inputs_logged,
        read_by=f"threads: {int(w.seconds.get('threads', 1))} (whole window in memory)",
    )
    result.traffic = Traffic(requests=w.requests, rows=w.rows)
    result.no_traffic = w.rows == 0
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
    _decide(cfg, feats)
    tested = [f for f, s in feats.items() if s.p_value is not None]
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
