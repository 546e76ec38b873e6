"""Governance costs (engine.governance), each against its reference:

1. **The policy decision of a served request**: the engine's cached decision (decisions
   depend only on the action, purpose, PII columns and role, never on row values) against
   a regopy evaluation of the compiled Rego bundle (what an uncached decision costs).
   Equal: the same decision.
2. **The consent check of one /predict request** (32 subjects) against a ledger of
   100,000 subjects x 3 purposes: the replica's live view (a ``stat`` of the source and the
   log, then each subject's last status) against the as-of join at the same instant
   (``ConsentLedger.check``, pandas ``merge_asof``). p50 and p99 of single requests are
   reported (``p50_ms``, ``p99_ms``). Equal: the same reasons.
3. **Consent for training**: 1,000,000 label rows checked as of their label times, the
   engine's as-of join against DuckDB's ``ASOF JOIN`` (with the same tie rule). Equal: the
   same rows kept.

Smoke: 2,000 subjects, 20,000 label rows.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._harness import case, measure, parser, write

PURPOSES = ("model_training", "profiling", "marketing")
T0 = pd.Timestamp("2024-01-01")


def _events(rng: np.random.Generator, subjects: int) -> pd.DataFrame:
    n = subjects * 4
    return pd.DataFrame(
        {
            "subject": rng.integers(0, subjects, n).astype(str),
            "purpose": rng.choice(PURPOSES, n),
            "status": rng.choice(["granted", "withdrawn"], n, p=[0.75, 0.25]),
            "time": T0 + pd.to_timedelta(rng.integers(0, 365 * 24 * 3600, n), unit="s"),
        }
    )


def _policy_case(cases: list[dict[str, Any]]) -> None:
    from engine.governance.policy import PolicySet

    ps = PolicySet.load(
        data={
            "purposes": {"training": "model_training", "serving": "profiling"},
            "consent_declared": True,
        }
    )
    facts = {"pii": ["email"], "role": None}
    k = 2000

    def cached() -> Any:
        for _ in range(k):
            d = ps.decide("serve", "profiling", **facts)
        return d

    def evaluated() -> Any:
        for _ in range(k // 20):
            d = ps.evaluate_uncached("serve", "profiling", **facts)
        return d

    a, b = measure(cached, 5), measure(evaluated, 5)
    for t, per in ((a, k), (b, k // 20)):
        for f in ("min", "median", "max"):
            setattr(t, f, getattr(t, f) / per)
    cases.append(
        case(
            "policy decision of one served request: cached vs a regopy evaluation",
            a,
            "regopy 1.5 (rego-cpp) evaluation of the compiled bundle",
            b,
            a.result == b.result and a.result.allow,
            decision_us=round(a.median * 1e6, 3),
            evaluation_us=round(b.median * 1e6, 1),
        )
    )


def _serving_case(cases: list[dict[str, Any]], subjects: int, tmp: Path) -> None:
    from engine.config.governance import ConsentConfig
    from engine.governance.consent import ConsentLedger
    from engine.governance.live import LiveConsent

    rng = np.random.default_rng(0)
    ev = _events(rng, subjects)
    src = tmp / "consents.parquet"
    ev.to_parquet(src, index=False)
    cfg = ConsentConfig(
        source="c", subject="subject", purpose="purpose", status="status", time="time"
    )
    live = LiveConsent(cfg, lambda: pd.read_parquet(src), src, tmp)
    live.check(["0"], "profiling")  # loaded once, as a replica does at its first request
    led: ConsentLedger = live.ledger()
    now = pd.Timestamp.now(tz="UTC")
    reqs = [rng.integers(0, int(subjects * 1.1), 32).astype(str).tolist() for _ in range(200)]

    def engine_once(ids: list[str]) -> Any:
        return live.check(ids, "profiling")

    def reference_once(ids: list[str]) -> Any:
        return led.check(ids, [now] * len(ids), "profiling")

    singles: dict[str, list[float]] = {"engine": [], "reference": []}
    same = True
    for ids in reqs:
        t = time.perf_counter()
        e = engine_once(ids)
        singles["engine"].append(time.perf_counter() - t)
        t = time.perf_counter()
        r = reference_once(ids)
        singles["reference"].append(time.perf_counter() - t)
        same = same and e.reason.tolist() == r.reason.tolist()
    it = iter(reqs * 10)
    a = measure(lambda: engine_once(next(it)), 20)
    it2 = iter(reqs * 10)
    b = measure(lambda: reference_once(next(it2)), 20)
    pct = {
        f"{side}_{q}_ms": round(float(np.percentile(v, p)) * 1000, 4)
        for side, v in singles.items()
        for q, p in (("p50", 50), ("p99", 99))
    }
    cases.append(
        case(
            f"consent check of one /predict request (32 subjects), ledger of {subjects:,} "
            f"subjects x 3 purposes ({len(ev):,} events)",
            a,
            "the as-of join at the same instant (pandas merge_asof)",
            b,
            same,
            p50_ms=pct["engine_p50_ms"],
            p99_ms=pct["engine_p99_ms"],
            **{k: v for k, v in pct.items() if k.startswith("reference")},
        )
    )


def _training_case(cases: list[dict[str, Any]], subjects: int, rows: int) -> None:
    import duckdb

    from engine.config.governance import ConsentConfig
    from engine.governance.consent import ConsentLedger

    rng = np.random.default_rng(1)
    ev = _events(rng, subjects)
    cfg = ConsentConfig(
        source="c", subject="subject", purpose="purpose", status="status", time="time"
    )
    led = ConsentLedger.from_frame(ev, cfg)
    q = pd.DataFrame(
        {
            "s": rng.integers(0, subjects, rows).astype(str),
            "t": T0 + pd.to_timedelta(rng.integers(0, 400 * 24 * 3600, rows), unit="s"),
        }
    )
    q["i"] = np.arange(rows)

    def ours() -> np.ndarray:
        return led.check(q["s"], q["t"], "model_training").allowed

    con = duckdb.connect()
    raw = ev[ev["purpose"] == "model_training"].assign(g=ev["status"] == "granted")
    con.register("raw", raw[["subject", "time", "g"]])
    con.register("q", q)

    def duck() -> np.ndarray:
        out = con.execute(
            """WITH e AS (SELECT subject, time, bool_and(g) AS g FROM raw GROUP BY subject, time)
            SELECT coalesce(e.g, false) FROM q ASOF LEFT JOIN e ON q.s = e.subject
            AND q.t >= e.time ORDER BY q.i"""
        ).fetchnumpy()
        return np.asarray(next(iter(out.values())), dtype=bool)

    a, b = measure(ours, 3), measure(duck, 3)
    cases.append(
        case(
            f"consent for training: {rows:,} label rows as of their label times, "
            f"{subjects:,} subjects",
            a,
            "DuckDB ASOF JOIN (same tie rule)",
            b,
            bool((a.result == b.result).all()),
            kept=int(a.result.sum()),
        )
    )


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    subjects = 2_000 if args.smoke else 100_000
    rows = 20_000 if args.smoke else 1_000_000
    cases: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-gov-"))
    try:
        _policy_case(cases)
        _serving_case(cases, subjects, tmp)
        _training_case(cases, subjects, rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for c in cases:
        print(f"bench_governance: {c['case']}: ratio {c['ratio']:.2f}x, equal={c['equal']}")
    path = write("bench_governance", args.smoke, cases, args.out)
    print(f"bench_governance: results in {path}")


if __name__ == "__main__":
    main()
