"""One oracle table: each kernel with its independent reference.

tests/test_oracles.py runs every entry at test size for many seeds and asserts agreement;
benchmarks/bench_kernels.py runs the same entries at full size and reports the ratio.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Oracle:
    name: str
    reference_name: str
    make: Callable[[int, int], tuple[Any, ...]]  # (n, seed) -> inputs
    ours: Callable[..., Any]
    reference: Callable[..., Any]
    agree: Callable[[Any, Any], bool]
    full_n: int
    test_n: int


def _two_normals(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), rng.normal(0.02, 1.05, size=n)


def _codes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 8, n), rng.integers(0, 9, n)


def _uplift(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, n)
    x = rng.normal(size=n)
    y = (rng.random(n) < 0.2 + 0.1 * t * (x > 0)).astype(int)
    return y, t, x + rng.normal(size=n)


def _fair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = rng.choice(np.array(["F", "M"]), n)
    y = (rng.random(n) < 0.3).astype(int)
    p = (rng.random(n) < np.where(g == "M", 0.35, 0.3)).astype(int)
    return y, p, g


def _close(rel: float = 1e-9, abs_: float = 1e-12) -> Callable[[Any, Any], bool]:
    return lambda a, b: bool(
        np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=rel, atol=abs_)
    )


def _ks_ours(a: np.ndarray, b: np.ndarray) -> float:
    from engine.kernels.drift import ks_2samp

    return ks_2samp(a, b, method="asymp").statistic


def _ks_ref(a: np.ndarray, b: np.ndarray) -> float:
    import scipy.stats as st

    return float(st.ks_2samp(a, b, method="asymp").statistic)


def _wd_ours(a: np.ndarray, b: np.ndarray) -> float:
    from engine.kernels.drift import wasserstein

    return wasserstein(a, b)


def _wd_ref(a: np.ndarray, b: np.ndarray) -> float:
    import scipy.stats as st

    return float(st.wasserstein_distance(a, b))


def _psi_ours(a: np.ndarray, b: np.ndarray) -> float:
    from engine.kernels.drift import psi

    return psi(a, b, 10)


def _psi_ref(a: np.ndarray, b: np.ndarray) -> float:
    import pandas as pd

    edges = np.unique(np.quantile(a, np.arange(1, 10) / 10, method="inverted_cdf"))
    cuts = [-np.inf, *edges, np.inf]
    p = pd.Series(pd.cut(a, cuts)).value_counts(sort=False).to_numpy() / a.size
    q = pd.Series(pd.cut(b, cuts)).value_counts(sort=False).to_numpy() / b.size
    p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def _js_ours(a: np.ndarray, b: np.ndarray) -> float:
    from engine.kernels.drift import jensen_shannon

    return jensen_shannon(a, b, bins=30)


def _js_ref(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.spatial.distance import jensenshannon

    e = np.histogram_bin_edges([min(a.min(), b.min()), max(a.max(), b.max())], 30)
    return float(jensenshannon(np.histogram(a, e)[0], np.histogram(b, e)[0], base=2))


def _chi2_ours(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    from engine.kernels.drift import chi2

    r = chi2(a, b)
    return r.statistic, r.pvalue


def _chi2_ref(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    import scipy.stats as st

    k = max(a.max(), b.max()) + 1
    t = np.vstack([np.bincount(a, minlength=k), np.bincount(b, minlength=k)])
    r = st.chi2_contingency(t[:, t.sum(0) > 0], correction=False)
    return float(r.statistic), float(r.pvalue)


def _uplift_ours(y: np.ndarray, t: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    from engine.kernels.qini import uplift_metrics

    m = uplift_metrics(y, t, s)
    return m.qini_auc, m.uplift_auc


def _uplift_ref(y: np.ndarray, t: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sklift.metrics import qini_auc_score, uplift_auc_score

        return float(qini_auc_score(y, s, t)), float(uplift_auc_score(y, s, t))


def _uplift_ref_both(y: np.ndarray, t: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """scikit-uplift (compared) plus causalml's Qini and AUUC (timed; other normalization)."""
    import pandas as pd
    from causalml.metrics import auuc_score, qini_score

    out = _uplift_ref(y, t, s)
    df = pd.DataFrame({"y": y, "w": t, "score": s})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qini_score(df, outcome_col="y", treatment_col="w")
        auuc_score(df, outcome_col="y", treatment_col="w")
    return out


def _fair_ours(y: np.ndarray, p: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    from engine.kernels.fairness import fairness

    a = fairness(y, p, g, "demographic_parity_difference").value
    b = fairness(y, p, g, "equalized_odds_difference").value
    return a, b


def _fair_ref(y: np.ndarray, p: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    return (
        float(demographic_parity_difference(y, p, sensitive_features=g)),
        float(equalized_odds_difference(y, p, sensitive_features=g)),
    )


ORACLES: list[Oracle] = [
    Oracle(
        "ks_2samp",
        "scipy.stats.ks_2samp",
        _two_normals,
        _ks_ours,
        _ks_ref,
        _close(0, 1e-12),
        10_000_000,
        3_000,
    ),
    Oracle(
        "wasserstein",
        "scipy.stats.wasserstein_distance",
        _two_normals,
        _wd_ours,
        _wd_ref,
        _close(1e-9),
        10_000_000,
        3_000,
    ),
    Oracle(
        "psi",
        "numpy quantiles + pandas.cut",
        _two_normals,
        _psi_ours,
        _psi_ref,
        _close(1e-9),
        10_000_000,
        3_000,
    ),
    Oracle(
        "jensen_shannon",
        "scipy jensenshannon(np.histogram)",
        _two_normals,
        _js_ours,
        _js_ref,
        _close(1e-9),
        10_000_000,
        3_000,
    ),
    Oracle(
        "chi2",
        "scipy.stats.chi2_contingency",
        _codes,
        _chi2_ours,
        _chi2_ref,
        _close(1e-9, 1e-300),
        10_000_000,
        3_000,
    ),
    Oracle(
        "qini+uplift AUC+ATE",
        "scikit-uplift + causalml",
        _uplift,
        _uplift_ours,
        _uplift_ref_both,
        _close(0, 1e-9),
        1_000_000,
        3_000,
    ),
    Oracle(
        "fairness DP+EO",
        "fairlearn",
        _fair,
        _fair_ours,
        _fair_ref,
        _close(0, 1e-12),
        1_000_000,
        3_000,
    ),
]
