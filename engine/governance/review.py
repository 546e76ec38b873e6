"""Human oversight: a review queue of served decisions (``insight review``).

``sample`` adds to the queue the decisions logged since its last run: each row at random
with probability ``random_rate``, and rows whose score lies within ``low_confidence_band``
of the threshold with probability ``low_confidence_rate``, drift-flagged rows (an input
outside the range its model version was trained on, as its reference profile keeps it, or
a category the model never saw) with probability ``drift_rate``, and rows whose automated
decision acted (score at or above the threshold: high impact) with probability
``high_impact_rate`` (``governance.review``). The draw is a hash of the request id and row, so a re-run picks the same rows and adds none
twice. An item holds the decision (time, app, version, score, threshold, decision), the
inputs as logged and the subject's keyed hash, never the raw id.

``next`` shows the oldest item not yet reviewed, with its explanation recomputed by the
version's model; ``confirm`` or ``dispute`` (a dispute needs a reason) records the
analyst's verdict. Each verdict is an audit record naming the reviewer, and a dispute is a
label (``reviews/labels-review.parquet``: by request, the request id, disputed, reason).
``stats`` gives the dispute rate with its Wilson 95% interval.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError, StateError

if TYPE_CHECKING:
    from engine.config.project import ProjectConfig
    from engine.workspace import Workspace


def review_dir(ws: Workspace) -> Path:
    return ws.root / "governance" / "review"


def _draw(request_id: str, row: int, salt: str) -> float:
    """A uniform draw in [0, 1) fixed by the request, the row and the reason."""
    h = hashlib.sha256(f"{salt}|{request_id}|{row}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _append(path: Path, rows: list[dict[str, Any]]) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _drifted(
    ws: Workspace,
    rec: dict[str, Any],
    i: int,
    ranges: dict[str, dict[str, tuple[float, float]] | None],
) -> bool:
    """Whether row ``i`` of a decision is drift-flagged: a numeric input outside the range
    of the reference profile of the version that decided it, or (for the request) a
    category the model never saw."""
    if rec.get("unseen_categories"):
        return True
    versions = rec.get("versions") or []
    v = str(versions[i]) if i < len(versions) else None
    if v is None:
        return False
    key = f"{rec.get('model')}-v{v}"
    if key not in ranges:
        from engine.monitor.run import _profile

        prof = _profile(ws, str(rec.get("model")), v)  # the monitor's cache, else MLflow
        ranges[key] = (
            None
            if prof is None
            else {
                f: (float(d["min"]), float(d["max"]))
                for f, d in (prof.get("features") or {}).items()
                if d.get("kind") == "numeric" and "min" in d
            }
        )
    rng = ranges[key]
    inputs = rec.get("inputs") or []
    if rng is None or i >= len(inputs):
        return False
    for f, x in zip(rec.get("input_features") or [], inputs[i], strict=False):
        lo_hi = rng.get(f)
        if lo_hi is not None and isinstance(x, int | float) and not lo_hi[0] <= x <= lo_hi[1]:
            return True
    return False


def sample(cfg: ProjectConfig, ws: Workspace, app: str = "insight") -> dict[str, int]:
    """Add the decisions logged since the last run to the queue, as the rates say."""
    from engine.audit.verify import read_records
    from engine.pii import hmac_hex, load_key

    rc = cfg.governance.review
    q = review_dir(ws) / "queue.jsonl"
    have = {it["item"] for it in _jsonl(q)}
    key = load_key(ws.root)
    new: list[dict[str, Any]] = []
    seen = 0
    ranges: dict[str, dict[str, tuple[float, float]] | None] = {}
    for rec in read_records(ws.audit / app, kind="decision"):
        scores, thr = rec.get("scores") or [], rec.get("threshold")
        for i, s in enumerate(scores):
            seen += 1
            rid = str(rec.get("request_id"))
            why = None
            if _draw(rid, i, "random") < rc.random_rate:
                why = "random"
            elif (
                thr is not None
                and abs(float(s) - float(thr)) <= rc.low_confidence_band
                and _draw(rid, i, "low_confidence") < rc.low_confidence_rate
            ):
                why = "low confidence"
            elif _drifted(ws, rec, i, ranges) and _draw(rid, i, "drift") < rc.drift_rate:
                why = "drift"
            elif (
                thr is not None
                and float(s) >= float(thr)
                and _draw(rid, i, "high_impact") < rc.high_impact_rate
            ):
                why = "high impact"
            item = f"{app}:{rid}:{i}"
            if why is None or item in have:
                continue
            ids = rec.get("ids") or []
            inputs = rec.get("inputs") or []
            new.append(
                {
                    "item": item,
                    "why": why,
                    "app": app,
                    "request_id": rid,
                    "row": i,
                    "time": rec.get("time"),
                    "model": rec.get("model"),
                    "version": (rec.get("versions") or [None] * (i + 1))[i],
                    "score": float(s),
                    "threshold": thr,
                    "decision": None if thr is None else float(s) >= float(thr),
                    "inputs": dict(zip(rec.get("input_features") or [], inputs[i], strict=False))
                    if i < len(inputs)
                    else None,
                    "subject_hash": hmac_hex(key, str(ids[i])) if i < len(ids) else None,
                    "queued_at": time.time(),
                }
            )
            have.add(item)
    _append(q, new)
    return {"rows_seen": seen, "queued": len(new), "queue": len(have)}


def _reviews(ws: Workspace) -> dict[str, dict[str, Any]]:
    return {r["item"]: r for r in _jsonl(review_dir(ws) / "reviews.jsonl")}


def next_item(ws: Workspace) -> dict[str, Any] | None:
    """The oldest queued item without a verdict, with its explanation."""
    from engine.governance.export import _explain

    done = _reviews(ws)
    for it in _jsonl(review_dir(ws) / "queue.jsonl"):
        if it["item"] not in done:
            _explain([it])
            return it
    return None


def record(ws: Workspace, item: str, verdict: str, reviewer: str, reason: str = "") -> None:
    """An analyst's verdict on an item: confirm, or dispute with a reason; audited."""
    import pandas as pd

    from engine.audit import AuditWriter
    from engine.workspace import atomic_write_bytes

    if verdict not in ("confirm", "dispute"):
        raise ConfigError(f"verdict {verdict!r}: confirm or dispute")
    if verdict == "dispute" and not reason.strip():
        raise ConfigError("a dispute needs --reason: say what is wrong with the decision.")
    queued = {it["item"]: it for it in _jsonl(review_dir(ws) / "queue.jsonl")}
    if item not in queued:
        raise StateError(f"no queued item {item!r}. Fix: `insight review next` shows one.")
    if item in _reviews(ws):
        raise StateError(f"item {item!r} was reviewed already; a verdict is recorded once.")
    it = queued[item]
    row = {
        "item": item,
        "verdict": verdict,
        "reason": reason.strip(),
        "reviewer": reviewer,
        "request_id": it["request_id"],
        "version": it["version"],
        "time": time.time(),
    }
    w = AuditWriter(ws.audit / "control", writer="review")
    try:
        w.append([{"kind": "review", **row}])
    finally:
        w.close()
    _append(review_dir(ws) / "reviews.jsonl", [row])
    labels = pd.DataFrame(
        [
            {"by": "request", "id": r["request_id"], "disputed": int(r["verdict"] == "dispute"),
             "reason": r["reason"], "time": r["time"]}
            for r in _reviews(ws).values()
        ]
    )  # fmt: skip
    import io

    buf = io.BytesIO()
    labels.to_parquet(buf, index=False)
    atomic_write_bytes(review_dir(ws) / "labels-review.parquet", buf.getvalue())


def stats(ws: Workspace) -> dict[str, Any]:
    """Reviews, disputes and the dispute rate with its Wilson 95% interval."""
    from engine.kernels.intervals import wilson

    rs = list(_reviews(ws).values())
    n, k = len(rs), sum(r["verdict"] == "dispute" for r in rs)
    queued = len(_jsonl(review_dir(ws) / "queue.jsonl"))
    out: dict[str, Any] = {"queued": queued, "reviewed": n, "disputed": k, "pending": queued - n}
    if n:
        lo, hi = wilson(k, n, 1.959963984540054)
        out["dispute_rate"] = {"estimate": k / n, "low": lo, "high": hi}
    else:
        out["dispute_rate"] = "no review yet: the rate cannot be computed"
    return out
