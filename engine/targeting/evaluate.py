"""How good a learner's out-of-fold uplift is: Qini and uplift AUC per treated arm with
bootstrap intervals, the choice between configurations, and the calibration check.

Per arm k the rows of arm k and of the control are ranked by tau_k: scikit-uplift's
``qini_auc_score`` and ``uplift_auc_score`` (0/1 outcomes, engine.kernels.qini), or the
same Qini normalisation for amounts (engine.kernels.lift). A configuration's score is the
row-weighted mean over arms.

Qini is noisy (tuning on it overfits the noise): the choice takes the best mean Qini, then
prefers the simplest configuration (shallower trees, then fewer stages) whose Qini is within one
bootstrap standard error of the best: the one-standard-error rule of Breiman et al.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.kernels.lift import qini_auc_any, welch_lift
from engine.targeting.campaign import Campaign


def _pair(c: Campaign, tau: NDArray[np.float64], k: int) -> tuple[Any, Any, Any]:
    on = (c.arm == 0) | (c.arm == k)
    return c.y[on], (c.arm[on] == k).astype(np.float64), tau[on, k - 1]


def arm_qini(y: Any, t: Any, s: Any, kind: str) -> tuple[float, float]:
    """(Qini AUC, uplift AUC); the uplift AUC only for 0/1 outcomes (else NaN)."""
    if kind == "binary":
        from engine.kernels.qini import uplift_metrics

        m = uplift_metrics(y, t, s)
        return float(m.qini_auc), float(m.uplift_auc)
    return qini_auc_any(y, t, s), float("nan")


def qini_bootstrap(
    y: Any, t: Any, s: Any, kind: str, n_boot: int, seed: int
) -> NDArray[np.float64]:
    """Qini AUC of ``n_boot`` row resamples (stratified by arm: the design fixes them)."""
    rng = np.random.default_rng(seed)
    i1, i0 = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
    out = np.full(n_boot, np.nan)
    for b in range(n_boot):
        idx = np.r_[rng.choice(i1, i1.size), rng.choice(i0, i0.size)]
        try:
            out[b] = arm_qini(y[idx], t[idx], s[idx], kind)[0]
        except ValueError:  # a resample whose perfect curve has no area
            continue
    return out


@dataclass
class ConfigScore:
    name: str
    learner: str
    hp: dict[str, Any]
    qini: float  # row-weighted over arms
    se: float
    per_arm: list[dict[str, Any]]


def score(
    c: Campaign,
    tau: NDArray[np.float64],
    name: str,
    learner: str,
    hp: dict[str, Any],
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
) -> ConfigScore:
    """Out-of-fold Qini and uplift AUC per arm with percentile bootstrap CIs."""
    per: list[dict[str, Any]] = []
    w = []
    for k in range(1, c.n_arms):
        y, t, s = _pair(c, tau, k)
        q, u = arm_qini(y, t, s, c.outcome_kind)
        boots = qini_bootstrap(y, t, s, c.outcome_kind, n_boot, seed + k)
        b = boots[np.isfinite(boots)]
        lo, hi = np.quantile(b, [alpha / 2, 1 - alpha / 2]) if b.size else (np.nan, np.nan)
        per.append(
            {
                "arm": c.arms[k],
                "rows": int(y.size),
                "qini_auc": {"estimate": q, "low": float(lo), "high": float(hi)},
                "uplift_auc": None if np.isnan(u) else u,
                "se": float(b.std(ddof=1)) if b.size > 1 else float("nan"),
            }
        )
        w.append(y.size)
    wa = np.asarray(w, dtype=np.float64) / sum(w)
    qini = float(sum(wi * p["qini_auc"]["estimate"] for wi, p in zip(wa, per, strict=True)))
    se = float(np.sqrt(sum((wi * p["se"]) ** 2 for wi, p in zip(wa, per, strict=True))))
    return ConfigScore(name, learner, dict(hp), qini, se, per)


def choose(scores: list[ConfigScore], complexity: dict[str, int]) -> tuple[ConfigScore, str]:
    """The simplest configuration within one standard error of the best Qini, and why."""
    best = max(scores, key=lambda s: s.qini)
    near = [s for s in scores if s.qini >= best.qini - best.se]
    pick = min(near, key=lambda s: (s.hp.get("max_depth", 0), complexity[s.learner], -s.qini))
    why = f"best out-of-fold Qini {best.name} {best.qini:.4f} (bootstrap SE {best.se:.4f}); " + (
        f"chose {pick.name} ({pick.qini:.4f}), the simplest within one SE of it"
        if pick is not best
        else "no simpler configuration within one SE of it"
    )
    return pick, why


def calibration(
    c: Campaign, tau: NDArray[np.float64], bins: int = 10, alpha: float = 0.05
) -> list[dict[str, Any]]:
    """Per treated arm and decile of predicted uplift: mean predicted vs observed uplift
    (arm mean minus control mean within the decile) with a Welch CI. Deciles are cut on
    the rows of the arm and the control together."""
    out: list[dict[str, Any]] = []
    for k in range(1, c.n_arms):
        y, t, s = _pair(c, tau, k)
        edges = np.quantile(s, np.linspace(0, 1, bins + 1))
        b = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
        for d in range(bins):
            on = b == d
            y1, y0 = y[on & (t == 1)], y[on & (t == 0)]
            if y1.size < 2 or y0.size < 2:
                continue
            est, lo, hi = welch_lift(y1, y0, alpha)
            out.append(
                {
                    "arm": c.arms[k],
                    "decile": d + 1,
                    "rows": int(on.sum()),
                    "predicted": float(s[on].mean()),
                    "observed": est,
                    "low": lo,
                    "high": hi,
                    "covered": bool(lo <= float(s[on].mean()) <= hi),
                }
            )
    return out
