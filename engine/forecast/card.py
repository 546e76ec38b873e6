"""The forecast card: what a registered forecaster was measured to do (held-out and
cross-validated accuracy against every single candidate, interval coverage, wins per
family, worst series, the global model's search, accuracy per hierarchy level), as the
JSON logged with the model and as the markdown ``insight forecast train`` prints."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.config.forecast import ForecastProject
from engine.forecast.models import GLOBAL
from engine.forecast.panel import Panel


def build_card(
    proj: ForecastProject, panel: Panel, bt: Any, snap_id: str, short: list[str]
) -> dict[str, Any]:
    fc = proj.forecast
    ev = dict(bt.evaluation)
    wins = bt.final.chosen.value_counts().to_dict()
    per = bt.per_series.sort_values("holdout_mase", ascending=False)
    return {
        "task": "forecast",
        "snapshot_id": snap_id,
        "freq": fc.freq,
        "horizon": fc.horizon,
        "season_length": fc.season_length,
        "series": {
            "total": panel.series,
            "backtested": len(bt.per_series),
            "too_short_fallback": len(short),
            "kinds": panel.profile["kind"].value_counts().to_dict(),
            "constant": int(panel.profile["constant"].sum()),
            "gaps": int(panel.profile["gaps"].sum()),
        },
        "backtest": {
            "windows": fc.backtest.windows,
            "step": fc.step,
            "holdout": fc.backtest.holdout,
            "candidates": bt.candidates,
            "choice": (
                f"per series by MASE on the windows before the held-out one(s); a series "
                f"leaves the candidate best over all series only for one better by more "
                f"than {bt.final.margin:.0%}"
                + (
                    " (margin chosen by leave-one-window-out CV: "
                    + ", ".join(f"{m:g}: {v:.3f}" for m, v in bt.final.margin_cv.items())
                    + ")"
                    if bt.final.margin_cv
                    else ""
                )
            ),
            "intervals": (
                "split-conformal per horizon step on scale-free errors pooled across "
                "series, from cross-fitted choices; "
                f"at least {bt.final.calibration_errors} errors per step"
            ),
        },
        "holdout": ev,
        "wins": {str(k): int(v) for k, v in wins.items()},
        "worst_series": [
            {"unique_id": str(r.unique_id), "mase": float(r.holdout_mase), "model": str(r.chosen)}
            for r in per.head(10).itertuples()
            if np.isfinite(r.holdout_mase)
        ],
        "levels": fc.levels,
        "notes": panel.notes
        + [
            f"{lv}% intervals unbounded at some steps: too few backtest errors (the "
            f"conformal quantile needs at least {math.ceil(lv / (100 - lv))} per step; "
            "more series or windows)"
            for lv, qs in bt.final.quantiles.items()
            if any(not math.isfinite(q) for q in qs)
        ],
    }


def card_markdown(card: dict[str, Any]) -> str:
    h = card["holdout"]
    cv = h["cross_validated"]
    # a statsforecast family on its own: no regressors (+x), no ensemble, not the global
    # model (it reads the regressors too)
    plain = min(
        (c for c in cv["mase_by_candidate"] if "+" not in c and c not in ("ensemble", GLOBAL)),
        key=lambda c: cv["mase_by_candidate"][c],
    )
    lines = [
        f"# Forecast card: {card['series']['total']} series, {card['freq']}, horizon "
        f"{card['horizon']}",
        "",
        f"Snapshot `{card['snapshot_id']}`. {card['series']['backtested']} series backtested "
        f"over {card['backtest']['windows']} rolling origins ({card['backtest']['step']} "
        f"periods apart); {card['series']['too_short_fallback']} too short (seasonal naive / "
        "naive fallback).",
        "",
        "## Every window held out in turn (choice and intervals made on the others)",
        "",
        f"- chosen per series: MASE **{cv['mase']:.3f}** (by window: "
        + ", ".join(f"{x:.3f}" for x in cv["mase_by_window"])
        + f"); best single candidate {cv['best_single']} {cv['mase_by_candidate'][cv['best_single']]:.3f}; "
        f"best statsforecast family without regressors {plain} {cv['mase_by_candidate'][plain]:.3f}",
        "- interval coverage: "
        + ", ".join(f"{lv}%: {c:.1%}" for lv, c in cv["coverage"].items())
        + " (by window: "
        + "; ".join(", ".join(f"{c:.0%}" for c in w.values()) for w in cv["coverage_by_window"])
        + ")",
        "",
        "## The last window, held out (not used to choose or calibrate)",
        "",
        f"- chosen per series: MASE **{h['mase']:.3f}**, WAPE {h['wape']:.3f}, sMAPE "
        f"{h['smape']:.3f}, bias {h['bias']:+.3f}",
        f"- best single candidate: {h['best_single']} MASE "
        f"{h['mase_by_candidate'][h['best_single']]:.3f} (chosen better by "
        f"{h['improvement_vs_best_single']:+.3f})",
        "- interval coverage: " + ", ".join(f"{lv}%: {c:.1%}" for lv, c in h["coverage"].items()),
        "",
        "| candidate | MASE (held out, every series) | series won (final choice) |",
        "|---|---|---|",
    ]
    for k, v in sorted(h["mase_by_candidate"].items(), key=lambda kv: kv[1]):
        lines.append(f"| {k} | {v:.3f} | {card['wins'].get(k, 0)} |")
    if h.get("by_group"):
        lines += ["", "| demand class | series | MASE | coverage |", "|---|---|---|---|"]
        for g, d in h["by_group"].items():
            cov = ", ".join(f"{lv}%: {c:.1%}" for lv, c in d["coverage"].items())
            lines.append(f"| {g} | {d['series']} | {d['mase']:.3f} | {cov} |")
    hy = card.get("hierarchy")
    if hy:
        lines += [
            "",
            f"## Levels, every backtest window, {hy['method']}",
            "",
            "| level | series | MASE base | MASE reconciled | MASE bottom-up |",
            "|---|---|---|---|---|",
        ]
        for lv, d in hy["levels"].items():
            lines.append(
                f"| {lv} | {d['series']} | {d['mase_base']:.3f} | {d['mase_reconciled']:.3f} "
                f"| {d['mase_bottom_up']:.3f} |"
            )
    g = card.get("global_model")
    if g:
        best = ", ".join(f"{k} {v}" for k, v in g["search"]["best"].items())
        top = ", ".join(f"{k} {v:.0%}" for k, v in list(g["importance_gain_share"].items())[:5])
        lines += [
            "",
            f"Global model: {g['estimator']} on Spark's point-in-time features (snapshot "
            f"`{g['features_snapshot']}`); {g['search']['trials']} settings searched by Tune "
            f"on {g['search']['on']}; best: {best}. Largest shares of gain: {top}.",
        ]
    lines += ["", "Worst series (held-out MASE): "]
    lines += [f"- {w['unique_id']}: {w['mase']:.2f} ({w['model']})" for w in card["worst_series"]]
    return "\n".join(lines) + "\n"


def global_card(bt: Any, spec: Any, mlf: Any, fsnap_id: str) -> dict[str, Any]:
    model = mlf.models_["global"]
    gain = model.booster_.feature_importance(importance_type="gain")
    names = model.booster_.feature_name()
    total = float(gain.sum()) or 1.0
    top = sorted(zip(names, gain, strict=True), key=lambda t: -t[1])[:10]
    return {
        "estimator": "LightGBM through mlforecast (recursive)",
        "features_snapshot": fsnap_id,
        "features": spec.columns,
        "search": {
            "trials": len(bt.global_search.scores),
            "on": "MASE on the backtest windows before the held-out one(s)",
            "best": bt.global_search.best,
            "scores": [{"params": c, "mase": m} for c, m in bt.global_search.scores],
            "seconds": bt.global_search.seconds,
        },
        "importance_gain_share": {n: float(g) / total for n, g in top},
    }
