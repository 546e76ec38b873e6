"""Segments with honest uncertainty: K-means clusters of customers and effect-tree leaves,
each with its size and outcome rate per arm, its lift against the control with a 95%
interval, and a Benjamini-Hochberg decision across every (segment, arm) compared.

- **K-means** (scikit-learn) on the features alone (numbers standardised, categories
  one-hot), so estimating each cluster's lift on the same rows is honest. k is given, or
  chosen in 2..k_max by the silhouette score on a sample (the criterion is named in the
  card).
- **Effect tree**: a shallow regression tree fitted on out-of-fold uplift (one output per
  treated arm), read as rules. Its splits are chosen where the predicted uplift differs,
  so the rows it is fitted on would overstate the difference between leaves: the tree is
  fitted on a random half of the rows (discovery), with uplift cross-fitted within that
  half alone, and every leaf's lift is estimated on the other half only (estimation), as
  in Athey and Imbens' honest trees.
  On a campaign with no effect the share of segments declared different then stays at
  the nominal rate (tests/test_targeting_stats.py simulates it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from engine.kernels.lift import cell_lift
from engine.kernels.report import benjamini_hochberg
from engine.targeting.campaign import Campaign

TOP_CATEGORIES = 12


def encode(
    x: pd.DataFrame,
    columns: list[str] | None = None,
    few_categories: bool = False,
    fill: dict[str, float] | None = None,
) -> tuple[NDArray[np.float64], list[str]]:
    """Numbers as they are (missing -> the median), categories one-hot (the commonest
        TOP_CATEGORIES of each), as one float matrix with a name per column. ``few_categories``:
        leave out categorical columns with more levels than that (K-means distances over a
        hundred village dummies cluster villages, not customers). ``fill``: the medians to fill
    missing numbers with (the training rows'; filled in here when empty)."""
    parts: list[NDArray[np.float64]] = []
    names: list[str] = []
    for c in x.columns:
        v = x[c]
        if isinstance(v.dtype, pd.CategoricalDtype):
            if few_categories and v.nunique() > TOP_CATEGORIES:
                continue
            top = v.value_counts().index[:TOP_CATEGORIES].tolist()
            for cat in top:
                parts.append((v == cat).to_numpy(dtype=np.float64))
                names.append(f"{c}={cat}")
        else:
            a = v.to_numpy(dtype=np.float64)
            if fill is not None and c in fill:
                med = fill[c]
            else:
                med = float(np.nanmedian(a)) if np.isfinite(a).any() else 0.0
                if fill is not None:
                    fill[c] = med
            parts.append(np.where(np.isnan(a), med, a))
            names.append(c)
    if columns is not None:  # the columns another encoding produced, in its order
        by = dict(zip(names, parts, strict=True))
        parts = [by.get(n, np.zeros(len(x))) for n in columns]
        names = list(columns)
    return np.column_stack(parts) if parts else np.zeros((len(x), 0)), names


@dataclass
class Segmentation:
    kind: str  # "kmeans" | "effect_tree"
    codes: NDArray[np.int64]  # per row; -1 = not used for estimation
    names: list[str]
    criterion: str
    detail: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # the fitted scaler+kmeans or tree, to assign new rows
    columns: list[str] = field(default_factory=list)
    fill: dict[str, float] = field(default_factory=dict)  # training medians

    def assign(self, x: pd.DataFrame) -> NDArray[np.int64]:
        m, _ = encode(x, self.columns, fill=dict(self.fill))
        if self.kind == "kmeans":
            scaler, km = self.model
            return np.asarray(km.predict(scaler.transform(m)), dtype=np.int64)
        tree, leaf_code = self.model
        return np.asarray([leaf_code[v] for v in tree.apply(m)], dtype=np.int64)


def kmeans(x: pd.DataFrame, k: int | str = "auto", k_max: int = 6, seed: int = 0) -> Segmentation:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    fill: dict[str, float] = {}
    m, cols = encode(x, few_categories=True, fill=fill)
    scaler = StandardScaler().fit(m)
    z = scaler.transform(m)
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(z), size=min(5000, len(z)), replace=False)
    scores: dict[int, float] = {}
    if k == "auto":
        for kk in range(2, max(2, min(k_max, len(z) - 1)) + 1):
            km = KMeans(n_clusters=kk, n_init=4, random_state=seed).fit(z)
            lab = km.labels_[sample]
            if len(np.unique(lab)) > 1:
                scores[kk] = float(silhouette_score(z[sample], lab))
        chosen = max(scores, key=lambda kk: scores[kk]) if scores else 2
        criterion = (
            f"k = {chosen} of 2..{k_max} by the silhouette score on {sample.size:,} rows ("
            + ", ".join(f"k={kk}: {v:.3f}" for kk, v in scores.items())
            + ")"
        )
    else:
        chosen = int(k)
        criterion = f"k = {chosen}, as the project file sets it"
    km = KMeans(n_clusters=chosen, n_init=4, random_state=seed).fit(z)
    centers = scaler.inverse_transform(km.cluster_centers_)
    names = []
    for ci in range(chosen):
        # what sets the cluster apart most: its largest standardised centres, a category
        # only where most of the cluster has it
        order = np.argsort(-np.abs(km.cluster_centers_[ci]))
        picked = [
            j
            for j in order
            if ("=" not in cols[j] and abs(km.cluster_centers_[ci, j]) > 0.3)
            or ("=" in cols[j] and centers[ci, j] >= 0.5)
        ][:3]
        desc = ", ".join(_describe(cols[j], centers[ci, j]) for j in picked) or "average"
        names.append(f"cluster {ci + 1} ({desc})")
    return Segmentation(
        "kmeans",
        np.asarray(km.labels_, dtype=np.int64),
        names,
        criterion,
        {"silhouette": scores, "k": chosen},
        (scaler, km),
        cols,
        fill,
    )


