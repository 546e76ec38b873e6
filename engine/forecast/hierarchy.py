"""Hierarchies: where the series keys nest (sku -> category -> total), forecasts are
reconciled so that the levels add up.

``forecast.hierarchy`` lists the grouping columns from the top down (series keys or static
columns); the levels are ``total``, each prefix of that list, and the series themselves.
The upper levels' series are sums of the bottom ones per period; each is backtested with
the local families like any series and gets its own per-series choice. Per backtest
window, the base forecasts (each series' cross-fitted choice: the candidate chosen on the
other windows) are reconciled by hierarchicalforecast's MinTrace, ``wls_var``: each series
weighted by the inverse of its error variance, the errors being its backtest errors on the
*other* windows (out of sample, not the in-sample residuals). A level forecast poorly (an
aggregate without the promotions its products have) thus moves the others little; with
``wls_struct`` (weights from the structure only) such a level dragged every product of a
store with it. The card reports MASE per level: base, reconciled, and bottom-up. The
summing matrix and the tags are built here (plain group-bys); the reconciliation is
hierarchicalforecast's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.config.forecast import ForecastConfig
from engine.forecast.models import positions_of

TOTAL = "total"
METHOD = "wls_var"


@dataclass
class Structure:
    levels: list[str]  # level names, top down; the last is the series' own
    parent: pd.DataFrame  # bottom unique_id -> upper unique_id of each level (columns)
    S: pd.DataFrame  # unique_id + one column per bottom series (0/1)
    tags: dict[str, np.ndarray]

    @property
    def upper_ids(self) -> list[str]:
        return [u for lv in self.levels[:-1] for u in self.tags[lv]]


def level_name(cols: list[str]) -> str:
    return "/".join(cols) if cols else TOTAL


def structure(frame: pd.DataFrame, fc: ForecastConfig, bottom: list[str]) -> Structure:
    """The levels over the ``bottom`` series of ``frame`` (one row per series and period,
    with the hierarchy's columns)."""
    first = frame.groupby("unique_id", sort=False)[fc.hierarchy].first().loc[bottom]
    parent = pd.DataFrame(index=pd.Index(bottom, name="unique_id"))
    levels = []
    for i in range(len(fc.hierarchy) + 1):
        cols = fc.hierarchy[:i]
        name = level_name(cols)
        levels.append(name)
        if cols:
            parent[name] = (
                first[cols]
                .astype(str)
                .apply(
                    lambda r, cols=cols: "/".join(f"{c}={v}" for c, v in zip(cols, r, strict=True)),
                    axis=1,
                )
            )
        else:
            parent[name] = TOTAL
    bottom_level = level_name(fc.series)
    levels.append(bottom_level)
    tags = {lv: np.asarray(sorted(parent[lv].unique())) for lv in levels[:-1]}
    tags[bottom_level] = np.asarray(bottom)
    rows = []
    for lv in levels[:-1]:
        for u in tags[lv]:
            rows.append((u, (parent[lv] == u).to_numpy().astype(float)))
    for i, b in enumerate(bottom):
        one = np.zeros(len(bottom))
        one[i] = 1.0
        rows.append((b, one))
    S = pd.DataFrame(np.vstack([r[1] for r in rows]), columns=bottom)
    S.insert(0, "unique_id", [r[0] for r in rows])
    return Structure(levels, parent, S, tags)


def upper_frame(frame: pd.DataFrame, st: Structure) -> pd.DataFrame:
    """The upper levels' series: per period, the sum of their bottom series (unique_id,
    ds, y, observed: observed where every bottom series of it was)."""
    b = frame[frame["unique_id"].isin(st.parent.index)]
    parts = []
    for lv in st.levels[:-1]:
        g = b.assign(_p=b["unique_id"].map(st.parent[lv])).groupby(["_p", "ds"], sort=True)
        agg = g.agg(y=("y", "sum"), observed=("observed", "all")).reset_index()
        parts.append(agg.rename(columns={"_p": "unique_id"}))
    return pd.concat(parts, ignore_index=True)


def reconcile(
    base: pd.DataFrame,
    st: Structure,
    errors: pd.DataFrame | None = None,
    method: str = METHOD,
) -> pd.Series:
    """MinTrace (hierarchicalforecast) of ``base`` (unique_id, ds, base: every series of
    the structure at the same periods): the reconciled values, aligned to ``base``.
    ``errors`` (unique_id, y, base: past forecasts and what happened) weight ``wls_var``;
    ``method="bottom_up"``: hierarchicalforecast's BottomUp."""
    from hierarchicalforecast.core import HierarchicalReconciliation
    from hierarchicalforecast.methods import BottomUp, MinTrace

    rec = BottomUp() if method == "bottom_up" else MinTrace(method=method)
    y_df = None
    if method == "wls_var":
        assert errors is not None, "wls_var weighs series by their past errors"
        y_df = errors[["unique_id", "y", "base"]].copy()
        # the errors' own periods do not matter, only their spread per series: one
        # synthetic period per error (windows may overlap in time)
        y_df["ds"] = pd.Timestamp("2000-01-03") + pd.to_timedelta(
            y_df.groupby("unique_id").cumcount(), unit="D"
        )
    hrec = HierarchicalReconciliation(reconcilers=[rec])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = hrec.reconcile(
            Y_hat_df=base[["unique_id", "ds", "base"]], S_df=st.S, tags=st.tags, Y_df=y_df
        )
    col = next(c for c in out.columns if c.startswith("base/"))
    m = base[["unique_id", "ds"]].merge(
        out[["unique_id", "ds", col]], on=["unique_id", "ds"], how="left"
    )
    # not clipped at zero: a clip would undo the adding up (MinTrace of non-negative base
    # forecasts is rarely below zero; the card's incoherence figure would show it)
    return pd.Series(m[col].to_numpy(dtype=float), index=base.index)


def picked(bt: pd.DataFrame, picks: pd.DataFrame, cands: list[str]) -> pd.DataFrame:
    """Each row's forecast by its series' cross-fitted pick for that window."""
    m = bt.merge(picks, on=["unique_id", "window"], how="inner")
    idx = positions_of(cands, m["pick"])
    m["base"] = m[cands].to_numpy(dtype=float)[np.arange(len(m)), idx]
    return m[["unique_id", "window", "ds", "y", "observed", "scale", "base"]]


def evaluate_levels(
    bottom: pd.DataFrame, upper: pd.DataFrame, st: Structure
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Per window, reconcile the base forecasts of every series (bottom and upper rows:
    unique_id, window, ds, y, observed, scale, base); MASE per level before and after,
    and the largest incoherence left (upper minus the sum of its bottoms, after)."""
    rows = pd.concat([upper, bottom], ignore_index=True)
    every = set(st.S["unique_id"])
    parts = []
    for k, w in rows.groupby("window", sort=True):
        # a window covers the same periods for every series (they share their end)
        full = w[w["unique_id"].isin(every)]
        counts = full.groupby("ds")["unique_id"].nunique()
        keep = counts.index[counts == len(every)]
        full = full[full["ds"].isin(keep)].copy()
        if full.empty:
            continue
        others = rows[(rows["window"] != k) & rows["observed"].to_numpy(dtype=bool)]
        full["reconciled"] = reconcile(full, st, others).to_numpy()
        full["bottom_up"] = reconcile(full, st, method="bottom_up").to_numpy()
        parts.append(full)
    allw = pd.concat(parts, ignore_index=True)
    level_of = {u: lv for lv, ids in st.tags.items() for u in ids}
    allw["level"] = allw["unique_id"].map(level_of)
    obs = allw[allw["observed"].to_numpy(dtype=bool)]
    out: dict[str, Any] = {
        "method": f"MinTrace({METHOD}) (hierarchicalforecast), weights from each series' "
        "backtest errors on the other windows",
        "levels": {},
    }
    for lv in st.levels:
        d = obs[obs["level"] == lv]
        per = {}
        for col in ("base", "reconciled", "bottom_up"):
            e = (d[col] - d["y"]).abs() / d["scale"]
            per[col] = float(e.groupby(d["unique_id"]).mean().mean())
        out["levels"][lv] = {
            "series": int(d["unique_id"].nunique()),
            "mase_base": per["base"],
            "mase_reconciled": per["reconciled"],
            "mase_bottom_up": per["bottom_up"],
        }
    out["incoherence_after"] = _incoherence(allw, st)
    return out, allw


def _incoherence(allw: pd.DataFrame, st: Structure) -> float:
    """max |upper - sum of its bottoms| of the reconciled values, relative to the upper
    value's scale (0 up to rounding when the levels add up)."""
    bot = allw[allw["level"] == st.levels[-1]]
    worst = 0.0
    for lv in st.levels[:-1]:
        sums = (
            bot.assign(_p=bot["unique_id"].map(st.parent[lv]))
            .groupby(["window", "_p", "ds"])["reconciled"]
            .sum()
        )
        up = allw[allw["level"] == lv].set_index(["window", "unique_id", "ds"])["reconciled"]
        up.index.names = ["window", "_p", "ds"]
        diff = (up - sums.reindex(up.index)).abs() / up.abs().clip(lower=1.0)
        worst = max(worst, float(diff.max()))
    return worst


def error_weights(bottom: pd.DataFrame, upper: pd.DataFrame) -> dict[str, float]:
    """Each series' mean squared backtest error (every window): the weights
    :func:`forecast_levels` reconciles production forecasts with."""
    rows = pd.concat([upper, bottom], ignore_index=True)
    rows = rows[rows["observed"].to_numpy(dtype=bool)]
    msq = (rows["y"] - rows["base"]).pow(2).groupby(rows["unique_id"]).mean()
    return {str(k): float(v) for k, v in msq.items()}


def forecast_levels(
    frame: pd.DataFrame,
    bottom_fc: pd.DataFrame,
    fc: ForecastConfig,
    upper_chosen: dict[str, str],
    weights: dict[str, float],
) -> pd.DataFrame:
    """Reconciled forecasts of every level from the bottom series' forecasts
    (``bottom_fc``: unique_id, ds, step, forecast, lo-/hi-<level>...) and the history
    ``frame``: the upper series are forecast by their chosen family, then all are
    reconciled with the backtest's error weights (a series without one: the largest).
    Returns the bottom rows with ``forecast`` reconciled (``forecast_base`` kept, the
    intervals moved with the point) and the upper rows (point forecasts; no intervals:
    the conformal calibration is the bottom series')."""
    from engine.forecast.models import candidates, forecast_batch

    ids = list(dict.fromkeys(bottom_fc["unique_id"]))
    st = structure(frame, fc, ids)
    up = upper_frame(frame, st)
    res, _ = forecast_batch(
        up, None, fc.horizon, fc.families, fc.season_length, fc.freq, [], fc.ensemble
    )
    cands = candidates(fc.families, [], fc.ensemble)
    common = max(set(upper_chosen.values()), key=list(upper_chosen.values()).count)
    pick = res["unique_id"].map(lambda u: upper_chosen.get(u, common))
    pick = pick.where(pick.isin(cands), cands[0])
    res["base"] = res[cands].to_numpy()[np.arange(len(res)), positions_of(cands, pick)]
    base = pd.concat(
        [
            res[["unique_id", "ds", "base"]],
            bottom_fc[["unique_id", "ds"]].assign(base=bottom_fc["forecast"].to_numpy()),
        ],
        ignore_index=True,
    )
    worst = max(weights.values()) if weights else 1.0
    w = pd.DataFrame({"unique_id": list(st.S["unique_id"])})
    w["base"] = 0.0
    w["y"] = np.sqrt([max(weights.get(u, worst), 1e-12) for u in w["unique_id"]])
    base["reconciled"] = reconcile(base, st, w).to_numpy()
    level_of = {u: lv for lv, ids_ in st.tags.items() for u in ids_}
    rec = base.set_index(["unique_id", "ds"])["reconciled"]
    out = bottom_fc.copy()
    out["forecast_base"] = out["forecast"]
    new = rec.reindex(pd.MultiIndex.from_frame(out[["unique_id", "ds"]])).to_numpy()
    shift = new - out["forecast"].to_numpy(dtype=float)
    out["forecast"] = new
    for c in [c for c in out.columns if c.startswith(("lo-", "hi-"))]:
        out[c] = out[c].to_numpy(dtype=float) + shift
        if c.startswith("lo-"):
            out[c] = out[c].clip(lower=0.0)
    out.insert(1, "level", st.levels[-1])
    base["model"] = list(pick) + list(out["model"]) if "model" in out.columns else None
    upper = base[base["unique_id"].isin(st.upper_ids)].rename(columns={"base": "forecast_base"})
    upper = upper.rename(columns={"reconciled": "forecast"})
    upper.insert(1, "level", upper["unique_id"].map(level_of).to_numpy())
    upper["step"] = upper.groupby("unique_id", sort=False).cumcount() + 1
    return pd.concat([upper, out], ignore_index=True)
