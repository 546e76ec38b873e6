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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from engine.kernels._objects import value_counts
from engine.kernels.drift import chi2_counts, jensen_shannon_counts
from engine.kernels.intervals import fold, newcombe_diff, wilson, z_value
from engine.kernels.scores import calibration, confusion, lift_top
from engine.kernels.sketch import NumericSketch, drift_from_counts, sketch_counts
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


@dataclass
class Moments:
    """Count, mean and central moment sums (``m2 = sum (x - mean)^2``, m3, m4) of finite
    values: the parts' moments merge exactly in real arithmetic (Pebay's formulas), so a
    window's variance follows from its segments' up to float rounding."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        if x.size == 0:
            return cls()
        return cls(int(x.size), *_central(np.ascontiguousarray(x, dtype=np.float64)))

    def merge(self, o: Moments) -> Moments:
        if o.n == 0:
            return self
        if self.n == 0:
            return o
        na, nb = float(self.n), float(o.n)
        n = na + nb
        d = o.mean - self.mean
        d2 = d * d
        mean = self.mean + d * nb / n
        m2 = self.m2 + o.m2 + d2 * na * nb / n
        m3 = (
            self.m3
            + o.m3
            + d * d2 * na * nb * (na - nb) / (n * n)
            + 3.0 * d * (na * o.m2 - nb * self.m2) / n
        )
        m4 = (
            self.m4
            + o.m4
            + d2 * d2 * na * nb * (na * na - na * nb + nb * nb) / (n * n * n)
            + 6.0 * d2 * (na * na * o.m2 + nb * nb * self.m2) / (n * n)
            + 4.0 * d * (na * o.m3 - nb * self.m3) / n
        )
        return Moments(self.n + o.n, mean, m2, m3, m4)


@njit(cache=True, nogil=True)
def _central(x: np.ndarray) -> tuple[float, float, float, float]:
    """Mean and the sums of the 2nd, 3rd and 4th powers of deviations, no temporaries."""
    n = x.size
    mean = 0.0
    for i in range(n):
        mean += x[i]
    mean /= n
    m2 = 0.0
    m3 = 0.0
    m4 = 0.0
    for i in range(n):
        d = x[i] - mean
        d2 = d * d
        m2 += d2
        m3 += d2 * d
        m4 += d2 * d2
    return mean, m2, m3, m4


@dataclass
class NumericPart:
    """What a numeric feature's statistics need from part of a window: mergeable."""

    rows: int
    inner: np.ndarray | None = None  # counts on the reference sketch's fine bins
    atom: np.ndarray | None = None
    nan: int = 0
    outside: int = 0
    moments: Moments = field(default_factory=Moments)

    def merge(self, o: NumericPart) -> NumericPart:
        if self.inner is None or o.inner is None or self.atom is None or o.atom is None:
            inner, atom = (
                self.inner if o.inner is None else o.inner,
                (self.atom if o.atom is None else o.atom),
            )
        else:
            inner, atom = self.inner + o.inner, self.atom + o.atom
        return NumericPart(
            self.rows + o.rows,
            inner,
            atom,
            self.nan + o.nan,
            self.outside + o.outside,
            self.moments.merge(o.moments),
        )


_SKETCHES: dict[int, tuple[dict[str, Any], NumericSketch]] = {}


def sketch_of(d: dict[str, Any]) -> NumericSketch:
    """The sketch of a profile's dict, built once per dict (its binning table costs ~2 ms,
    and the monitor bins every feature of every segment against it)."""
    hit = _SKETCHES.get(id(d))
    if hit is not None and hit[0] is d:
        return hit[1]
    sk = NumericSketch.from_dict(d)
    if len(_SKETCHES) > 4096:
        _SKETCHES.clear()
    _SKETCHES[id(d)] = (d, sk)
    return sk


def numeric_part(values: np.ndarray, ref: dict[str, Any]) -> NumericPart:
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    ok = x if finite.all() else x[finite]
    out = NumericPart(rows=int(x.size), nan=int(x.size - ok.size))
    if ok.size == 0 or "sketch" not in ref:
        return out
    inner, atom, _ = sketch_counts(sketch_of(ref["sketch"]), ok)
    out.inner, out.atom = inner, atom
    out.outside = int(((ok < ref["min"]) | (ok > ref["max"])).sum())
    out.moments = Moments.of(ok)
    return out


def numeric_feature(values: np.ndarray, ref: dict[str, Any], alpha: float) -> NumericFeature:
    return numeric_from_part(numeric_part(values, ref), ref, alpha)


def numeric_from_part(p: NumericPart, ref: dict[str, Any], alpha: float) -> NumericFeature:
    n = p.rows
    finite = n - p.nan
    nulls = rate(p.nan, n, alpha).minus(ref["nulls"] / max(1, ref["n"]))
    if finite == 0 or "sketch" not in ref or p.inner is None or p.atom is None:
        return NumericFeature(rows=n, null_rate_change=nulls)
    d = drift_from_counts(sketch_of(ref["sketch"]), p.inner, p.atom, 0, n_values=finite)
    return NumericFeature(
        rows=n,
        null_rate_change=nulls,
        ks_low=d.ks_low,
        ks_err=d.ks_err,
        p_value=d.ks_pvalue,
        psi=stat(d.psi, n=finite),
        out_of_range_share=rate(p.outside, finite, alpha),
        variance_change=_variance_change(p.moments, ref, alpha),
        mean=float(p.moments.mean),
    )


