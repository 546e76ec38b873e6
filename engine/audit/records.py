"""What a served decision records: one record per answered request.

Inputs are logged column-wise against a layout (engine.audit.writer): ``x`` holds the
numeric features of each row (in the layout's order, missing as null), ``xc`` the
categorical ones (text, missing as null). With ``serve.audit_inputs: hash`` only a SHA-256
per row is kept (``input_hashes``), and input drift cannot be measured from the log.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Any


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


def _text(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return str(v)


def audit_inputs(x: Any, policy: str, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    """The inputs of a request's rows as the audit log keeps them (see the module doc).
    One conversion of the whole frame (~10 us for a row; selecting the columns first cost
    ~270 us: benchmarks/bench_monitor.py, the append case)."""
    rows = x.to_numpy(dtype=object).tolist()
    where = {c: i for i, c in enumerate(x.columns)}
    ni, ci = [where[c] for c in numeric], [where[c] for c in categorical]
    num = [[_num(r[i]) for i in ni] for r in rows] if numeric else []
    cat = [[_text(r[i]) for i in ci] for r in rows] if categorical else []
    if policy == "hash":
        n = len(x)
        return {
            "input_hashes": [
                hashlib.sha256(
                    json.dumps([num[i] if num else [], cat[i] if cat else []]).encode()
                ).hexdigest()
                for i in range(n)
            ]
        }
    out: dict[str, Any] = {}
    if numeric:
        out["x"] = num
    if categorical:
        out["xc"] = cat
    return out


def decision_record(
    *,
    route: str,
    request_id: str,
    model: str,
    versions: list[str],
    generation: int,
    ids: list[str] | None,
    layout: str,
    inputs: dict[str, Any],
    input_policy: str,
    scores: list[float],
    threshold: float,
    latency_ms: float,
    shadow: dict[str, Any] | None = None,
    unseen: dict[str, int] | None = None,
    groups: dict[str, list[Any]] | None = None,
) -> dict[str, Any]:
    """One record per answered request: what was asked (entity ids, already hashed where
    they are PII; inputs or their hashes; sensitive-attribute groups where known), what was
    answered (scores, the threshold and the decisions it gave), by which model versions and
    rollout generation, how fast."""
    rec: dict[str, Any] = {
        "kind": "decision",
        "route": route,
        "request_id": request_id,
        "time": time.time(),
        "model": model,
        "versions": versions,
        "generation": generation,
        "ids": ids,
        "layout": layout,
        **inputs,
        "input_policy": input_policy,
        "scores": scores,
        "threshold": threshold,
        "decisions": [s >= threshold for s in scores],
        "latency_ms": round(latency_ms, 3),
    }
    if groups:  # sensitive attributes per row (from the online table), in the layout's order
        names = list(groups)
        rec["g"] = [[groups[a][i] for a in names] for i in range(len(scores))]
    if shadow is not None:
        rec["shadow"] = shadow
    if unseen:
        rec["unseen_categories"] = unseen  # feature -> values the model never saw (as missing)
    return rec