def _describe(col: str, v: float) -> str:
    if "=" in col:
        return f"{col.replace('=', ' ')} ({v:.0%})"
    return f"{col} ~{v:.3g}"


def effect_tree(
    c: Campaign,
    uplift_of: Callable[[Campaign], NDArray[np.float64]],
    depth: int = 2,
    min_share: float = 0.05,
    seed: int = 0,
) -> Segmentation:
    """Leaves of a tree fitted on the discovery half; codes = -1 on that half.

    ``uplift_of(half)`` returns out-of-fold uplift for the discovery half computed from
    that half alone (cross-fitted within it): uplift from models that saw the estimation
    half would carry its outcomes' noise into the splits (a null campaign then declared
    segments in 22% of runs instead of 5%)."""
    from sklearn.tree import DecisionTreeRegressor

    fill: dict[str, float] = {}
    m, cols = encode(c.x, fill=fill)
    rng = np.random.default_rng(seed)
    discover = np.zeros(c.arm.size, dtype=bool)
    for k in range(c.n_arms):  # half of every arm
        idx = np.flatnonzero(c.arm == k)
        discover[rng.choice(idx, size=idx.size // 2, replace=False)] = True
    tau = uplift_of(c.subset(np.flatnonzero(discover)))
    tree = DecisionTreeRegressor(
        max_depth=depth,
        min_samples_leaf=max(20, int(min_share * discover.sum())),
        random_state=seed,
    ).fit(m[discover], tau)
    leaves = np.flatnonzero(tree.tree_.children_left == -1)
    leaf_code = {int(leaf): i for i, leaf in enumerate(leaves)}
    rules = _rules(tree, cols)
    names = [rules[int(leaf)] for leaf in leaves]
    codes = np.asarray([leaf_code[v] for v in tree.apply(m)], dtype=np.int64)
    codes[discover] = -1
    return Segmentation(
        "effect_tree",
        codes,
        names,
        f"a depth-{depth} tree on out-of-fold uplift of {int(discover.sum()):,} rows "
        f"(cross-fitted within them); lift estimated on the other "
        f"{int((~discover).sum()):,} (honest split)",
        {"depth": depth},
        (tree, leaf_code),
        cols,
        fill,
    )


def _rules(tree: Any, cols: list[str]) -> dict[int, str]:
    t = tree.tree_
    out: dict[int, str] = {}

    def walk(node: int, conds: list[str]) -> None:
        if t.children_left[node] == -1:
            out[node] = " and ".join(conds) or "everyone"
            return
        name, thr = cols[t.feature[node]], float(t.threshold[node])
        if "=" in name:
            col, cat = name.split("=", 1)
            left, right = f"{col} is not {cat}", f"{col} is {cat}"
        else:
            left, right = f"{name} <= {thr:.4g}", f"{name} > {thr:.4g}"
        walk(int(t.children_left[node]), [*conds, left])
        walk(int(t.children_right[node]), [*conds, right])

    walk(0, [])
    return out


def segment_table(
    c: Campaign,
    seg: Segmentation,
    *,
    fdr: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (segment, treated arm): sizes, outcome means, lift with its Welch and
    bootstrap 95% CIs, the p-value and its BH adjustment across every row of the table."""
    use = seg.codes >= 0
    k = len(seg.names)
    r = cell_lift(
        c.y[use],
        c.arm[use],
        seg.codes[use],
        n_segments=k,
        n_arms=c.n_arms,
        n_boot=n_boot,
        seed=seed,
    )
    p = r.p_value.reshape(-1)
    ok = np.isfinite(p)
    flat = np.full(p.size, np.nan)
    flat[ok] = benjamini_hochberg(p[ok])
    adj = flat.reshape(r.p_value.shape)
    rows: list[dict[str, Any]] = []
    for s in range(k):
        for a in range(c.n_arms - 1):
            rows.append(
                {
                    "segment": seg.names[s],
                    "arm": c.arms[a + 1],
                    "rows_arm": int(r.n_arm[s, a]),
                    "rows_control": int(r.n_control[s, a]),
                    "mean_arm": _f(r.mean_arm[s, a]),
                    "mean_control": _f(r.mean_control[s, a]),
                    "lift": _f(r.lift[s, a]),
                    "low": _f(r.low[s, a]),
                    "high": _f(r.high[s, a]),
                    "boot_low": _f(r.boot_low[s, a]),
                    "boot_high": _f(r.boot_high[s, a]),
                    "p_value": _f(r.p_value[s, a]),
                    "p_adjusted": _f(adj[s, a]),
                    "significant": bool(np.isfinite(adj[s, a]) and adj[s, a] <= fdr),
                }
            )
    return rows


def _f(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None
