"""Simple baselines a first model must beat: the floor of the promotion gate.

A gate with no champion once promoted whatever it was given. Two baselines are scored on
the same test rows as the model:

- **the class prior**: one score for every row (the positive rate); its AUC is 0.5 on any
  resample, so the model beats it when the lower bound of its own AUC interval is above 0.5;
- **the best single feature**: each model input alone, as a score fitted on the rows the
  model was fitted on (a number as it is, its direction chosen there, a missing value at
  the fitted rows' median; a category by its positive rate there, an unseen one at the
  overall rate), and the one with the highest AUC *on those rows* is taken (chosen without
  looking at the test rows). From the paired bootstrap interval of AUC(model) -
  AUC(feature) on the test rows: ``better`` needs it wholly above 0; ``not_worse`` (the
  default) needs it to reach 0 or above, so a model significantly worse than one column is
  refused, and one not shown better is promoted with that said in the gate and the card. A
  strict superiority test refuses nearly every first model of a small table: on the demo's
  tiny sample the best family and 'days_since_last_txn' alone differ by 0.0002 AUC on 265
  test rows.

The card states both (``baselines``); the gate checks them when no champion exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.kernels.metrics import auc_bootstrap, paired_auc_difference
from engine.train.dataset import TrainingSet


@dataclass(frozen=True)
class SingleFeature:
    """A one-column score fitted on some rows and applied to others."""

    feature: str
    kind: str  # numeric | categorical
    sign: float = 1.0
    fill: float = 0.0
    rates: dict[str, float] | None = None
    prior: float = 0.0

    @classmethod
    def fit(cls, feature: str, x: pd.Series, y: np.ndarray) -> SingleFeature:
        from sklearn.metrics import roc_auc_score

        if pd.api.types.is_numeric_dtype(x.dtype) or pd.api.types.is_bool_dtype(x.dtype):
            v = x.astype(np.float64)
            fill = float(np.nanmedian(v)) if v.notna().any() else 0.0
            auc = float(roc_auc_score(y, v.fillna(fill))) if len(np.unique(y)) == 2 else 0.5
            return cls(feature, "numeric", 1.0 if auc >= 0.5 else -1.0, fill)
        text = x.astype("string").fillna("\u0000")
        rates = pd.Series(y).groupby(text.to_numpy()).mean()
        return cls(
            feature,
            "categorical",
            rates={str(k): float(r) for k, r in rates.items()},
            prior=float(np.mean(y)),
        )

    def score(self, x: pd.Series) -> np.ndarray:
        if self.kind == "numeric":
            return self.sign * x.astype(np.float64).fillna(self.fill).to_numpy()
        text = x.astype("string").fillna("\u0000")
        assert self.rates is not None
        return text.map(lambda v: self.rates.get(str(v), self.prior)).to_numpy(dtype=np.float64)  # type: ignore[union-attr]


def best_single_feature(ts: TrainingSet, refit: bool) -> tuple[SingleFeature, float] | None:
    """The model input that alone ranks the fitted rows best, and its AUC there."""
    from sklearn.metrics import roc_auc_score

    rows = ts.fit_rows(refit)
    y = rows[ts.label].to_numpy(dtype=np.float64)
    if len(np.unique(y)) < 2:
        return None
    best: tuple[SingleFeature, float] | None = None
    for f in ts.features:
        sf = SingleFeature.fit(f, rows[f], y)
        auc = float(roc_auc_score(y, sf.score(rows[f])))
        if best is None or auc > best[1]:
            best = (sf, auc)
    return best


def baselines(
    ts: TrainingSet,
    p_test: np.ndarray,
    *,
    refit: bool,
    n_boot: int,
    alpha: float,
    seed: int,
    rule: str = "not_worse",
) -> dict[str, Any]:
    """The model against both baselines on the test rows (numbers for the card and gate)."""
    y = ts.test[ts.label].to_numpy(dtype=np.float64)
    model = auc_bootstrap(y, p_test, n_boot=n_boot, alpha=alpha, seed=seed)
    out: dict[str, Any] = {
        "rows": len(y),
        "class_prior": {
            "auc": 0.5,
            "model_auc": model._asdict(),
            "beaten": bool(model.low > 0.5),
        },
        "best_single_feature": None,
    }
    found = best_single_feature(ts, refit)
    if found is not None:
        sf, fit_auc = found
        s = sf.score(ts.test[sf.feature])
        a = auc_bootstrap(y, s, n_boot=n_boot, alpha=alpha, seed=seed)
        d = paired_auc_difference(y, p_test, s, n_boot=n_boot, alpha=alpha, seed=seed)
        out["best_single_feature"] = {
            "feature": sf.feature,
            "auc_on_fitted_rows": fit_auc,
            "auc": a._asdict(),
            "difference": d._asdict(),
            "rule": rule,
            # significantly better; not worse (the interval reaches 0 or above)
            "better": bool(d.low > 0),
            "not_worse": bool(d.high >= 0),
            "beaten": bool(d.low > 0) if rule == "better" else bool(d.high >= 0),
        }
    return out


def describe(b: dict[str, Any]) -> list[str]:
    """One line per baseline, as the card and the gate print them."""
    m = b["class_prior"]["model_auc"]
    lines = [
        f"class prior (AUC 0.5): model AUC {m['estimate']:.4f} ({m['low']:.4f}-{m['high']:.4f})"
        f" -> {'beaten' if b['class_prior']['beaten'] else 'NOT beaten'}"
    ]
    f = b.get("best_single_feature")
    if f:
        d = f["difference"]
        verdict = (
            "significantly better"
            if f.get("better", f["beaten"])
            else "not shown better (the interval reaches 0), not worse"
            if f.get("not_worse")
            else "significantly WORSE"
        )
        lines.append(
            f"best single feature '{f['feature']}' (chosen on the fitted rows): AUC "
            f"{f['auc']['estimate']:.4f}; model - feature {d['estimate']:+.4f} (paired CI "
            f"{d['low']:+.4f}..{d['high']:+.4f}): {verdict}; rule "
            f"'{f.get('rule', 'better')}' -> {'pass' if f['beaten'] else 'FAIL'}"
        )
    return lines
