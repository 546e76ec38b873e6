"""The local model families (statsforecast's estimators, not re-written) and the
exogenous wrapper that lets every family use the known-in-advance columns.

``forecast_batch`` forecasts ``h`` periods after the end of each series of a batch with
every family: plain, and (with known columns) ``<family>+x``: a per-series least-squares
regression of the target on the known columns, then the family on its residuals; the
forecast adds the regression on the future known values. Forecasts are clipped at zero
(demand). A series too short for a family's fit gets that family's forecast from the
fallback (seasonal naive where a season fits, else naive, else the mean), counted.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

ENSEMBLE = "ensemble"
GLOBAL = "global"  # engine.forecast.global_model: one model over every series


def statsforecast_models(families: list[str], season_length: int) -> list[Any]:
    from statsforecast.models import (
        AutoARIMA,
        AutoETS,
        AutoTheta,
        CrostonOptimized,
        Naive,
        SeasonalNaive,
    )

    make = {
        "seasonal_naive": lambda: SeasonalNaive(season_length, alias="seasonal_naive"),
        "naive": lambda: Naive(alias="naive"),
        "auto_ets": lambda: AutoETS(season_length=season_length, alias="auto_ets"),
        "auto_arima": lambda: AutoARIMA(season_length=season_length, alias="auto_arima"),
        "theta": lambda: AutoTheta(season_length=season_length, alias="theta"),
        "croston": lambda: CrostonOptimized(alias="croston"),
    }
    return [make[f]() for f in families]


def _fill_missing(y: np.ndarray) -> np.ndarray:
    """Values not recorded, interpolated for fitting only (never scored)."""
    if not np.isnan(y).any():
        return y
    idx = np.arange(y.size)
    ok = ~np.isnan(y)
    if not ok.any():
        return np.zeros_like(y)
    return np.interp(idx, idx[ok], y[ok])


def _fallback(y: np.ndarray, h: int, season_length: int) -> np.ndarray:
    if y.size >= season_length > 1:
        reps = int(np.ceil(h / season_length))
        return np.tile(y[-season_length:], reps)[:h]
    if y.size:
        return np.full(h, y[-1])
    return np.zeros(h)


def _local(
    train: pd.DataFrame, h: int, families: list[str], season_length: int, freq: str
) -> tuple[pd.DataFrame, int]:
    """Every family's h-step forecast for each series of ``train`` (unique_id, ds, y):
    returns (unique_id, ds, <family>...) and the count of fits that fell back."""
    from statsforecast import StatsForecast

    from engine.forecast.panel import min_fit

    lens = train.groupby("unique_id", sort=False).size()
    fit_ids = lens.index[lens >= min_fit(season_length)]
    out = []
    fallbacks = 0
    if len(fit_ids):
        sf = StatsForecast(
            models=statsforecast_models(families, season_length), freq=freq, n_jobs=1
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fc = sf.forecast(
                df=train[train["unique_id"].isin(fit_ids)], h=h, fitted=False
            ).reset_index(drop=False)
        fc = fc.drop(columns=[c for c in ("index",) if c in fc.columns])
        for f in families:  # a fit that failed inside statsforecast: NaN -> fallback
            bad = fc[f].isna()
            if bad.any():
                fallbacks += int(bad.groupby(fc["unique_id"]).any().sum())
        out.append(fc)
    short = lens.index[lens < min_fit(season_length)]
    if len(short):
        rows = []
        last = train.groupby("unique_id", sort=False)["ds"].max()
        off = pd.tseries.frequencies.to_offset(freq)
        for uid in short:
            y = train.loc[train["unique_id"] == uid, "y"].to_numpy(dtype=float)
            fb = _fallback(y, h, season_length)
            ds = pd.date_range(last[uid] + off, periods=h, freq=off)
            rows.append(pd.DataFrame({"unique_id": uid, "ds": ds, **dict.fromkeys(families, fb)}))
        out.append(pd.concat(rows, ignore_index=True))
        fallbacks += len(short) * len(families)
    res = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    # NaN from a failed fit: the fallback's value
    for f in families:
        if res[f].isna().any():
            for uid in res.loc[res[f].isna(), "unique_id"].unique():
                y = train.loc[train["unique_id"] == uid, "y"].to_numpy(dtype=float)
                m = (res["unique_id"] == uid).to_numpy()
                res.loc[m, f] = _fallback(y, int(m.sum()), season_length)
    return res, fallbacks


def _regress(
    train: pd.DataFrame, future: pd.DataFrame, known: list[str]
) -> tuple[pd.Series, pd.Series]:
    """Per-series least squares of y on [1, known]: the training residuals and the
    regression's values at the future rows (ridge-stabilised, a tiny penalty)."""
    resid = pd.Series(0.0, index=train.index)
    fut = pd.Series(0.0, index=future.index)
    for uid, tr in train.groupby("unique_id", sort=False):
        x = np.column_stack([np.ones(len(tr)), tr[known].to_numpy(dtype=float)])
        yv = tr["y"].to_numpy(dtype=float)
        x = np.nan_to_num(x)
        lam = 1e-6 * np.eye(x.shape[1])
        lam[0, 0] = 0.0
        beta = np.linalg.solve(x.T @ x + lam, x.T @ yv)
        resid.loc[tr.index] = yv - x @ beta
        fm = future["unique_id"] == uid
        if fm.any():
            xf = np.column_stack([np.ones(int(fm.sum())), future.loc[fm, known].to_numpy(float)])
            fut.loc[fm] = np.nan_to_num(xf) @ beta
    return resid, fut


