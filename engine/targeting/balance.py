"""Does the table look randomised? Arm balance on every feature.

Per feature and treatment arm against the control: numbers by the standardised mean
difference (SMD, the difference in means over the pooled standard deviation) with a Welch
test, categories by Cramer's V with a chi-square test (V bias-corrected as in Bergsma
2013: uncorrected, a table with many sparse categories looks imbalanced under any
randomisation). The p-values are adjusted by Benjamini-Hochberg across every comparison.
A comparison is flagged when it is both material (|SMD| > 0.1, the usual rule of thumb in
the matching literature; V > 0.1) and significant (adjusted p < 0.05): a large table
makes trivial differences significant, a small one makes large ones noisy, and a
randomised assignment shows neither.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from engine.kernels.report import benjamini_hochberg
from engine.kernels.special import chi2_sf

SMD_MATERIAL = 0.1
V_MATERIAL = 0.1
FDR = 0.05


def check(x: pd.DataFrame, arm: np.ndarray, arms: list[str]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for c in x.columns:
        v = x[c]
        for k in range(1, len(arms)):
            a, b = v[arm == k], v[arm == 0]
            if isinstance(v.dtype, pd.CategoricalDtype):
                ca = a.value_counts()
                cb = b.value_counts().reindex(ca.index, fill_value=0)
                table = np.vstack([ca.to_numpy(), cb.to_numpy()]).astype(np.float64)
                table = table[:, table.sum(axis=0) > 0]
                exp = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
                stat = float(((table - exp) ** 2 / np.where(exp > 0, exp, 1)).sum())
                dof = max(table.shape[1] - 1, 1)
                n = float(table.sum())
                # bias-corrected Cramer's V (Bergsma 2013): a randomised assignment over
                # many sparse categories has chi2 ~ dof, not 0; the correction removes it
                phi2 = max(0.0, stat / n - dof / (n - 1))
                r = table.shape[1]
                rc, kc = r - (r - 1) ** 2 / (n - 1), 2 - 1 / (n - 1)
                cramer = math.sqrt(phi2 / max(min(rc, kc) - 1, 1e-12))
                rows.append(
                    {
                        "feature": c,
                        "arm": arms[k],
                        "measure": "Cramer's V",
                        "value": cramer,
                        "p_value": chi2_sf(stat, dof),
                        "material": cramer > V_MATERIAL,
                    }
                )
            else:
                fa = a.to_numpy(dtype=np.float64)
                fb = b.to_numpy(dtype=np.float64)
                fa, fb = fa[np.isfinite(fa)], fb[np.isfinite(fb)]
                if fa.size < 2 or fb.size < 2:
                    continue
                va, vb = fa.var(ddof=1), fb.var(ddof=1)
                pooled = math.sqrt((va + vb) / 2)
                diff = float(fa.mean() - fb.mean())
                smd = diff / pooled if pooled > 0 else 0.0
                se = math.sqrt(va / fa.size + vb / fb.size)
                p = math.erfc(abs(diff / se) / math.sqrt(2)) if se > 0 else 1.0
                rows.append(
                    {
                        "feature": c,
                        "arm": arms[k],
                        "measure": "SMD",
                        "value": smd,
                        "p_value": p,
                        "material": abs(smd) > SMD_MATERIAL,
                    }
                )
    if rows:
        adj = benjamini_hochberg([r["p_value"] for r in rows])
        for r, q in zip(rows, adj, strict=True):
            r["p_adjusted"] = float(q)
            r["flagged"] = bool(r["material"] and q < FDR)
    flagged = [r for r in rows if r["flagged"]]
    counts = np.bincount(arm, minlength=len(arms))
    return {
        "arms": {a: int(n) for a, n in zip(arms, counts, strict=True)},
        "comparisons": rows,
        "flagged": flagged,
        "looks_randomised": not flagged,
        "rule": f"flagged: |SMD| > {SMD_MATERIAL} or Cramer's V > {V_MATERIAL}, and BH-adjusted "
        f"p < {FDR}",
    }


def warning(b: dict[str, Any]) -> str | None:
    if b["looks_randomised"]:
        return None
    worst = sorted(b["flagged"], key=lambda r: -abs(r["value"]))[:4]
    shown = "; ".join(
        f"{r['feature']} ({r['arm']} vs control: {r['measure']} {r['value']:+.3f})" for r in worst
    )
    return (
        f"the arms differ on {len(b['flagged'])} feature comparison(s), which a random "
        f"assignment would not do: {shown}. Uplift estimated from this table may be "
        "confounded: check how customers were assigned before acting on it."
    )
