"""Forecast monitoring: the forecasts the engine issued, scored once their actuals arrive.

**Issued forecasts** come from the forecasting app's audit folder (``<workspace>/audit/
forecast``), hash-chained like every audit log:

- each served ``/forecast`` answer (kind ``forecast``: per series its periods, steps,
  points and intervals);
- each batch run of ``insight forecast -o`` (kind ``forecast_batch``): a content-addressed
  copy of its output under ``<workspace>/forecasts`` and its SHA-256 in the record. A copy
  that no longer matches its hash is a problem of the run, and its rows are not used.

The same (version, series, period, step) issued twice counts once (the latest).

**Actuals**: engine.forecast.actuals (the series table as it is now, plus stored files).

**Statistics**, per model version and group of series (``all``, and each value of the
columns in ``forecast.monitor_by``): realized MASE on the scale the version was trained
with (the backtest's definition: the mean over series of each series' mean scaled absolute
error), its ratio to the backtest's held-out MASE *on the same series*, bias
(``sum(forecast - actual) / sum(actual)``), coverage of each interval level, and the
share of issued points whose actual arrived. Each with a (1 - monitor.alpha) interval: a
percentile bootstrap over series (the points of one series share its errors); when a
group has fewer than five series, within series. Coverage: Wilson's interval on the points,
widened to the bootstrap's where that is wider (never [100%, 100%]). ``tests/test_forecast_monitor.py`` checks
the points against utilsforecast and pandas and the intervals' coverage by simulation.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.config.forecast import ForecastProject
from engine.forecast.actuals import actuals
from engine.monitor.result import ForecastQuality, MonitorResult, Stat
from engine.workspace import Workspace, atomic_write_bytes

CARD = "forecast_card.json"  # the card's artifact name in a training run
APP = "forecast"  # the forecasting app's name: its audit folder and its alerts' app
MIN_SERIES_BOOTSTRAP = 5
KEY = ["version", "unique_id", "ds", "step"]


def issued_dir(ws: Workspace) -> Path:
    return ws.root / "forecasts"


def _bound_cols(levels: list[int]) -> list[str]:
    return [f"{side}-{lv}" for lv in levels for side in ("lo", "hi")]


def record_batch(
    ws: Workspace,
    out: pd.DataFrame,
    *,
    model: str,
    version: str,
    snapshot_id: str,
    levels: list[int],
    inventory: dict[str, Any] | None = None,
) -> Path:
    """Keep a batch run's forecasts for the monitor: a content-addressed copy, and an
    audit record naming it by hash (with the run's inventory summary, which the report
    shows)."""
    from engine.audit import AuditWriter

    cols = ["unique_id", "ds", "step", "forecast", *_bound_cols(levels)]
    data = out[cols].reset_index(drop=True).to_parquet(index=False)
    sha = hashlib.sha256(data).hexdigest()
    path = issued_dir(ws) / f"{sha[:24]}.parquet"
    if not path.exists():
        atomic_write_bytes(path, data)
    w = AuditWriter(ws.audit / APP, writer=f"forecast-batch-{uuid.uuid4().hex[:8]}")
    try:
        w.append(
            [
                {
                    "kind": "forecast_batch",
                    "time": time.time(),
                    "model": model,
                    "versions": [version],
                    "snapshot_id": snapshot_id,
                    "file": path.name,
                    "sha256": sha,
                    "rows": len(out),
                    "series": int(out["unique_id"].nunique()),
                    **({"inventory": inventory} if inventory is not None else {}),
                }
            ]
        )
    finally:
        w.close()
    return path


@dataclass
class Issued:
    """Forecasts issued in a window: one row per (version, series, period, step)."""

    frame: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    requests: int = 0  # served answers
    batches: int = 0
    segments_read: int = 0
    latency_ms: dict[str, list[float]] = field(default_factory=dict)  # version -> latencies


def _served_rows(rec: dict[str, Any], levels: list[int]) -> pd.DataFrame | None:
    if "ds" not in rec:  # an answer recorded before the periods were
        return None
    ids = rec.get("series_order") or rec["series"]
    parts = []
    for i, uid in enumerate(ids):
        n = len(rec["ds"][i])
        part: dict[str, Any] = {
            "unique_id": [uid] * n,
            "ds": pd.to_datetime(rec["ds"][i]),
            "step": rec["steps"][i],
            "forecast": rec["forecasts"][i],
        }
        for lv in levels:
            b = np.asarray(rec["intervals"][str(lv)][i], dtype=float).reshape(n, 2)
            part[f"lo-{lv}"], part[f"hi-{lv}"] = b[:, 0], b[:, 1]
        parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True) if parts else None


def last_batch(ws: Workspace, model: str) -> dict[str, Any] | None:
    """The latest batch run's audit record of ``model`` (the report's inventory figures)."""
    from engine.audit import read_records

    root = ws.audit / APP
    if not root.is_dir():
        return None
    recs = [r for r in read_records(root, kind="forecast_batch") if r.get("model") == model]
    return max(recs, key=lambda r: float(r.get("time") or 0.0)) if recs else None


def issued(ws: Workspace, t_from: float, t_to: float, levels: list[int]) -> Issued:
    """Every forecast issued in ``[t_from, t_to)``, with what verifying the log found."""
    from engine.audit import read_records, verify

    root = ws.audit / APP
    cols = ["unique_id", "ds", "step", "forecast", *_bound_cols(levels)]
    empty = pd.DataFrame(columns=[*cols, "version", "issued_at", "source"])
    if not root.is_dir():
        return Issued(empty)
    v = verify(root)
    res = Issued(empty, problems=list(v.problems), segments_read=len(v.segments))
    parts: list[pd.DataFrame] = []
    for rec in read_records(root, kind=None):
        kind, t = rec.get("kind"), float(rec.get("time") or 0.0)
        if kind not in ("forecast", "forecast_batch") or not t_from <= t < t_to:
            continue
        ver = str((rec.get("versions") or ["?"])[0])
        part: pd.DataFrame | None
        if kind == "forecast":
            res.requests += 1
            res.latency_ms.setdefault(ver, []).append(float(rec.get("latency_ms") or 0.0))
            part, source = _served_rows(rec, levels), "served"
        else:
            res.batches += 1
            p = issued_dir(ws) / str(rec["file"])
            data = p.read_bytes() if p.is_file() else b""
            if hashlib.sha256(data).hexdigest() != rec["sha256"]:
                res.problems.append(
                    f"batch forecasts {p.name}: "
                    + ("missing" if not data else "content does not match its audit record")
                    + " (rows not used)"
                )
                continue
            part, source = pd.read_parquet(p), "batch"
        if part is not None and len(part):
            parts.append(part[cols].assign(version=ver, issued_at=t, source=source))
    if parts:
        f = pd.concat(parts, ignore_index=True).sort_values("issued_at", kind="stable")
        f["ds"] = pd.to_datetime(f["ds"])
        res.frame = f.drop_duplicates(KEY, keep="last").reset_index(drop=True)
    return res


# ---- statistics ------------------------------------------------------------------------


def _percentiles(boot: np.ndarray, alpha: float) -> tuple[float | None, float | None]:
    b = boot[np.isfinite(boot)]
    if b.size < 10:
        return None, None
    lo, hi = np.quantile(b, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _weights(sid: np.ndarray, n_series: int, b: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weights per row (b x rows): whole series resampled when there are enough
    of them, else points resampled within each series."""
    if n_series >= MIN_SERIES_BOOTSTRAP:
        w = rng.multinomial(n_series, np.full(n_series, 1.0 / n_series), size=b)
        return w[:, sid].astype(float)
    out = np.zeros((b, sid.size))
    for s in range(n_series):
        rows = np.flatnonzero(sid == s)
        out[:, rows] = rng.multinomial(rows.size, np.full(rows.size, 1.0 / rows.size), size=b)
    return out


