"""Columns that leak the label: outcomes measured after it, or copies of it.

A campaign table holds, beside who was e-mailed and who visited, how much each customer
then spent: ``spend > 0`` implies ``visit = 1``. Such a column makes a model that looks
perfect and is useless at prediction time (the value is not known yet). Three signs, each
with the reason written out (the numbers are the table's own):

- **determines the label**: every value of the column goes with one label value, on every
  non-null row (a copy of the label, or a recoding of it);
- **separates it alone**: a single-feature ROC AUC of at least :data:`AUC_NEAR_ONE`;
- **implies it**: the rows where the column is not its most common value (a purchase
  amount, a conversion flag) all have one label value, over at least :data:`MIN_REGION`
  rows and a share :data:`MIN_SHARE` of the table.

``insight init`` leaves such columns out of the features with a note; training checks the
snapshot's features the same way and refuses unless the column is listed under
``train.allow_leaky`` (known at prediction time after all). A column that looks like a
randomised treatment (``treatment``, ``variant``, values such as ``No E-Mail`` or
``control``) describes what was done, not the customer, and is left out by init with a note
(:func:`treatment_reason`).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

AUC_NEAR_ONE = 0.99
MIN_REGION = 30
MIN_SHARE = 0.005
SAMPLE = 200_000  # rows looked at; enough to see a near-perfect separation

TREATMENT_NAMES = re.compile(
    r"(^|_)(treat|treated|treatment|variant|arm|assignment|experiment_group|ab_group|"
    r"test_group|control_group|holdout)($|_)"
)
CONTROL_VALUES = re.compile(r"^(no[ _-].+|control|none|untreated|holdout|not[ _-]treated)$", re.I)


def leak_reason(values: pd.Series, y: np.ndarray) -> str | None:
    """Why a column leaks the 0/1 label ``y`` (aligned with ``values``), or None.

    Examples
    --------
    >>> y = np.array([0, 1] * 50)
    >>> leak_reason(pd.Series(y * 3.0), y)  # doctest: +ELLIPSIS
    'determines the label: ...'
    """
    v = values.reset_index(drop=True)
    yf = pd.Series(np.asarray(y, dtype=np.float64))
    keep = v.notna().to_numpy() & yf.notna().to_numpy()
    if len(v) > SAMPLE:
        keep &= np.random.default_rng(0).random(len(v)) < SAMPLE / len(v)
    v, yy = v[keep], yf[keep].astype(int)
    n = len(v)
    pos = int(yy.sum())
    if n < MIN_REGION or pos == 0 or pos == n:
        return None
    text = v.astype(str)
    rates = yy.groupby(text).agg(["mean", "size"])
    distinct = len(rates)
    # a few values, each seen often enough that its purity is not chance
    if distinct <= 50 and n >= 5 * distinct and bool(rates["mean"].isin([0.0, 1.0]).all()):
        return (
            f"determines the label: each of its {distinct:,} value(s) goes with one label "
            f"value on all {n:,} non-null rows (a copy or recoding of the label)"
        )
    nums = pd.to_numeric(v, errors="coerce") if not pd.api.types.is_bool_dtype(v) else v
    if pd.api.types.is_numeric_dtype(nums) and nums.notna().all() and nums.nunique() > 2:
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(yy, nums.astype(np.float64)))
        best = max(auc, 1 - auc)
        if best >= AUC_NEAR_ONE:
            return (
                f"separates the label almost perfectly on its own (single-feature AUC "
                f"{best:.3f} on {n:,} rows)"
            )
    mode = text.mode().iloc[0]
    region = yy[(text != mode).to_numpy()]
    if len(region) >= max(MIN_REGION, MIN_SHARE * n) and region.nunique() == 1:
        label = int(region.iloc[0])
        return (
            f"implies the label: all {len(region):,} rows where it is not {mode!r} have "
            f"label {label} (it looks measured after the outcome, e.g. a purchase amount "
            "that implies a visit)"
        )
    return None


def treatment_reason(name: str, values: pd.Series) -> str | None:
    """Why a column looks like a randomised treatment assignment, or None: named so, or a
    few text values one of which reads as the control arm ('No E-Mail', 'control')."""
    distinct = values.dropna().astype(str).str.strip().unique()
    if TREATMENT_NAMES.search(name) and 2 <= len(distinct) <= 10:
        return f"named like a treatment assignment ({len(distinct)} values)"
    if 2 <= len(distinct) <= 6 and any(CONTROL_VALUES.match(d) for d in distinct):
        arms = ", ".join(repr(d) for d in sorted(distinct))
        return f"its values read as campaign arms ({arms})"
    return None
