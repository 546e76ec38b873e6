"""Targeting: out-of-fold uplift, the segment table and the budgeted policy, against
CausalML and scikit-uplift on the same data.

Full: 1,000,000 customers x 20 features x 3 arms (a control and two treatments, assigned
at random, heterogeneous effects). Smoke: 20,000.

1. **Out-of-fold uplift** (5-fold cross-fitting, T-learner, XGBoost 50 trees of depth 4,
   every core): engine.targeting.learners.crossfit against CausalML's BaseTClassifier with
   the same XGBoost model, fitted on the same folds (CausalML has no cross-fitting of its
   own: the loop is the benchmark's). Equal: the same uplift for every row (1e-6).
2. **The segment table** (10 segments x 2 arms, lift, Welch/Newcombe CI, BH, 1,000
   stratified bootstrap resamples): engine.targeting.segments.segment_table against (a)
   scikit-uplift's ``uplift_by_percentile`` (the lift per decile, no interval: the
   segments are its deciles, so the lifts must be equal) and (b) the same 1,000-resample
   bootstrap in pandas/NumPy (the intervals must agree within Monte Carlo error).
3. **The policy at 20 budgets** (the doubly robust profit with its CI at each, every arm):
   engine.targeting.policy.profit_curve against CausalML's ``get_qini`` (the incremental
   outcome of one arm at every row count, no budget, no cost, no interval). Equal: the
   engine's Qini points at the 20 budgets equal CausalML's curve there.

Where the time goes is printed and kept in the results (``breakdown``).
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._harness import case, measure, parser, write

HP = {"max_depth": 4, "n_estimators": 50, "eta": 0.2}


def _data(n: int, seed: int = 0) -> Any:
    from engine.targeting.campaign import Campaign

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 20))
    arm = rng.integers(0, 3, n)
    base = 0.1 + 0.05 * np.tanh(x[:, 0])
    tau = np.column_stack(
        [0.04 * (x[:, 1] > 0) + 0.02 * x[:, 2].clip(-1, 1), 0.03 * (x[:, 3] > 0.5) - 0.01]
    )
    p = base + np.where(arm == 1, tau[:, 0], np.where(arm == 2, tau[:, 1], 0.0))
    y = (rng.random(n) < p.clip(0, 1)).astype(np.float64)
    cols = [f"x{i}" for i in range(20)]
    c = Campaign(
        pd.DataFrame(x, columns=cols), arm.astype(np.int64), y, ["control", "A", "B"], "binary"
    )
    return c


def _causalml_oof(c: Any, fold: np.ndarray, threads: int) -> np.ndarray:
    """CausalML's T-learner, fitted on the other folds, predicting each fold."""
    from causalml.inference.meta import BaseTClassifier

    from engine.targeting.learners import base_model

    names = np.asarray(c.arms, dtype=object)[c.arm]
    out = np.empty((c.arm.size, 2))
    for f in range(int(fold.max()) + 1):
        tr, te = fold != f, fold == f
        m = BaseTClassifier(
            learner=base_model("classifier", HP, 0, threads), control_name="control"
        )
        m.fit(c.x[tr].to_numpy(), names[tr], c.y[tr])
        out[te] = m.predict(c.x[te].to_numpy())
    return out


