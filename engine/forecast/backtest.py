"""Rolling-origin backtest, the per-series choice and the conformal intervals.

Windows: for each series, window ``k`` of ``W`` forecasts the ``h`` periods that start
``h + step * (W - 1 - k)`` periods before its end, from everything before them (so the last
window forecasts the series' last ``h`` periods). Every candidate (engine.forecast.models)
is scored on the periods whose value was recorded.

Scale (MASE's denominator): the in-sample mean absolute seasonal difference of the series
before its first window (lag ``season_length`` where two seasons fit, else lag 1; where it
is zero, a constant history, the mean absolute value; where that is zero too, 1).

Honest by construction:

- the **choice** per series is the candidate with the lowest MASE on the windows before
  the last ``holdout`` windows; those held-out windows then measure it against every
  single candidate;
- the **intervals** are split-conformal, per horizon step, on scale-free absolute errors
  ``|y - yhat| / scale`` pooled across series. The errors that calibrate them come from
  *cross-fitted* choices (window k's error is the error of the candidate chosen on the
  other calibration windows), so the choice's own selection does not shrink them; the
  quantile is the ``ceil((n + 1) * level) / n`` empirical one. Coverage is measured on the
  held-out windows.

For production the same procedure runs on all windows: the choice on all of them, the
intervals cross-fitted over all of them.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.config.forecast import ForecastConfig
from engine.forecast.models import (
    GLOBAL,
    add_global_to_ensemble,
    candidates,
    forecast_batch,
    positions_of,
)


def _positions(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    g = frame.groupby("unique_id", sort=False)
    return g.cumcount().to_numpy(), g["ds"].transform("size").to_numpy()


def series_scale(frame: pd.DataFrame, first_end: pd.Series, season_length: int) -> pd.Series:
    """MASE's scale per series from the history before its first window (see module)."""
    out = {}
    for uid, s in frame.groupby("unique_id", sort=False):
        y = s["y"].to_numpy(dtype=float)[: int(first_end[uid])]
        m = season_length if y.size >= 2 * season_length and season_length > 1 else 1
        d = np.abs(y[m:] - y[:-m]) if y.size > m else np.empty(0)
        d = d[np.isfinite(d)]
        sc = float(d.mean()) if d.size else 0.0
        if sc <= 0:
            a = np.abs(y[np.isfinite(y)])
            sc = float(a.mean()) if a.size and a.mean() > 0 else 1.0
        out[uid] = sc
    return pd.Series(out, name="scale")


def backtest_batch(frame: pd.DataFrame, fc_json: dict[str, Any]) -> pd.DataFrame:
    """Every window's forecasts of every candidate for the series of one batch: rows
    (unique_id, window, step, ds, y, observed, scale, <candidate>...)."""
    fc = ForecastConfig.model_validate(fc_json)
    frame = frame.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    pos, n = _positions(frame)
    h, step, w = fc.horizon, fc.step, fc.backtest.windows
    ends0 = n - h - step * (w - 1)  # first window's origin, per row
    first_end = pd.Series(ends0, index=frame["unique_id"]).groupby(level=0).first()
    scale = series_scale(frame, first_end, fc.season_length)
    parts = []
    for k in range(w):
        end = ends0 + step * k
        train = frame[pos < end]
        test = frame[(pos >= end) & (pos < end + h)]
        if test.empty:
            continue
        future = test[["unique_id", "ds", *fc.known]]
        res, _ = forecast_batch(
            train, future, h, fc.families, fc.season_length, fc.freq, fc.known, fc.ensemble
        )
        got = test[["unique_id", "ds", "y", "observed"]].merge(
            res, on=["unique_id", "ds"], how="left"
        )
        got.insert(1, "window", k)
        got.insert(2, "step", got.groupby("unique_id", sort=False).cumcount() + 1)
        parts.append(got)
    out = pd.concat(parts, ignore_index=True)
    out["scale"] = out["unique_id"].map(scale).to_numpy()
    return out


@dataclass
class Choice:
    """The per-series choice and the calibrated intervals, from some windows."""

    chosen: pd.Series  # unique_id -> candidate
    quantiles: dict[int, list[float]]  # level -> scale-free half-width per step 1..h
    calibration_errors: int  # errors behind each step's quantile (the smallest)
    margin: float = 0.0  # the choice margin used
    margin_cv: dict[float, float] = field(default_factory=dict)  # margin -> CV MASE
    picks: pd.DataFrame | None = None  # unique_id, window, pick: the cross-fitted choices


