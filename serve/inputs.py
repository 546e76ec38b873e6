"""The input contract of /predict and /explain: a request becomes a feature matrix, or a 4xx
that names the field, the value and the fix. Pure functions of the request, the model's
feature list and the online table, so they are tested and reused apart from the replica."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import HTTPException

from serve.schemas import PredictRequest


def rows_matrix(rows: list[dict[str, Any]], features: list[str]) -> np.ndarray:
    """Rows of ``{feature: number | None}`` in the model's column order (None -> NaN)."""
    index = {f: i for i, f in enumerate(features)}
    x = np.full((len(rows), len(features)), np.nan)
    for i, row in enumerate(rows):
        if row.keys() != index.keys():
            unknown = sorted(set(row) - index.keys())
            if unknown:
                raise HTTPException(
                    422, f"rows[{i}]: unknown field(s) {unknown[:5]}; the model takes {features}."
                )
            missing = [f for f in features if f not in row]
            raise HTTPException(
                422, f"rows[{i}]: missing field(s) {missing[:5]}; send null for an unknown value."
            )
        for name, v in row.items():
            if v is not None:
                fv = float(v)
                if not math.isfinite(fv):
                    raise HTTPException(422, f"rows[{i}].{name}: {v} is not a finite number.")
                x[i, index[name]] = fv
    return x


def entity_matrix(
    online: Any, entities: list[Any], features: list[str]
) -> tuple[np.ndarray, list[str]]:
    """Feature rows of ``entities`` from the online table; unknown ids are a 404 naming them."""
    if online is None:
        raise HTTPException(
            503,
            "entity lookup needs the online table, and this app has none. Fix: run "
            "`insight features materialize`, then `insight serve up` again.",
        )
    ids = [str(e) for e in entities]
    keys: list[Any] = ids
    if online.frame.index.dtype.kind in "iu":  # integer keys: "17" and 17 are one id
        keys = [int(e) if e.lstrip("-").isdigit() else e for e in ids]
    x, missing_keys = online.lookup(keys, features)
    missing = [str(m) for m in missing_keys]
    if missing:
        pos = [ids.index(m) for m in missing[:5]]
        raise HTTPException(
            404,
            f"entities{pos}: unknown entity id(s) {missing[:5]} (not in the online table "
            f"as of {online.as_of}).",
        )
    return x, ids


def request_inputs(
    req: PredictRequest, features: list[str], online: Any, max_rows: int
) -> tuple[np.ndarray, list[str] | None]:
    """The feature matrix of a request and the entity id per row (None: rows without ids)."""
    n = len(req.rows) if req.rows is not None else len(req.entities or [])
    if n > max_rows:
        raise HTTPException(
            413, f"{n} rows in one request; the limit is {max_rows}. Fix: split the request."
        )
    if req.rows is not None:
        ids = [str(i) for i in req.ids] if req.ids is not None else None
        return rows_matrix(req.rows, features), ids
    return entity_matrix(online, list(req.entities or []), features)
