"""The reference profile of a model version: the training window reduced to what the
monitor compares live traffic with, logged with the model in MLflow at registration, so
monitoring never re-reads training data.

Per feature: numeric ones a sketch (engine.kernels.sketch: 1,000 quantile edges with exact
counts, and the PSI bins) plus count, nulls, min, max, mean and variance (and the fourth
central moment, which the variance's interval needs); categorical ones the count of every
category and nulls. The score distribution (a sketch, mean, decision rate at the threshold),
the label rate, per sensitive attribute and group the label rate and selection rate (with
their counts), the score-label correlation and AUC on the held-out test rows, and the
campaign ATE when the project has a treatment.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.kernels.sketch import NumericSketch

PROFILE_ARTIFACT = "profile/reference_profile.json"
FINE_BINS = 1000


DIGITS = 4  # significant digits of a profile's edges, min and max


def _outward(v: float, how: Any) -> float:
    """``v`` rounded to DIGITS significant digits, down (floor) or up (ceil)."""
    if v == 0 or not np.isfinite(v):
        return v
    scale = 10.0 ** (DIGITS - 1 - int(np.floor(np.log10(abs(v)))))
    return float(how(v * scale) / scale)


def _numeric(values: np.ndarray, psi_bins: int) -> dict[str, Any]:
    a = np.asarray(values, dtype=np.float64)
    ok = a[np.isfinite(a)]
    out: dict[str, Any] = {"kind": "numeric", "n": int(a.size), "nulls": int(a.size - ok.size)}
    if ok.size == 0:
        return out
    mean = float(ok.mean())
    d = ok - mean
    out.update(
        # rounded outward to DIGITS significant digits, and the sketch's edges rounded too
        # (NumericSketch.coarse): the profile holds no row's exact value (erasure)
        min=_outward(float(ok.min()), np.floor),
        max=_outward(float(ok.max()), np.ceil),
        mean=mean,
        variance=float(ok.var(ddof=1)) if ok.size > 1 else 0.0,
        m4=float((d**4).mean()),
        sketch=NumericSketch.coarse(ok, FINE_BINS, psi_bins, DIGITS).to_dict(),
    )
    return out


def _categorical(values: pd.Series) -> dict[str, Any]:
    s = values.astype(object)
    counts = s.dropna().astype(str).value_counts()
    return {
        "kind": "categorical",
        "n": int(s.size),
        "nulls": int(s.isna().sum()),
        "counts": {str(k): int(v) for k, v in counts.items()},
    }


def build_profile(
    *,
    rows: pd.DataFrame,
    scores: np.ndarray,
    label: str,
    features: list[str],
    categorical: list[str],
    sensitive: list[str],
    threshold: float,
    psi_bins: int,
    test_labels: np.ndarray,
    test_scores: np.ndarray,
    uplift: dict[str, Any] | None,
) -> dict[str, Any]:
    """The profile of the training window ``rows`` (train + validation) with the model's
    ``scores`` on them; ``test_*`` are the held-out rows (for the concept reference)."""
    from engine.kernels.metrics import auc

    y = rows[label].to_numpy(dtype=np.float64)
    sel = scores >= threshold
    feats: dict[str, Any] = {}
    for f in features:
        feats[f] = (
            _categorical(rows[f])
            if f in categorical
            else _numeric(rows[f].to_numpy(dtype=np.float64, na_value=np.nan), psi_bins)
        )
    groups: dict[str, Any] = {}
    for attr in sensitive:
        if attr not in rows:
            continue
        g = np.array([None if pd.isna(v) else v for v in rows[attr].tolist()], dtype=object)
        per: dict[str, Any] = {}
        for name in sorted({str(v) for v in g if v is not None}):
            m = np.asarray([v is not None and str(v) == name for v in g])
            per[name] = {
                "n": int(m.sum()),
                "positives": int(y[m].sum()),
                "selected": int(sel[m].sum()),
                "label_rate": float(y[m].mean()),
                "selection_rate": float(sel[m].mean()),
            }
        groups[attr] = per
    corr = float(np.corrcoef(test_scores, test_labels)[0, 1]) if test_labels.std() > 0 else None
    return {
        "profile_version": 1,
        "rows": len(rows),
        "threshold": threshold,
        "features": feats,
        "score": {**_numeric(scores, psi_bins), "decision_rate": float(sel.mean())},
        "label_rate": float(y.mean()),
        "groups": groups,
        "concept": {
            "test_rows": int(test_labels.size),
            "correlation": corr,
            "auc": float(auc(test_labels, test_scores)) if 0 < test_labels.mean() < 1 else None,
        },
        "uplift": (
            {k: uplift["ate"][k] for k in ("estimate", "low", "high")} | {"rows": uplift["rows"]}
            if uplift
            else None
        ),
    }


def profile_for(
    cfg: Any, ts: Any, scorer: Any, uplift: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The profile of a model trained on ``ts`` (train + validation rows; the test rows
    give the concept reference)."""
    rows = pd.concat([ts.train, ts.valid])
    return build_profile(
        rows=rows,
        scores=scorer.proba(ts.x(rows)),
        label=ts.label,
        features=ts.features,
        categorical=ts.schema.categorical,
        sensitive=[a for a in cfg.sensitive if a in rows],
        threshold=cfg.serve.threshold,
        psi_bins=cfg.drift.psi_bins,
        test_labels=ts.test[ts.label].to_numpy(dtype="float64"),
        test_scores=scorer.proba(ts.x("test")),
        uplift=uplift,
    )


def log_profile(profile: dict[str, Any], run_id: str) -> None:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / Path(PROFILE_ARTIFACT).name
        p.write_text(json.dumps(profile))
        MlflowClient().log_artifact(
            run_id, str(p), artifact_path=str(Path(PROFILE_ARTIFACT).parent)
        )


def load_profile(run_id: str, cache: Path | None = None) -> dict[str, Any]:
    """A version's profile (from MLflow; kept in ``cache`` after the first read)."""
    if cache is not None and cache.is_file():
        return dict(json.loads(cache.read_text()))
    import mlflow

    text = mlflow.artifacts.load_text(f"runs:/{run_id}/{PROFILE_ARTIFACT}")
    if cache is not None:
        from engine.workspace import atomic_write_text

        atomic_write_text(cache, text)
    return dict(json.loads(text))