def _variance_change(mo: Moments, ref: dict[str, Any], alpha: float) -> Stat:
    rv = float(ref.get("variance") or 0.0)
    if mo.n < 3 or rv <= 0:
        return stat(None, n=mo.n)
    s2, m4 = mo.m2 / (mo.n - 1), mo.m4 / mo.n
    se = math.sqrt(max(m4 - s2 * s2, 0.0) / mo.n)
    z = z_value(alpha)
    return stat(s2 / rv - 1, (s2 - z * se) / rv - 1, (s2 + z * se) / rv - 1, mo.n)


@dataclass
class CategoricalPart:
    rows: int
    nulls: int
    counts: dict[str, int]

    def merge(self, o: CategoricalPart) -> CategoricalPart:
        c = dict(self.counts)
        for k, v in o.counts.items():
            c[k] = c.get(k, 0) + v
        return CategoricalPart(self.rows + o.rows, self.nulls + o.nulls, c)


def categorical_part(values: np.ndarray) -> CategoricalPart:
    v = np.asarray(values, dtype=object)
    vals, cnt, nulls = value_counts(v)  # by object identity first (engine.kernels._objects)
    counts: dict[str, int] = {}
    for x, c in zip(vals, cnt.tolist(), strict=True):
        counts[str(x)] = counts.get(str(x), 0) + int(c)
    return CategoricalPart(int(v.size), int(nulls), counts)


def categorical_feature(
    values: np.ndarray, ref: dict[str, Any], alpha: float
) -> CategoricalFeature:
    return categorical_from_part(categorical_part(values), ref, alpha)


def categorical_from_part(
    p: CategoricalPart, ref: dict[str, Any], alpha: float
) -> CategoricalFeature:
    known = [k for k in ref["counts"]]
    n, nulls, counts = p.rows, p.nulls, p.counts
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


@dataclass
class ScorePart:
    decisions: int
    scores: NumericPart

    def merge(self, o: ScorePart) -> ScorePart:
        return ScorePart(self.decisions + o.decisions, self.scores.merge(o.scores))


def score_part(scores: np.ndarray, decisions: np.ndarray, ref: dict[str, Any]) -> ScorePart:
    s = np.asarray(scores, dtype=np.float64)
    return ScorePart(
        int(np.sum(decisions)),
        numeric_part(s, {"sketch": ref["sketch"], "min": -np.inf, "max": np.inf}),
    )


def score_stats(
    scores: np.ndarray, decisions: np.ndarray, ref: dict[str, Any], alpha: float
) -> ScoreStats:
    return score_from_part(score_part(scores, decisions, ref), ref, alpha)


def score_from_part(p: ScorePart, ref: dict[str, Any], alpha: float) -> ScoreStats:
    n = p.scores.rows
    dr = rate(p.decisions, n, alpha)
    if n == 0 or p.scores.inner is None or p.scores.atom is None:
        return ScoreStats(decision_rate=dr)
    finite = n - p.scores.nan
    d = drift_from_counts(
        sketch_of(ref["sketch"]), p.scores.inner, p.scores.atom, 0, n_values=finite
    )
    mo = p.scores.moments
    mean, rm = float(mo.mean), float(ref["mean"])
    se = math.sqrt(mo.m2 / (mo.n - 1)) / math.sqrt(mo.n) if mo.n > 1 else float("nan")
    z = z_value(alpha)
    return ScoreStats(
        decision_rate=dr,
        psi=stat(d.psi, n=finite),
        ks_low=d.ks_low,
        p_value=d.ks_pvalue,
        mean=mean,
        mean_change=stat(mean / rm - 1, (mean - z * se) / rm - 1, (mean + z * se) / rm - 1, n)
        if rm > 0
        else stat(None),
    )


def latency(ms: np.ndarray, slo_p95: float) -> Latency:
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return Latency(requests=0)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return _latency_stats(int(a.size), float(p50), float(p95), float(p99), slo_p95)


def _latency_stats(n: int, p50: float, p95: float, p99: float, slo_p95: float) -> Latency:
    return Latency(
        requests=n,
        p50_ms=stat(p50, n=n),
        p95_ms=stat(p95, n=n),
        p99_ms=stat(p99, n=n),
        slo_p95_ms=slo_p95,
        slo_met=bool(p95 <= slo_p95),
    )


def latency_from_counts(values: np.ndarray, counts: np.ndarray, slo_p95: float) -> Latency:
    """:func:`latency` from distinct latencies (ascending) and their counts: the same
    percentiles as ``np.percentile`` over the expanded sample, bit for bit, without it."""
    n = int(counts.sum())
    if n == 0:
        return Latency(requests=0)
    p = percentiles_from_counts(values, counts, [50, 95, 99])
    return _latency_stats(n, p[0], p[1], p[2], slo_p95)


def percentiles_from_counts(values: np.ndarray, counts: np.ndarray, q: list[float]) -> list[float]:
    """``np.percentile(np.repeat(values, counts), q)`` (method 'linear') from the counts:
    the order statistics by cumulative count, then NumPy's own interpolation (its
    ``_lerp``, which takes the upper neighbour's side from t >= 0.5)."""
    n = int(counts.sum())
    ends = np.cumsum(counts)  # order statistic k (0-based) is values[searchsorted(ends, k + 1)]
    vi = np.true_divide(np.asarray(q, dtype=np.float64), 100) * (n - 1)
    prev = np.floor(vi)
    gamma = vi - prev
    lo = np.clip(prev.astype(np.int64), 0, n - 1)
    hi = np.clip(lo + 1, 0, n - 1)
    a = values[np.searchsorted(ends, lo + 1)]
    b = values[np.searchsorted(ends, hi + 1)]
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return [float(x) for x in out]


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