def quality(
    df: pd.DataFrame,
    levels: list[int],
    alpha: float,
    *,
    issued_points: int,
    reference: pd.Series | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> ForecastQuality:
    """Realized accuracy of the rows of ``df`` (unique_id, y, forecast, scale, lo-/hi-
    per level) with their bootstrap intervals; ``reference``: unique_id -> the backtest's
    held-out MASE, for the ratio."""
    sid, uniq = pd.factorize(df["unique_id"], sort=False)
    s_n = len(uniq)
    y = df["y"].to_numpy(dtype=float)
    f = df["forecast"].to_numpy(dtype=float)
    e = np.abs(y - f) / df["scale"].to_numpy(dtype=float)
    n_pts = y.size
    share = Stat.of(n_pts / issued_points if issued_points else None, n=issued_points)
    if n_pts == 0:
        return ForecastQuality(
            series=0,
            points=0,
            issued_points=issued_points,
            actuals_share=share,
            mase=Stat(),
            bias=Stat(),
        )
    cnt = np.bincount(sid, minlength=s_n).astype(float)
    rng = np.random.default_rng(seed)
    w = _weights(sid, s_n, n_boot, rng)

    def per_series(weights: np.ndarray, v: np.ndarray) -> np.ndarray:  # (b, series) sums
        return np.stack([np.bincount(sid, weights=row * v, minlength=s_n) for row in weights])

    # MASE: the mean over series of each series' mean scaled error
    mase = float(np.mean(np.bincount(sid, weights=e, minlength=s_n) / cnt))
    if s_n >= MIN_SERIES_BOOTSTRAP:  # a series drawn k times counts k times
        ws_ = w[:, np.unique(sid, return_index=True)[1]]  # per-series draw counts
        per = np.bincount(sid, weights=e, minlength=s_n) / cnt
        mase_b = (ws_ @ per) / s_n
    else:
        num, den = per_series(w, e), per_series(w, np.ones_like(e))
        with np.errstate(invalid="ignore", divide="ignore"):
            mase_b = np.nanmean(num / den, axis=1)
    mase_stat = Stat.of(mase, *_percentiles(mase_b, alpha), n=n_pts)

    d = f - y
    tot = float(np.abs(y).sum())
    bias = float(d.sum() / tot) if tot > 0 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        bias_b = (w @ d) / (w @ np.abs(y))
    out = ForecastQuality(
        series=s_n,
        points=n_pts,
        issued_points=issued_points,
        actuals_share=share,
        mase=mase_stat,
        bias=Stat.of(bias, *_percentiles(bias_b, alpha), n=n_pts),
    )
    wsum = w.sum(axis=1)
    for lv in levels:
        inside = (
            (y >= df[f"lo-{lv}"].to_numpy(float)) & (y <= df[f"hi-{lv}"].to_numpy(float))
        ).astype(float)
        from engine.monitor.stats import rate

        # Wilson's interval on the points, never degenerate (a bootstrap of an all-inside
        # sample says [100%, 100%]); with enough series, widened to the bootstrap over
        # series where that is wider (the points of a series are correlated)
        st = rate(float(inside.sum()), n_pts, alpha)
        if s_n >= MIN_SERIES_BOOTSTRAP and st.low is not None and st.high is not None:
            lo, hi = _percentiles((w @ inside) / wsum, alpha)
            if lo is not None and hi is not None:
                st = Stat.of(st.estimate, min(lo, st.low), max(hi, st.high), n=n_pts)
        out.coverage[str(lv)] = st
        if lv in (80, 95):
            setattr(out, f"coverage_{lv}", st)
    if reference is not None:
        ref = reference.reindex(uniq).to_numpy(dtype=float)
        ok = np.isfinite(ref)
        if ok.any():
            r = float(ref[ok].mean())
            out.reference_mase = r
            if r > 0:
                out.mase_ratio = Stat.of(
                    mase / r,
                    None if mase_stat.low is None else mase_stat.low / r,
                    None if mase_stat.high is None else mase_stat.high / r,
                    n=n_pts,
                )
    return out


# ---- one version's reference: its scale and backtest ----------------------------------


@dataclass
class Reference:
    scale: dict[str, float]
    holdout_mase: pd.Series  # unique_id -> backtest held-out MASE
    holdout_coverage: dict[str, float]


def load_reference(ws: Workspace, model: str, version: str) -> Reference | None:
    """The version's training scale and backtest, from its run (cached: versions are
    immutable)."""
    from engine.monitor.store import monitor_dir

    cache = monitor_dir(ws) / "profiles" / f"forecast-{model}-v{version}.json"
    if cache.is_file():
        d = json.loads(cache.read_text())
    else:
        import mlflow

        from engine.registry.models import get_version

        try:
            run_id = get_version(model, version).run_id
            fj = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/forecaster.json"))
            card = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{CARD}"))
            per = pd.read_parquet(
                mlflow.artifacts.download_artifacts(f"runs:/{run_id}/per_series.parquet")
            )
        except Exception:  # not a forecasting version, or its run is gone
            return None
        d = {
            "scale": fj["scale"],
            "holdout_mase": {
                str(u): float(m)
                for u, m in zip(per["unique_id"], per["holdout_mase"], strict=True)
                if np.isfinite(m)
            },
            "holdout_coverage": card["holdout"]["coverage"],
        }
        atomic_write_bytes(cache, json.dumps(d).encode())
    return Reference(
        {str(k): float(v) for k, v in d["scale"].items()},
        pd.Series(d["holdout_mase"], dtype=float),
        {str(k): float(v) for k, v in d["holdout_coverage"].items()},
    )


def group_labels(proj: ForecastProject, ws: Workspace) -> dict[str, pd.Series]:
    """column -> (unique_id -> value) for each monitor_by column."""
    from engine.forecast.panel import read_series_table, series_id

    fc = proj.forecast
    cols = fc.groups_by
    if not cols:
        return {}
    t = read_series_table(proj, ws.root)
    t = t.assign(unique_id=series_id(t, fc.series)).drop_duplicates("unique_id")
    return {c: t.set_index("unique_id")[c].astype(str) for c in cols}


def version_quality(
    frame: pd.DataFrame,
    ref: Reference,
    groups: dict[str, pd.Series],
    levels: list[int],
    alpha: float,
) -> dict[str, ForecastQuality]:
    """Per group of series: the quality of one version's issued forecasts (``frame``:
    issued rows with ``y`` joined, NaN where the actual has not arrived)."""
    med = float(np.median(list(ref.scale.values()))) if ref.scale else 1.0
    frame = frame.assign(scale=frame["unique_id"].map(ref.scale).fillna(med).to_numpy())
    have = frame["y"].notna().to_numpy()
    out = {
        "all": quality(
            frame[have], levels, alpha, issued_points=len(frame), reference=ref.holdout_mase
        )
    }
    for col, lab in groups.items():
        g = frame["unique_id"].map(lab).fillna("?").to_numpy()
        for val in sorted(set(g)):
            m = g == val
            out[f"{col}={val}"] = quality(
                frame[m & have],
                levels,
                alpha,
                issued_points=int(m.sum()),
                reference=ref.holdout_mase,
            )
    return out


# ---- one monitor run -------------------------------------------------------------------


def monitor_forecast(
    proj: ForecastProject, ws: Workspace, t_from: float, t_to: float
) -> MonitorResult:
    """The forecasts issued in ``[t_from, t_to)`` scored against the actuals known now: a
    :class:`MonitorResult` whose versions carry ``forecast`` (group -> quality)."""
    from engine.monitor.result import (
        AuditRead,
        Concept,
        LabelsJoined,
        ScoreStats,
        TimeWindow,
        Traffic,
        VersionResult,
    )
    from engine.monitor.run import iso
    from engine.monitor.stats import latency
    from engine.tracking import use_workspace

    t0 = time.perf_counter()
    fc, mc = proj.forecast, proj.monitor
    iss = issued(ws, t_from, t_to, fc.levels)
    result = MonitorResult(
        run_id=time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6],
        project=proj.name,
        model=fc.model_name,
        window=TimeWindow.model_validate(
            {"from": t_from, "to": t_to, "from_iso": iso(t_from), "to_iso": iso(t_to)}
        ),
        generated_at=iso(time.time()),
        audit=AuditRead(
            folder=str(ws.audit / APP),
            segments_read=iss.segments_read,
            problems=iss.problems,
            chain_ok=not iss.problems,
            inputs_logged=True,
        ),
        traffic=Traffic(requests=iss.requests + iss.batches, rows=len(iss.frame)),
        no_traffic=iss.frame.empty,
    )
    if iss.frame.empty:
        result.seconds = {"total": time.perf_counter() - t0}
        return result
    act = actuals(proj, ws)
    joined = iss.frame.merge(act, on=["unique_id", "ds"], how="left")
    result.labels = LabelsJoined(available=len(act), joined_rows=int(joined["y"].notna().sum()))
    groups = group_labels(proj, ws)
    use_workspace(ws)
    from engine.monitor.run import roles

    role_of = roles(ws, APP, fc.model_name)
    for v, part in joined.groupby("version", sort=True):
        ver = str(v)
        ref = load_reference(ws, fc.model_name, ver)
        lat = np.asarray(iss.latency_ms.get(ver, []), dtype=float)
        common: dict[str, Any] = {
            "role": role_of.get(ver, "other"),
            "rows": len(part),
            "requests": int(lat.size),
            "profile": ref is not None,
            "latency": latency(lat, mc.latency_slo_p95_ms),
            "concept": Concept(coverage=Stat(), labeled=int(part["y"].notna().sum())),
            "score": ScoreStats(decision_rate=Stat()),
        }
        if ref is None:
            result.models[ver] = VersionResult(
                **common, note="no backtest reference for this version: accuracy not measured"
            )
            continue
        result.models[ver] = VersionResult(
            **common, forecast=version_quality(part, ref, groups, fc.levels, mc.alpha)
        )
    result.seconds = {"total": time.perf_counter() - t0}
    return result