def _mase(bt: pd.DataFrame, cands: list[str]) -> pd.DataFrame:
    """MASE per series (rows) and candidate (columns) over the rows of ``bt``."""
    obs = bt[bt["observed"].to_numpy(dtype=bool)]
    err = obs[cands].sub(obs["y"], axis=0).abs().div(obs["scale"], axis=0)
    return err.groupby(obs["unique_id"], sort=False).mean()


def _pick(m: pd.DataFrame, cands: list[str], margin: float = 0.0) -> pd.Series:
    """Per series, the candidate of lowest MASE; but the candidate best over all series
    (lowest mean MASE) is kept unless another beats it on this series by more than
    ``margin`` (relative): a few windows are a noisy judge of one series, so a series
    leaves the common choice only on clear evidence."""
    filled = m[cands].fillna(np.inf)
    best = filled.idxmin(axis=1)
    common = str(m[cands].mean().idxmin())
    keep = filled[common] <= (1 + margin) * filled.min(axis=1)
    return pd.Series(np.where(keep, common, best), index=m.index, name="chosen")


def conformal_quantile(errors: np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ``ceil((n + 1) level)``-th smallest error (inf
    when n is too small for the level)."""
    e = np.sort(errors[np.isfinite(errors)])
    n = e.size
    k = math.ceil((n + 1) * level)
    return float(e[k - 1]) if 0 < k <= n else float("inf")


MARGINS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)


def cv_margin(use: pd.DataFrame, cands: list[str], windows: list[int]) -> tuple[float, dict]:
    """The choice margin with the lowest leave-one-window-out MASE: for each window, the
    choice made on the others is scored on it (one window: no evidence, the middle value)."""
    if len(windows) < 2:
        return 0.3, {}
    mases = {k: _mase(use[use["window"] == k], cands) for k in windows}
    score = {}
    for mg in MARGINS:
        vals = []
        for k in windows:
            pick = _pick(
                _mase(use[use["window"].isin([j for j in windows if j != k])], cands), cands, mg
            )
            m = mases[k]
            common = pick.index.intersection(m.index)
            vals.append(
                float(
                    np.nanmean(
                        m.loc[common].to_numpy()[
                            np.arange(len(common)), positions_of(cands, pick.loc[common])
                        ]
                    )
                )
            )
        score[mg] = float(np.mean(vals))
    return min(score, key=lambda x: score[x]), score


def choose(
    bt: pd.DataFrame,
    cands: list[str],
    windows: list[int],
    levels: list[int],
    margin: float | None = None,
) -> Choice:
    """The choice on ``windows`` and intervals cross-fitted over them (see module);
    ``margin`` None: chosen by :func:`cv_margin`."""
    use = bt[bt["window"].isin(windows)]
    cv: dict = {}
    if margin is None:
        margin, cv = cv_margin(use, cands, windows)
    chosen = _pick(_mase(use, cands), cands, margin)
    errs = []
    picks = []
    for k in windows:
        others = [j for j in windows if j != k] or [k]  # one window: in-sample (said)
        pick_k = _pick(_mase(use[use["window"].isin(others)], cands), cands, margin)
        picks.append(
            pd.DataFrame({"unique_id": pick_k.index, "window": k, "pick": pick_k.to_numpy()})
        )
        wk = use[(use["window"] == k) & use["observed"].to_numpy(dtype=bool)]
        c = wk["unique_id"].map(pick_k)
        ok = c.notna().to_numpy()
        wk, c = wk[ok], c[ok]
        yhat = wk[cands].to_numpy()[np.arange(len(wk)), positions_of(cands, c)]
        errs.append(
            pd.DataFrame({"step": wk["step"].to_numpy(), "e": np.abs(wk["y"] - yhat) / wk["scale"]})
        )
    e = pd.concat(errs, ignore_index=True)
    steps = sorted(e["step"].unique())
    q = {
        lv: [conformal_quantile(e.loc[e["step"] == s, "e"].to_numpy(), lv / 100) for s in steps]
        for lv in levels
    }
    n_min = int(e.groupby("step").size().min()) if len(e) else 0
    return Choice(chosen, q, n_min, margin, cv, pd.concat(picks, ignore_index=True))


def apply_intervals(
    frame: pd.DataFrame, point: str, scale: pd.Series, q: dict[int, list[float]]
) -> pd.DataFrame:
    """Add lo-<level>/hi-<level> columns around ``point`` (rows carry unique_id, step)."""
    out = frame.copy()
    sc = out["unique_id"].map(scale).to_numpy(dtype=float)
    st = out["step"].to_numpy(dtype=int) - 1
    for lv, qs in q.items():
        half = np.asarray(qs)[np.minimum(st, len(qs) - 1)] * sc
        out[f"lo-{lv}"] = np.maximum(out[point].to_numpy(dtype=float) - half, 0.0)
        out[f"hi-{lv}"] = out[point].to_numpy(dtype=float) + half
    return out


@dataclass
class Backtest:
    table: pd.DataFrame  # every window x series x step x candidate
    candidates: list[str]
    holdout: Choice  # choice and intervals made before the held-out windows
    final: Choice  # made on all windows: what production uses
    evaluation: dict[str, Any]  # held-out accuracy and coverage
    per_series: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    global_search: Any = None  # engine.forecast.global_model.Search, when it ran


def smape(f: np.ndarray, y: np.ndarray) -> float:
    """Symmetric MAPE, 0 where both the forecast and the actual are zero."""
    den = np.abs(f) + np.abs(y)
    return float(np.mean(np.where(den > 0, 2 * np.abs(f - y) / np.where(den > 0, den, 1.0), 0.0)))


def evaluate(
    bt: pd.DataFrame,
    ch: Choice,
    cands: list[str],
    held: list[int],
    groups: pd.Series | None = None,
) -> dict[str, Any]:
    """Held-out accuracy of the choice vs each single candidate, and interval coverage;
    with ``groups`` (unique_id -> group), the chosen MASE and coverage per group too."""
    ho = bt[bt["window"].isin(held) & bt["observed"].to_numpy(dtype=bool)].copy()
    c = ho["unique_id"].map(ch.chosen)
    ho = ho[c.notna().to_numpy()]
    c = c[c.notna()]
    ho["chosen"] = ho[cands].to_numpy()[np.arange(len(ho)), positions_of(cands, c)]
    per = _mase(ho, [*cands, "chosen"])
    scale = ho.groupby("unique_id", sort=False)["scale"].first()
    iv = apply_intervals(ho, "chosen", scale, ch.quantiles)
    coverage = {}
    for lv in ch.quantiles:
        inside = (iv["y"] >= iv[f"lo-{lv}"]) & (iv["y"] <= iv[f"hi-{lv}"])
        coverage[str(lv)] = float(inside.mean())
    y = ho["y"].to_numpy(dtype=float)
    f = ho["chosen"].to_numpy(dtype=float)
    single = {k: float(per[k].mean()) for k in cands}
    best = min(single, key=lambda k: single[k])
    by_group: dict[str, Any] = {}
    if groups is not None:
        g_row = iv["unique_id"].map(groups)
        g_ser = per.index.to_series().map(groups)
        for g in sorted(g_ser.dropna().unique()):
            rows = (g_row == g).to_numpy()
            by_group[str(g)] = {
                "series": int((g_ser == g).sum()),
                "mase": float(per.loc[(g_ser == g).to_numpy(), "chosen"].mean()),
                "coverage": {
                    str(lv): float(
                        (
                            (iv.loc[rows, "y"] >= iv.loc[rows, f"lo-{lv}"])
                            & (iv.loc[rows, "y"] <= iv.loc[rows, f"hi-{lv}"])
                        ).mean()
                    )
                    for lv in ch.quantiles
                },
            }
    return {
        "series": int(per.shape[0]),
        "rows": len(ho),
        "mase": float(per["chosen"].mean()),
        "mase_by_candidate": single,
        "best_single": best,
        "improvement_vs_best_single": single[best] - float(per["chosen"].mean()),
        "wape": float(np.abs(f - y).sum() / max(np.abs(y).sum(), 1e-12)),
        "smape": smape(f, y),
        "bias": float((f - y).sum() / max(np.abs(y).sum(), 1e-12)),
        "coverage": coverage,
        "by_group": by_group,
        "per_series_mase": per["chosen"],
    }


def cross_validate(
    bt: pd.DataFrame,
    cands: list[str],
    w: int,
    levels: list[int],
    margin: float | None,
    groups: pd.Series | None,
) -> dict[str, Any]:
    """Leave one window out: each window measured by the choice and intervals made on the
    others, then averaged. One window's figures swing with that window's weeks (a
    chain-wide promotion moves every series at once); the average over windows is the
    coverage a user meets over time."""
    runs = []
    for k in range(w):
        ch = choose(bt, cands, [j for j in range(w) if j != k], levels, margin)
        e = evaluate(bt, ch, cands, [k], groups)
        e.pop("per_series_mase")
        runs.append(e)
    mean = lambda xs: float(np.mean(xs))  # noqa: E731
    out: dict[str, Any] = {
        "windows": w,
        "mase": mean([r["mase"] for r in runs]),
        "mase_by_candidate": {c: mean([r["mase_by_candidate"][c] for r in runs]) for c in cands},
        "coverage": {str(lv): mean([r["coverage"][str(lv)] for r in runs]) for lv in levels},
        "coverage_by_window": [r["coverage"] for r in runs],
        "mase_by_window": [r["mase"] for r in runs],
        "wape": mean([r["wape"] for r in runs]),
        "bias": mean([r["bias"] for r in runs]),
    }
    best = min(out["mase_by_candidate"], key=lambda c: out["mase_by_candidate"][c])
    out["best_single"] = best
    out["improvement_vs_best_single"] = out["mase_by_candidate"][best] - out["mase"]
    if groups is not None and runs and runs[0]["by_group"]:
        out["by_group"] = {
            g: {
                "series": runs[0]["by_group"][g]["series"],
                "mase": mean([r["by_group"][g]["mase"] for r in runs if g in r["by_group"]]),
                "coverage": {
                    str(lv): mean(
                        [r["by_group"][g]["coverage"][str(lv)] for r in runs if g in r["by_group"]]
                    )
                    for lv in levels
                },
            }
            for g in runs[0]["by_group"]
        }
    return out


def _batch_rows(frame: pd.DataFrame, ids: list[str], size: int) -> list[np.ndarray]:
    """Row positions of each batch of ``size`` series of ``ids`` (in their order): one
    stable sort of the codes, then contiguous slices; a batch's rows are copied only when
    it is sent (no per-series frames, no second panel in memory)."""
    codes = pd.Categorical(frame["unique_id"], categories=ids).codes
    keep = np.flatnonzero(codes >= 0)
    order = keep[np.argsort(codes[keep], kind="stable")]
    sorted_codes = codes[order]
    out = []
    for i in range(0, len(ids), size):
        a, b = np.searchsorted(sorted_codes, [i, i + size])
        out.append(order[a:b])
    return out


def run_backtest(
    frame: pd.DataFrame,
    fc: ForecastConfig,
    backtestable: list[str],
    *,
    log: Callable[[str], None] = print,
    use_ray: bool = True,
    groups: pd.Series | None = None,
    global_inputs: tuple[pd.DataFrame, pd.DataFrame, Any] | None = None,
) -> Backtest:
    """Backtest the backtestable series in batches (Ray tasks, one batch's rows each),
    then choose and calibrate (see module). ``global_inputs`` (the feature snapshot's
    rows, the model input, the FeatureSpec): the global model joins as a candidate,
    searched on the windows before the held-out ones (engine.forecast.global_model)."""
    t0 = time.perf_counter()
    ids = list(backtestable)
    if not ids:
        from engine.errors import DataError
        from engine.forecast.panel import min_points

        longest = int(frame.groupby("unique_id").size().max()) if len(frame) else 0
        raise DataError(
            f"forecast: no series is long enough to backtest: each needs {min_points(fc)} "
            f"periods (horizon {fc.horizon} + {fc.backtest.windows - 1} x step {fc.step} + "
            f"a fit of {max(fc.season_length + 1, 8)}); the longest has {longest}. Fix: fewer "
            "backtest.windows, a shorter step or horizon, or a smaller season_length."
        )
    fc_json = fc.model_dump(mode="json")
    rows = _batch_rows(frame, ids, fc.batch_series)

    def batch(k: np.ndarray) -> pd.DataFrame:
        return frame.iloc[k].reset_index(drop=True)

    parts: list[pd.DataFrame] = []
    if use_ray and len(rows) > 1:
        import ray

        task = ray.remote(num_cpus=1, max_retries=2)(backtest_batch)
        # A bounded number of batches in flight: the object store holds a few batches'
        # rows, never the whole panel (a 100,000-series panel is gigabytes).
        cpus = int(ray.cluster_resources().get("CPU", 1))
        inflight = max(2, 2 * cpus)
        todo = iter(rows)
        pending = [
            task.remote(ray.put(batch(k)), fc_json) for k in itertools.islice(todo, inflight)
        ]
        done = 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            parts.extend(ray.get(ready))
            done += len(ready)
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(task.remote(ray.put(batch(nxt)), fc_json))
            if done == len(rows) or done % max(1, len(rows) // 10) == 0:
                log(f"backtest: {done}/{len(rows)} batch(es) of series done")
    else:
        for i, k in enumerate(rows):
            parts.append(backtest_batch(batch(k), fc_json))
            log(f"backtest: {i + 1}/{len(rows)} batch(es) of series done")
    t_fit = time.perf_counter()
    bt = pd.concat(parts, ignore_index=True)
    cands = candidates(fc.families, fc.known, fc.ensemble)
    w = fc.backtest.windows
    fit_w = list(range(w - fc.backtest.holdout))
    held = list(range(w - fc.backtest.holdout, w))
    search = None
    if global_inputs is not None:
        bt, search = _add_global(bt, fc, ids, fit_w, global_inputs, use_ray, log)
        cands.append(GLOBAL)
    t_global = time.perf_counter()
    ho_choice = choose(bt, cands, fit_w, fc.levels, fc.choice_margin)
    ev = evaluate(bt, ho_choice, cands, held, groups)
    ev["cross_validated"] = cross_validate(bt, cands, w, fc.levels, fc.choice_margin, groups)
    final = choose(bt, cands, list(range(w)), fc.levels, fc.choice_margin)
    per = pd.DataFrame(
        {
            "chosen": final.chosen,
            "holdout_chosen": ho_choice.chosen,
            "holdout_mase": ev.pop("per_series_mase"),
        }
    )
    per.index.name = "unique_id"
    return Backtest(
        bt,
        cands,
        ho_choice,
        final,
        ev,
        per.reset_index(),
        {"fit": t_fit - t0, "global": t_global - t_fit, "choose": time.perf_counter() - t_global},
        search,
    )


def _add_global(
    bt: pd.DataFrame,
    fc: ForecastConfig,
    ids: list[str],
    fit_w: list[int],
    global_inputs: tuple[pd.DataFrame, pd.DataFrame, Any],
    use_ray: bool,
    log: Callable[[str], None],
) -> tuple[pd.DataFrame, Any]:
    """The global model's column of the backtest table: its settings searched on the
    calibration windows ``fit_w``, then every window forecast with the best one. A period
    it could not forecast (none expected) takes the first family's value."""
    from engine.forecast import global_model as gm

    feats, inp, spec = global_inputs
    target = bt[["unique_id", "window", "ds", "y", "observed", "scale"]]
    found = gm.search(
        feats,
        inp,
        spec,
        fc,
        fit_w,
        target[target["window"].isin(fit_w)],
        ids,
        use_ray=use_ray,
        log=log,
    )
    windows = list(range(fc.backtest.windows))
    if use_ray and len(windows) > 1:  # one Ray task per window (each fit is single-threaded)
        import ray

        task = ray.remote(num_cpus=1, max_retries=2)(gm.backtest_windows)
        fr, ir = ray.put(feats), ray.put(inp)
        got: pd.DataFrame = pd.concat(
            ray.get([task.remote(fr, ir, spec, found.best, fc, [k], ids) for k in windows]),
            ignore_index=True,
        )
    else:
        got = gm.backtest_windows(feats, inp, spec, found.best, fc, windows, ids)
    out = bt.merge(got, on=["unique_id", "window", "ds"], how="left")
    miss = out[GLOBAL].isna()
    if miss.any():
        log(
            f"global model: {int(miss.sum())} backtest period(s) without a forecast; "
            f"{fc.families[0]}'s value used"
        )
        out.loc[miss, GLOBAL] = out.loc[miss, fc.families[0]]
    add_global_to_ensemble(out)
    return out, found
