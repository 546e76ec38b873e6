"""A randomised campaign table as the learners take it: one row per customer, the arm
assigned (0 = control, 1.. = the treatment arms in declared order), the outcome (0/1 or a
non-negative amount) and the features (text as pandas categories, booleans as 0/1).

Everything a campaign can get wrong is checked here, before any model is fitted, and
named with the value seen and a fix: a control value that is not in the column, a single
arm, an arm too small for its interval, a negative amount, an outcome that is not binary.
Rows without an arm or an outcome are dropped and counted; with a customer key, exact
duplicate rows are dropped and a customer assigned twice keeps the first assignment (both
counted); without one, identical rows may be different customers and are all kept.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from engine.config.target import TargetConfig, TargetProject
from engine.errors import ConfigError, DataError


@dataclass
class Campaign:
    x: pd.DataFrame
    arm: NDArray[np.int64]  # 0 = control, k = arms[k]
    y: NDArray[np.float64]
    arms: list[str]  # arms[0] is the control value
    outcome_kind: str
    keys: pd.Series | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    risk: NDArray[np.float64] | None = None  # target.risk, for the treat-by-risk rival

    @property
    def n_arms(self) -> int:
        return len(self.arms)

    def shares(self) -> NDArray[np.float64]:
        """Each arm's share of the rows: the propensity of a randomised assignment."""
        return np.bincount(self.arm, minlength=self.n_arms) / self.arm.size

    def subset(self, rows: NDArray[Any]) -> Campaign:
        keys = None if self.keys is None else self.keys.iloc[rows].reset_index(drop=True)
        x = self.x.iloc[rows]  # a copy already: renumber it in place (no second copy)
        x.index = pd.RangeIndex(len(x))
        return Campaign(
            x,
            self.arm[rows],
            self.y[rows],
            self.arms,
            self.outcome_kind,
            keys,
            dict(self.dropped),
            None if self.risk is None else self.risk[rows],
        )


def arm_text(values: pd.Series) -> pd.Series:
    """Treatment values as text, the way the project file names them: 1.0 -> '1', True ->
    'true', trimmed; blanks as missing."""

    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
            return pd.NA
        if isinstance(v, bool | np.bool_):
            return "true" if v else "false"
        if isinstance(v, float | np.floating) and float(v).is_integer():
            return str(int(v))
        s = str(v).strip()
        return s if s else pd.NA

    return values.map(one).astype("string")


def resolve_arms(
    treat: pd.Series, control: str, declared: list[str], where: str = "target.control"
) -> list[str]:
    """[control, arm1, ...]: the declared arms, else every other value (sorted)."""
    counts = Counter(treat.dropna().tolist())
    shown = ", ".join(f"{v!r} ({n:,})" for v, n in counts.most_common(8))
    if control not in counts:
        close = [v for v in counts if str(v).lower() == control.lower()]
        hint = f" ('{close[0]}' differs only in case)" if close else ""
        raise ConfigError(
            f"{where} is {control!r}, which is not a value of the treatment column "
            f"(values: {shown or 'none'}){hint}. Fix: set it to the control arm's value."
        )
    others = sorted(v for v in counts if v != control)
    arms = list(declared) or others
    missing = [a for a in arms if a not in counts]
    if missing:
        raise ConfigError(
            f"target.arms names {missing}, not values of the treatment column (values: "
            f"{shown}). Fix: list arms that occur, or leave target.arms empty."
        )
    if not arms:
        raise DataError(
            f"the treatment column has one arm only ({shown}): uplift compares a treated "
            "arm with the control. Fix: pass a table where some customers were treated and "
            "some were not, or point --treatment at the column that says which."
        )
    return [control, *arms]


def outcome_values(
    raw: pd.Series, t: TargetConfig, kind: str | None = None, option: str = "target.positive"
) -> tuple[NDArray[np.float64], str]:
    """The outcome as float (NaN where blank) and its kind (binary or amount)."""
    from engine.data.labels import normalize, resolve

    kind = kind or t.outcome_kind
    if kind == "amount":
        num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad_text = int(
            (pd.isna(num) & raw.notna() & (raw.astype("string").str.strip() != "")).sum()
        )
        if bad_text:
            ex = raw[pd.isna(num) & raw.notna()].astype(str).head(3).tolist()
            raise DataError(
                f"outcome '{t.outcome}' is an amount, but {bad_text:,} cell(s) are not "
                f"numbers (e.g. {ex}). Fix: clean them, or set target.outcome_kind: binary."
            )
        neg = num[num < 0]
        if neg.size:
            raise DataError(
                f"outcome '{t.outcome}' holds {neg.size:,} negative value(s) (smallest "
                f"{neg.min():g}); an amount such as spend is 0 or more. Fix: clip refunds "
                "to 0 in the source, or pick another outcome column."
            )
        return num, "amount"
    values: Counter[str] = Counter()
    norm = raw.map(lambda v: "" if v is None or v is pd.NA or v != v else normalize(v))
    for v, n in norm.value_counts().items():
        if v != "":
            values[str(v)] = int(n)
    lv = resolve(t.outcome, values, int((norm == "").sum()), t.positive, option, "outcome column")
    y = np.where(norm == "", np.nan, (norm == lv.positive).astype(np.float64))
    return y.astype(np.float64), "binary"


