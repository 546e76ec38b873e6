"""The input schema of a model: which features it takes, numeric or categorical, and for a
categorical feature the categories it was trained on.

One schema turns any input (training rows, serving rows, online-table rows) into the one
model-input frame every family takes: numeric columns as float64 (missing: NaN),
categorical columns as pandas ``Categorical`` with the training categories in a fixed order
(missing or unseen: NaN). Fixing the categories is what keeps codes identical between
training and serving for XGBoost's native categorical support and the sklearn encoders.

Choices (where users' tables need one):

- a numeric column is any integer, float, decimal or boolean column (booleans as 0/1);
  text, string and pandas categorical columns are categorical;
- categories are the distinct non-null values of the training rows, as text, most frequent
  first, at most ``MAX_CATEGORIES``; rarer values are treated as unseen (missing). An
  identifier-like column (as many values as rows) should not be a feature at all:
  ``insight init`` leaves such columns out;
- an unseen category at serving time is treated as missing and counted (the audit record
  says which feature and how many).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

MAX_CATEGORIES = 200


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: Literal["numeric", "categorical"]
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputSchema:
    features: tuple[FeatureSpec, ...]
    _index: dict[str, FeatureSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({f.name: f for f in self.features})

    # ---- building ----------------------------------------------------------------------

    @classmethod
    def infer(cls, df: pd.DataFrame, names: list[str]) -> InputSchema:
        """The schema of ``names`` as they appear in ``df`` (the training rows)."""
        specs = []
        for n in names:
            col = df[n]
            if is_numeric(col):
                specs.append(FeatureSpec(n, "numeric"))
            else:
                counts = col.dropna().astype(str).value_counts(sort=True)
                cats = sorted(counts.index[:MAX_CATEGORIES].tolist(), key=lambda v: (-counts[v], v))
                specs.append(FeatureSpec(n, "categorical", tuple(cats)))
        return cls(tuple(specs))

    @classmethod
    def numeric(cls, names: list[str]) -> InputSchema:
        return cls(tuple(FeatureSpec(n, "numeric") for n in names))

    def to_json(self) -> str:
        return json.dumps(
            [
                {
                    "name": f.name,
                    "kind": f.kind,
                    **({"categories": list(f.categories)} if f.kind == "categorical" else {}),
                }
                for f in self.features
            ]
        )

    @classmethod
    def from_json(cls, text: str) -> InputSchema:
        return cls(
            tuple(
                FeatureSpec(d["name"], d["kind"], tuple(d.get("categories", ())))
                for d in json.loads(text)
            )
        )

    # ---- reading ------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    @property
    def numeric_names(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    def spec(self, name: str) -> FeatureSpec:
        return self._index[name]

    # ---- applying -----------------------------------------------------------------------

    def frame(self, data: Any) -> pd.DataFrame:
        """The model-input frame of ``data`` (a DataFrame with these columns, or a 2-D array
        of numbers in this column order)."""
        return self.frame_and_unseen(data)[0]

    def frame_and_unseen(self, data: Any) -> tuple[pd.DataFrame, dict[str, int]]:
        """The model-input frame, and per categorical feature how many non-missing values
        were not among the training categories (they become missing)."""
        if isinstance(data, pd.DataFrame) and self._is_model_input(data):
            return data, {}
        if not isinstance(data, pd.DataFrame):
            arr = np.asarray(data)
            if arr.ndim != 2 or arr.shape[1] != len(self.features):
                raise ValueError(
                    f"expected {len(self.features)} columns {self.names}, got shape {arr.shape}"
                )
            data = pd.DataFrame(arr, columns=self.names)
        cols: dict[str, Any] = {}
        unseen: dict[str, int] = {}
        for f in self.features:
            col = data[f.name]
            if f.kind == "numeric":
                cols[f.name] = _as_float(col)
                continue
            text = col.astype(object).where(col.notna(), None)
            text = text.map(lambda v: None if v is None else str(v))
            cat = pd.Categorical(text, categories=list(f.categories))
            bad = int(text.notna().sum() - pd.notna(cat).sum())
            if bad:
                unseen[f.name] = bad
            cols[f.name] = cat
        return pd.DataFrame(cols, index=data.index), unseen

    def _is_model_input(self, df: pd.DataFrame) -> bool:
        """Already this schema's model-input frame (then converting again is skipped)."""
        if list(df.columns) != self.names:
            return False
        for f in self.features:
            dt = df[f.name].dtype
            if f.kind == "numeric":
                if dt != np.float64:
                    return False
            elif not (isinstance(dt, pd.CategoricalDtype) and tuple(dt.categories) == f.categories):
                return False
        return True


def is_numeric(col: pd.Series) -> bool:
    """Integer, float, decimal or boolean (not text, not a pandas categorical)."""
    return bool(
        pd.api.types.is_numeric_dtype(col.dtype) and not isinstance(col.dtype, pd.CategoricalDtype)
    ) or pd.api.types.is_bool_dtype(col.dtype)


def _as_float(col: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col.dtype):
        return col.astype("float64").to_numpy()
    return pd.to_numeric(col, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