def _bootstrap_table(
    y: np.ndarray, arm: np.ndarray, seg: np.ndarray, n_boot: int, seed: int
) -> np.ndarray:
    """pandas/NumPy: per (segment, arm) the 2.5% and 97.5% lift quantiles of a stratified
    bootstrap (the reference of the segment table's intervals)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"y": y, "a": arm, "s": seg})
    out = np.empty((int(seg.max()) + 1, 2, 2))
    for s in range(out.shape[0]):
        part = df[df["s"] == s]
        ctrl = part.loc[part["a"] == 0, "y"].to_numpy()
        mc = rng.choice(ctrl, (n_boot, ctrl.size)).mean(axis=1)
        for k in (1, 2):
            tr = part.loc[part["a"] == k, "y"].to_numpy()
            mt = rng.choice(tr, (n_boot, tr.size)).mean(axis=1)
            out[s, k - 1] = np.quantile(mt - mc, [0.025, 0.975])
    return out


def main() -> None:
    ap = parser(__doc__ or "")
    args = ap.parse_args()
    n = 4_000 if args.smoke else 1_000_000
    threads = os.cpu_count() or 1
    c = _data(n)
    from engine.targeting import learners, policy
    from engine.targeting.campaign import Campaign
    from engine.targeting.segments import Segmentation, segment_table

    cases = []
    breakdown: dict[str, float] = {}
    # 1. out-of-fold uplift (full size: one timed run each, warmed on the smoke size)
    warm = _data(2000, 1)
    learners.crossfit(warm, "t_learner", HP, 5, 0, threads)
    fold = learners.fold_ids(c.arm, 5, 0)
    reps = 1  # warmed on the small table above; the full size is one long run per side
    t_eng = measure(
        lambda: learners.crossfit(c, "t_learner", HP, 5, 0, threads), repeat=reps, warmup=0
    )
    cf = t_eng.result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _causalml_oof(warm, learners.fold_ids(warm.arm, 5, 0), threads)
        t_ref = measure(lambda: _causalml_oof(c, fold, threads), repeat=reps, warmup=0)
    same = bool(np.allclose(cf.tau, t_ref.result, atol=1e-6))
    t0 = time.perf_counter()
    m = learners.fit(c.subset(np.flatnonzero(fold != 0)), "t_learner", HP, 0, threads)
    breakdown["fit one fold's 3 outcome models (4/5 of the rows)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    m.uplift(c.x.iloc[np.flatnonzero(fold == 0)])
    breakdown["predict one fold, both arms"] = time.perf_counter() - t0
    cases.append(
        case(
            f"out-of-fold uplift, T-learner, 5 folds, {n:,} x 20 x 3 arms",
            t_eng,
            "CausalML BaseTClassifier, same folds and XGBoost",
            t_ref,
            same,
            breakdown_s=dict(breakdown),
            threads=threads,
        )
    )
    # 2. the segment table on the deciles of arm A's uplift
    dec = pd.qcut(-cf.tau[:, 0], 10, labels=False, duplicates="drop").astype(np.int64)
    seg = Segmentation("deciles", dec, [f"decile {i + 1}" for i in range(int(dec.max()) + 1)], "")
    table = lambda: segment_table(c, seg, n_boot=1000, seed=0)  # noqa: E731
    t_eng = measure(table, repeat=3, warmup=1)
    rows = t_eng.result
    from sklift.metrics import uplift_by_percentile

    on = c.arm != 2
    yy, tt, ss = c.y[on], (c.arm[on] == 1).astype(int), cf.tau[on, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_ref = measure(lambda: uplift_by_percentile(yy, ss, tt, bins=10), repeat=3, warmup=1)
    sk = t_ref.result["uplift"].to_numpy()
    # sklift cuts percentiles of the arm's and control's rows together: the same deciles
    # when cut on those rows; compare with the engine's table cut the same way
    c2 = Campaign(
        c.x[on].reset_index(drop=True),
        (c.arm[on] == 1).astype(np.int64),
        yy,
        ["control", "A"],
        "binary",
    )
    # scikit-uplift's deciles: a reversed mergesort of the scores, cut by np.array_split
    d2 = np.empty(ss.size, dtype=np.int64)
    for i, part in enumerate(np.array_split(np.argsort(ss, kind="mergesort")[::-1], 10)):
        d2[part] = i
    seg2 = Segmentation("deciles", d2, [f"{i}" for i in range(10)], "")
    ours = np.asarray([r["lift"] for r in segment_table(c2, seg2, n_boot=100)])
    cases.append(
        case(
            "segment table: 10 segments x 2 arms, 1,000 bootstrap resamples",
            t_eng,
            "scikit-uplift uplift_by_percentile (lifts only, one arm)",
            t_ref,
            bool(np.allclose(ours, sk, atol=1e-9)),
        )
    )
    t_ref2 = measure(
        lambda: _bootstrap_table(c.y, c.arm, dec, 1000, 0),
        repeat=3 if args.smoke else 1,
        warmup=1 if args.smoke else 0,
    )
    ref_ci = t_ref2.result
    ours_ci = np.asarray([[r["boot_low"], r["boot_high"]] for r in rows]).reshape(ref_ci.shape)
    width = ref_ci[..., 1] - ref_ci[..., 0]
    close = bool(np.all(np.abs(ours_ci - ref_ci) < 0.15 * width[..., None]))
    cases.append(
        case(
            "segment table: 10 segments x 2 arms, 1,000 bootstrap resamples",
            t_eng,
            "pandas/NumPy stratified bootstrap, 1,000 resamples",
            t_ref2,
            close,
        )
    )
    # 3. the policy at 20 budgets
    econ = policy.Economics(30.0, np.array([0.0, 1.0, 0.5]))

    def run_policy() -> Any:
        g = policy.dr_scores(c.y, c.arm, cf.mu, c.shares())
        return policy.profit_curve(cf.tau, g, econ, points=20)

    t_eng = measure(run_policy, repeat=3, warmup=1)
    from causalml.metrics import get_qini

    from engine.kernels.lift import qini_curve_any

    # XGBoost's scores tie a lot; CausalML puts a point at every row whatever the order
    # within ties, the engine only between distinct scores: compare on tie-free scores
    ss = ss + np.random.default_rng(1).uniform(0, 1e-9, ss.size)
    frame = pd.DataFrame({"y": yy, "w": tt, "m": ss})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_ref = measure(lambda: get_qini(frame, normalize=False), repeat=3, warmup=1)
    ref_q = t_ref.result["m"].to_numpy()
    xq, qq = qini_curve_any(yy, tt, ss)
    at = np.linspace(0, ss.size, 20).round().astype(int)
    ours_q = np.interp(at, xq, qq)
    seen = np.r_[0, np.cumsum(1 - tt[np.argsort(-ss, kind="stable")])] > 0
    ok = seen[at]
    cases.append(
        case(
            f"policy at 20 budgets, {n:,} rows, 2 arms + control",
            t_eng,
            "CausalML get_qini (one arm, every row count, no budget)",
            t_ref,
            bool(np.allclose(ours_q[ok], ref_q[at][ok], rtol=1e-9, atol=1e-6)),
        )
    )
    for k, v in breakdown.items():
        print(f"  where the out-of-fold time goes: {k}: {v:.2f} s")
    write("target", args.smoke, cases, args.out)


if __name__ == "__main__":
    main()