def forecast_batch(
    history: pd.DataFrame,
    future: pd.DataFrame | None,
    h: int,
    families: list[str],
    season_length: int,
    freq: str,
    known: list[str],
    ensemble: bool,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Forecasts of every candidate for ``h`` periods after each series' end.

    ``history``: unique_id, ds, y (NaN: not recorded), known columns; ``future``: the
    known columns' values at the forecast periods (unique_id, ds, known...), needed for
    the ``+x`` candidates. Returns (unique_id, ds, <candidate>...) and counts."""
    train = history[["unique_id", "ds", "y"]].copy()
    train["y"] = train.groupby("unique_id", sort=False)["y"].transform(
        lambda s: pd.Series(_fill_missing(s.to_numpy(dtype=float)), index=s.index)
    )
    res, fb = _local(train, h, families, season_length, freq)
    counts = {"fallback_fits": fb}
    if known and future is not None:
        fut = res[["unique_id", "ds"]].merge(future, on=["unique_id", "ds"], how="left")
        resid, reg = _regress(history.assign(y=train["y"]), fut, known)
        rtrain = train.assign(y=resid.to_numpy())
        xf = [f for f in families if f != "croston"]  # residuals are not demand sizes
        if xf:
            rres, fb2 = _local(rtrain, h, xf, season_length, freq)
            rres = res[["unique_id", "ds"]].merge(rres, on=["unique_id", "ds"], how="left")
            for f in xf:
                res[f + "+x"] = rres[f].to_numpy() + reg.to_numpy()
            counts["fallback_fits"] += fb2
    cands = [c for c in res.columns if c not in ("unique_id", "ds")]
    if ensemble and len(cands) > 1:
        res[ENSEMBLE] = res[cands].mean(axis=1)
        cands.append(ENSEMBLE)
    res[cands] = res[cands].clip(lower=0.0)
    return res, counts


def candidates(families: list[str], known: list[str], ensemble: bool) -> list[str]:
    out = list(families)
    if known:
        out += [f + "+x" for f in families if f != "croston"]
    if ensemble and len(out) > 1:
        out.append(ENSEMBLE)
    return out


def add_global_to_ensemble(res: pd.DataFrame) -> None:
    """The ensemble is the mean of every candidate: with the global model's column
    present, fold it into the local candidates' mean (in place)."""
    if ENSEMBLE not in res.columns or GLOBAL not in res.columns:
        return
    local = [
        c
        for c in res.columns
        if c
        not in ("unique_id", "ds", "window", "step", ENSEMBLE, GLOBAL, "y", "observed", "scale")
    ]
    n = len(local)
    res[ENSEMBLE] = (res[ENSEMBLE] * n + res[GLOBAL]) / (n + 1)


def positions_of(cands: list[str], names: Any) -> np.ndarray:
    """Each name's position in ``cands``, vectorised (``cands.index`` per row was a Python
    loop over every row: seconds at 100,000 series); an unknown name is an error."""
    idx = pd.Index(cands).get_indexer(pd.Index(np.asarray(names, dtype=object)))
    if (idx < 0).any():
        bad = sorted({str(x) for x in np.asarray(names, dtype=object)[idx < 0]})
        raise ValueError(f"not a candidate: {bad[:5]} (candidates: {cands})")
    return idx
