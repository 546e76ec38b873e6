"""Group fairness metrics, as fairlearn defines them, with bootstrap CIs.

- demographic parity difference / ratio: max - min (min / max) of selection rates P(pred=1)
  across groups (fairlearn ``demographic_parity_difference`` / ``_ratio``);
- equal opportunity difference: max - min of true-positive rates;
- equalized odds difference: the larger of the TPR and FPR differences (fairlearn's
  ``equalized_odds_difference`` with the default agg "worst_case").

Binary labels and predictions with a group make 4 x G cells, so the bootstrap resamples
the cell counts (one multinomial draw per resample), not the rows.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

Metric = Literal[
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equal_opportunity_difference",
    "equalized_odds_difference",
]


class FairnessResult(NamedTuple):
    value: float
    low: float
    high: float
    by_group: dict[str, dict[str, float]]


def _cells(
    y_true: ArrayLike, y_pred: ArrayLike, group: ArrayLike
) -> tuple[NDArray[np.float64], list[str]]:
    y, p, g = np.asarray(y_true), np.asarray(y_pred), np.asarray(group)
    if not (y.shape == p.shape == g.shape) or y.ndim != 1:
        raise ValueError(
            f"y_true, y_pred and group must be 1-D of one length; got {y.shape}, {p.shape}, {g.shape}."
        )
    for name, a in (("y_true", y), ("y_pred", p)):
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be 0/1 (apply the decision threshold first).")
    names, codes = np.unique(g.astype(str), return_inverse=True)
    if names.size < 2:
        raise ValueError(f"need at least 2 groups, got {names.tolist()}.")
    k = names.size
    idx = codes * 4 + y.astype(np.int64) * 2 + p.astype(np.int64)  # (group, y, pred)
    return np.bincount(idx, minlength=4 * k).astype(np.float64).reshape(k, 4), names.tolist()


def _rates(
    c: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per group (rows, or a batch with a leading axis): selection rate, TPR, FPR."""
    n = c.sum(axis=-1)
    neg, pos = c[..., 0] + c[..., 1], c[..., 2] + c[..., 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (c[..., 1] + c[..., 3]) / n, c[..., 3] / pos, c[..., 1] / neg


def _metric(c: NDArray[np.float64], metric: Metric) -> NDArray[np.float64]:
    sel, tpr, fpr = _rates(c)
    spread = lambda r: np.max(r, axis=-1) - np.min(r, axis=-1)  # noqa: E731
    if metric == "demographic_parity_difference":
        return spread(sel)
    if metric == "demographic_parity_ratio":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.min(sel, axis=-1) / np.max(sel, axis=-1)
    if metric == "equal_opportunity_difference":
        return spread(tpr)
    if metric == "equalized_odds_difference":
        return np.maximum(spread(tpr), spread(fpr))
    raise ValueError(f"unknown metric {metric!r}; choose one of {Metric.__args__}.")  # type: ignore[attr-defined]


def fairness(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    group: ArrayLike,
    metric: Metric,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> FairnessResult:
    """A fairness metric with a percentile bootstrap CI and the per-group rates.

    Examples
    --------
    >>> r = fairness([1, 0, 1, 0], [1, 0, 0, 0], ["a", "a", "b", "b"],
    ...              "demographic_parity_difference", n_boot=50)
    >>> r.value
    0.5
    """
    c, names = _cells(y_true, y_pred, group)
    value = float(_metric(c, metric))
    if not np.isfinite(value):
        sel, tpr, fpr = _rates(c)
        raise ValueError(
            f"{metric} is undefined here: a group has no rows of the class it needs "
            f"(TPR by group {dict(zip(names, tpr.round(4).tolist(), strict=True))}, FPR "
            f"{dict(zip(names, fpr.round(4).tolist(), strict=True))})."
        )
    total = c.sum()
    draws = np.random.default_rng(seed).multinomial(int(total), (c / total).ravel(), size=n_boot)
    boots = _metric(draws.reshape(n_boot, *c.shape).astype(np.float64), metric)
    boots = boots[np.isfinite(boots)]
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    sel, tpr, fpr = _rates(c)
    by_group = {
        n: {
            "count": float(c[i].sum()),
            "selection_rate": float(sel[i]),
            "tpr": float(tpr[i]),
            "fpr": float(fpr[i]),
        }
        for i, n in enumerate(names)
    }
    return FairnessResult(value, float(lo), float(hi), by_group)