def features_frame(df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Model inputs: text as categories (XGBoost reads them natively), booleans as 0/1,
    numbers as float, times as days since 1970."""
    out: dict[str, Any] = {}
    for c in names:
        v = df[c]
        if pd.api.types.is_bool_dtype(v.dtype):
            out[c] = v.astype("float64")
        elif pd.api.types.is_datetime64_any_dtype(v.dtype):
            out[c] = (v - pd.Timestamp("1970-01-01")).dt.days.astype("float64")
        elif pd.api.types.is_numeric_dtype(v.dtype):
            out[c] = v.astype("float64")
        else:
            out[c] = v.astype("string").str.strip().replace("", pd.NA).astype("category")
    return pd.DataFrame(out, index=df.index)


def load_campaign(proj: TargetProject, workspace: Path) -> Campaign:
    """The project's campaign table through the one source resolver (its format, dialect,
    renames and types), checked and encoded."""
    from engine.data.sources import read_frame

    t = proj.target
    cols = [t.treatment, t.outcome, *t.features]
    cols += [c for c in (t.key, t.risk) if c]
    frame = read_frame(proj, t.source, workspace, list(dict.fromkeys(cols)))
    return campaign_from_frame(frame, t)


def campaign_from_frame(frame: pd.DataFrame, t: TargetConfig) -> Campaign:
    dropped: dict[str, int] = {}
    if t.key:  # without a key two identical rows may be two customers: both are kept
        n0 = len(frame)
        frame = frame.drop_duplicates()
        if len(frame) < n0:
            dropped["exact duplicate rows"] = n0 - len(frame)
    if t.key:
        dup = frame[t.key].duplicated(keep="first")
        if dup.any():
            dropped["customers assigned twice (first assignment kept)"] = int(dup.sum())
            frame = frame[~dup]
    treat = arm_text(frame[t.treatment])
    arms = resolve_arms(treat, t.control, t.arms)
    y, kind = outcome_values(frame[t.outcome], t)
    no_arm = treat.isna().to_numpy()
    other = (~treat.isin(arms)).to_numpy() & ~no_arm
    no_y = np.isnan(y)
    for why, mask in (
        ("no treatment value", no_arm),
        ("an arm not in target.arms", other),
        ("no outcome", no_y & ~no_arm & ~other),
    ):
        if mask.any():
            dropped[why] = int(mask.sum())
    keep = ~(no_arm | other | no_y)
    frame = frame[keep]
    code = {a: i for i, a in enumerate(arms)}
    arm = np.asarray(treat[keep].map(code).to_numpy(dtype=np.int64), dtype=np.int64)
    counts = np.bincount(arm, minlength=len(arms))
    small = [(arms[i], int(c)) for i, c in enumerate(counts) if c < t.min_arm_rows]
    if small:
        names = ", ".join(f"'{a}' ({c:,} rows)" for a, c in small)
        raise DataError(
            f"arm(s) {names} have fewer than target.min_arm_rows ({t.min_arm_rows}) rows: "
            "too few to fit a model per fold or give a lift interval. Fix: merge the arm "
            "into another (a rename in the source), leave it out by listing the others in "
            "target.arms, or pass a larger table."
        )
    if kind == "binary":
        ys = y[keep]
        for i, a in enumerate(arms):
            m = ys[arm == i]
            if m.min() == m.max():
                raise DataError(
                    f"in arm '{a}' every row has outcome {m[0]:g}: no lift can be learned "
                    "or measured against it. Fix: check target.outcome and target.positive."
                )
    x = features_frame(frame, t.features).reset_index(drop=True)
    keys = frame[t.key].reset_index(drop=True) if t.key else None
    risk = None
    if t.risk:
        r = pd.to_numeric(frame[t.risk], errors="coerce").to_numpy(dtype=np.float64)
        risk = np.where(np.isnan(r), np.nanmedian(r) if np.isfinite(r).any() else 0.0, r)
    return Campaign(x, arm, y[keep], arms, kind, keys, dropped, risk)
