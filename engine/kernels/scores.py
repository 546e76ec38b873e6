"""Metrics of scores against labels that the model card and the live monitor share: lift in
the top decile, the confusion counts of decisions, and calibration (the one reliability
table and expected calibration error of the engine). NumPy in and out.

Pinned to references in tests/test_report.py (confusion: scikit-learn's confusion_matrix;
lift: a pandas reading) and tests/test_kernels_scores.py (calibration: sklearn's
calibration_curve on the same quantile bins)."""

from __future__ import annotations

from typing import Any

import numpy as np


def lift_top(y: np.ndarray, s: np.ndarray, share: float = 0.1) -> float | None:
    """Lift in the top ``share`` of scores: the positive rate among the ``round(share * n)``
    highest-scored rows (at least one) over the positive rate of all rows."""
    n = y.size
    if n == 0 or y.mean() == 0:
        return None
    k = max(1, round(share * n))
    top = np.argsort(-s, kind="stable")[:k]
    return float(y[top].mean() / y.mean())


def confusion(y: np.ndarray, d: np.ndarray) -> dict[str, int]:
    """Counts of the decisions against the labels (the business-value matrix's cells)."""
    yb, db = y.astype(bool), d.astype(bool)
    return {
        "tp": int((yb & db).sum()),
        "fp": int((~yb & db).sum()),
        "fn": int((yb & ~db).sum()),
        "tn": int((~yb & ~db).sum()),
    }


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability table over score quantile bins and the expected calibration error (the
    bins' mean |mean score - observed rate|, weighted by their rows)."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(0, edges.size - 2))
    rows = []
    ece = 0.0
    for b in range(max(1, edges.size - 1)):
        m = idx == b
        if not m.any():
            continue
        mp, my = float(p[m].mean()), float(y[m].mean())
        ece += m.mean() * abs(mp - my)
        rows.append({"bin": b, "rows": int(m.sum()), "mean_score": mp, "observed_rate": my})
    return {"ece": float(ece), "bins": rows}
