"""The statistics of one model version's live traffic against its reference profile.

Every statistic is a :class:`engine.monitor.result.Stat` (``low``/``high`` None where
there is no interval); each function returns its section of the typed result: rules judge the interval, not the point (engine.monitor.rules). Intervals:

- rates (decision rate, null rate, unseen / out-of-range share): Wilson;
- mean score change: normal interval of the live mean (the reference, from far more rows,
  taken as fixed);
- variance change: normal interval of the live variance from its fourth moment
  (``var(s^2) ~ (m4 - s^4) / n``), which holds without assuming normal data;
- realized AUC: BCa bootstrap; correlation: Fisher z; ATE: Welch;
- fairness gaps: the simultaneous folded Newcombe intervals of engine.kernels.fairness;
  outcome-rate shift per group: Newcombe interval of live minus training rate.

Drift p-values (KS from the sketch's lower bracket, which can only make p larger;
chi-square for categoricals) are Benjamini-Hochberg adjusted across the features of a
version, at ``drift.fdr`` (engine.monitor.drift.decide: the rule ``insight drift`` uses too).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from engine.kernels._objects import value_counts
from engine.kernels.drift import chi2_counts, jensen_shannon_counts
from engine.kernels.intervals import fold, newcombe_diff, wilson, z_value
from engine.kernels.scores import calibration, confusion, lift_top
from engine.kernels.sketch import NumericSketch, drift_vs_sketch
from engine.monitor.result import (
    CategoricalFeature,
    Concept,
    Confusion,
    Fairness,
    Latency,
    NumericFeature,
    ScoreStats,
    Stat,
    Uplift,
)


def stat(
    estimate: float | None, low: float | None = None, high: float | None = None, n: int = 0
) -> Stat:
    return Stat.of(estimate, low, high, n)


def rate(k: float, n: int, alpha: float) -> Stat:
    if n == 0:
        return stat(None)
    lo, hi = wilson(k, n, z_value(alpha))
    return stat(k / n, lo, hi, n)


def numeric_feature(values: np.ndarray, ref: dict[str, Any], alpha: float) -> NumericFeature:
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    ok = x if finite.all() else x[finite]
    n = int(x.size)
    nulls = rate(n - ok.size, n, alpha).minus(ref["nulls"] / max(1, ref["n"]))
    if ok.size == 0 or "sketch" not in ref:
        return NumericFeature(rows=n, null_rate_change=nulls)
    d = drift_vs_sketch(NumericSketch.from_dict(ref["sketch"]), ok)
    outside = int(((ok < ref["min"]) | (ok > ref["max"])).sum())
    return NumericFeature(
        rows=n,
        null_rate_change=nulls,
        ks_low=d.ks_low,
        ks_err=d.ks_err,
        p_value=d.ks_pvalue,
        psi=stat(d.psi, n=ok.size),
        out_of_range_share=rate(outside, ok.size, alpha),
        variance_change=_variance_change(ok, ref, alpha),
        mean=float(np.mean(ok)),
    )


@njit(cache=True, nogil=True)
def _moments(x: np.ndarray) -> tuple[float, float, float]:
    """Mean, variance (ddof 1) and fourth central moment, without temporaries."""
    n = x.size
    mean = 0.0
    for i in range(n):
        mean += x[i]
    mean /= n
    m2 = 0.0
    m4 = 0.0
    for i in range(n):
        d = x[i] - mean
        d2 = d * d
        m2 += d2
        m4 += d2 * d2
    return mean, m2 / (n - 1), m4 / n


def _variance_change(ok: np.ndarray, ref: dict[str, Any], alpha: float) -> Stat:
    rv = float(ref.get("variance") or 0.0)
    if ok.size < 3 or rv <= 0:
        return stat(None, n=ok.size)
    _, s2, m4 = _moments(np.ascontiguousarray(ok, dtype=np.float64))
    se = math.sqrt(max(m4 - s2 * s2, 0.0) / ok.size)
    z = z_value(alpha)
    return stat(s2 / rv - 1, (s2 - z * se) / rv - 1, (s2 + z * se) / rv - 1, ok.size)


def categorical_feature(
    values: np.ndarray, ref: dict[str, Any], alpha: float
) -> CategoricalFeature:
    v = np.asarray(values, dtype=object)
    known = [k for k in ref["counts"]]
    vals, cnt, nulls = value_counts(v)  # by object identity first (engine.kernels._objects)
    n = int(v.size)
    counts: dict[str, int] = {}
    for x, c in zip(vals, cnt.tolist(), strict=True):
        counts[str(x)] = counts.get(str(x), 0) + int(c)
    present = n - nulls
    unseen = sum(c for k, c in counts.items() if k not in ref["counts"])
    out = CategoricalFeature(
        rows=n,
        null_rate_change=rate(nulls, n, alpha).minus(ref["nulls"] / max(1, ref["n"])),
        unseen_share=rate(unseen, present, alpha),
    )
    if not present:
        return out
    cats = known + sorted(k for k in counts if k not in ref["counts"])
    r = np.array([ref["counts"].get(k, 0) for k in cats], dtype=np.float64)
    c = np.array([counts.get(k, 0) for k in cats], dtype=np.float64)
    ch = chi2_counts(r, c)
    out.p_value, out.js = ch.pvalue, stat(jensen_shannon_counts(r, c), n=present)
    return out


def score_stats(
    scores: np.ndarray, decisions: np.ndarray, ref: dict[str, Any], alpha: float
) -> ScoreStats:
    s = np.asarray(scores, dtype=np.float64)
    dr = rate(int(np.sum(decisions)), s.size, alpha)
    if s.size == 0:
        return ScoreStats(decision_rate=dr)
    d = drift_vs_sketch(NumericSketch.from_dict(ref["sketch"]), s)
    mean, rm = float(s.mean()), float(ref["mean"])
    se = float(s.std(ddof=1) / math.sqrt(s.size)) if s.size > 1 else float("nan")
    z = z_value(alpha)
    return ScoreStats(
        decision_rate=dr,
        psi=stat(d.psi, n=s.size),
        ks_low=d.ks_low,
        p_value=d.ks_pvalue,
        mean=mean,
        mean_change=stat(mean / rm - 1, (mean - z * se) / rm - 1, (mean + z * se) / rm - 1, s.size)
        if rm > 0
        else stat(None),
    )


def latency(ms: np.ndarray, slo_p95: float) -> Latency:
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return Latency(requests=0)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return Latency(
        requests=int(a.size),
        p50_ms=stat(p50, n=a.size),
        p95_ms=stat(p95, n=a.size),
        p99_ms=stat(p99, n=a.size),
        slo_p95_ms=slo_p95,
        slo_met=bool(p95 <= slo_p95),
    )


def concept(
    y: np.ndarray,
    s: np.ndarray,
    ref: dict[str, Any],
    alpha: float,
    rows: int,
    decisions: np.ndarray | None = None,
) -> Concept:
    """Realized quality on the labeled rows (``y`` NaN where no label arrived): coverage,
    AUC, score-label correlation, calibration, label rate, lift in the top decile and, with
    ``decisions``, the confusion counts (the report's ROI)."""
    from engine.kernels.metrics import auc_bootstrap

    lab = np.isfinite(y)
    n = int(lab.sum())
    out = Concept(coverage=rate(n, rows, alpha), labeled=n)
    yl, sl = y[lab], s[lab]
    if decisions is not None and n:
        out.confusion = Confusion(**confusion(yl, decisions[lab]))
    if n < 10 or yl.min() == yl.max():
        return out
    a = auc_bootstrap(yl, sl, n_boot=300, alpha=alpha, seed=0)
    r = float(np.corrcoef(sl, yl)[0, 1]) if sl.std() > 0 else float("nan")
    z = z_value(alpha)
    if math.isfinite(r) and n > 3 and abs(r) < 1:
        zr, se = math.atanh(r), 1 / math.sqrt(n - 3)
        lo, hi = math.tanh(zr - z * se), math.tanh(zr + z * se)
    else:
        lo = hi = r
    out.auc, out.correlation = stat(a.estimate, a.low, a.high, n), stat(r, lo, hi, n)
    rc = (ref.get("concept") or {}).get("correlation")
    if rc:
        out.correlation_ratio = stat(r / rc, lo / rc, hi / rc, n)
    out.ece = stat(calibration_ece(yl, sl), n=n)
    out.label_rate = rate(int(yl.sum()), n, alpha)
    out.lift_top_decile = stat(lift_top(yl, sl), n=max(1, round(0.1 * n)))
    return out


def fairness_stats(
    groups: np.ndarray,
    decisions: np.ndarray,
    y: np.ndarray,
    ref: dict[str, Any],
    alpha: float,
    min_rows: int,
) -> Fairness:
    """Per sensitive attribute: selection-rate gap, outcome-rate gap (labeled rows) and the
    largest shift of a group's outcome rate from training; groups below ``min_rows`` rows
    are left out and named."""
    from engine.kernels.fairness import fairness

    g = np.asarray(groups, dtype=object)
    known = np.array([v is not None for v in g])
    small: list[str] = []
    if known.any():
        names, counts = np.unique(g[known].astype(str), return_counts=True)
        small = [
            str(n) for n, c in zip(names.tolist(), counts.tolist(), strict=True) if c < min_rows
        ]
    out = Fairness(rows_with_group=int(known.sum()), groups_below_min_rows=small)
    keep = known & ~np.isin(g.astype(str), small)
    if len({str(v) for v in g[keep]}) >= 2:
        f = fairness(
            np.zeros(int(keep.sum()), int),
            decisions[keep].astype(int),
            g[keep].astype(str),
            "demographic_parity_difference",
            alpha=alpha,
        )
        out.selection_rate_gap = stat(f.value, f.low, f.high, int(keep.sum()))
        out.selection_rate_by_group = {k: v["selection_rate"] for k, v in f.by_group.items()}
    lab = keep & np.isfinite(y)
    if len({str(v) for v in g[lab]}) >= 2:
        yy = y[lab].astype(int)
        f = fairness(
            np.zeros(yy.size, int),
            yy,
            g[lab].astype(str),
            "demographic_parity_difference",
            alpha=alpha,
        )
        out.outcome_rate_gap = stat(f.value, f.low, f.high, int(lab.sum()))
        per: dict[str, Stat] = {}
        shifts = []
        z = z_value(alpha / max(1, len(ref)))
        for name, r in ref.items():
            m = lab & (g.astype(str) == name)
            if m.sum() < min_rows or r["n"] == 0:
                continue
            iv = newcombe_diff(
                float(y[m].sum()), float(m.sum()), float(r["positives"]), float(r["n"]), z
            )
            per[name] = stat(iv.estimate, iv.low, iv.high, int(m.sum()))
            shifts.append(fold(iv))
        out.outcome_rate_shift_by_group = per
        if shifts:
            out.outcome_rate_shift = stat(
                max(s.estimate for s in shifts),
                max(s.low for s in shifts),
                max(s.high for s in shifts),
                int(lab.sum()),
            )
    return out


def uplift_stats(y: np.ndarray, t: np.ndarray, ref: dict[str, Any] | None, alpha: float) -> Uplift:
    from engine.kernels.effects import ate

    ok = np.isfinite(y) & np.isfinite(t)
    n = int(ok.sum())
    out = Uplift(rows=n)
    if n < 4 or len(np.unique(t[ok])) < 2:
        return out
    try:
        a = ate(y[ok], t[ok].astype(int), alpha=alpha)
    except ValueError:
        return out
    out.ate = stat(a.estimate, a.low, a.high, n)
    if ref and ref.get("estimate"):
        r = float(ref["estimate"])
        out.ate_change = stat(
            (a.estimate - r) / abs(r), (a.low - r) / abs(r), (a.high - r) / abs(r), n
        )
    return out


def calibration_ece(y: np.ndarray, p: np.ndarray) -> float:
    """The expected calibration error (engine.kernels.scores.calibration)."""
    return float(calibration(y, p)["ece"])
