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

4. **Sealing one served request** (engine.governance.seal: each row's id, inputs, score
   under its subject's AES-GCM key, keys cached) against building the same record in the
   clear. Equal: the record opens to what was sealed.
5. **Erasure of one subject** from a workspace holding 1,000,000 served requests (sealed,
   100,000 customers) and a customers table of 100,000 rows: the key deleted, the log
   scanned for records that hold the subject in the clear, the table rewritten without
   them; against what erasure would cost without per-subject keys: rewriting every audit
   segment without the subject's records (which also breaks the hash chain). Equal: the
   subject's rows no longer read back. ``bytes_rewritten`` is reported for both.
6. **``audit verify`` on a log with shredded subjects** (1% of the customers' keys
   deleted) against the same log with none shredded. Equal: both verify.
7. **Reading a window of sealed records** (the monitor's read: every row decrypted) against
   the same records written in the clear. Equal: the same rows and scores.

Smoke: 2,000 subjects, 20,000 label rows; 10,000 served requests and 1,000 customers.
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


def _served_log(
    root: Path, requests: int, customers: int, *, sealed: bool, keys: Any = None
) -> None:
    """``requests`` one-row /predict records about ``customers`` customers, written as the
    replicas write them (columnar, group commits of 500), sealed or not."""
    from engine.audit import AuditWriter, decision_record
    from engine.governance.seal import seal_record

    rng = np.random.default_rng(3)
    who = rng.integers(0, customers, requests)
    xs = rng.normal(0, 1, (requests, 4)).round(6)
    w = AuditWriter(root, writer="bench", columnar=True, max_records=200_000)
    lid = w.register_layout(["a", "b", "c", "d"], [], [])
    batch: list[dict[str, Any]] = []
    for i in range(requests):
        rec = decision_record(
            route="predict", request_id=f"r{i}", model="m", versions=["1"], generation=1,
            ids=[f"c{who[i]}"], layout=lid, inputs={"x": [xs[i].tolist()]},
            input_policy="values", scores=[float(abs(xs[i, 0]) % 1)], threshold=0.5,
            latency_ms=1.0,
        )  # fmt: skip
        batch.append(seal_record(rec, keys) if sealed else rec)
        if len(batch) == 500:
            w.append(batch)
            batch = []
    if batch:
        w.append(batch)
    w.close()


def _seal_case(cases: list[dict[str, Any]], tmp: Path) -> None:
    from engine.audit import decision_record
    from engine.governance.keys import KeyStore
    from engine.governance.seal import unseal_record

    ks = KeyStore(tmp / "keys-seal")
    rng = np.random.default_rng(4)
    ids = [f"c{i}" for i in range(32)]
    xs = rng.normal(0, 1, (32, 12)).tolist()
    scores = rng.random(32).tolist()

    def clear() -> dict[str, Any]:
        return decision_record(
            route="predict", request_id="r", model="m", versions=["1"] * 32, generation=1,
            ids=ids, layout="L", inputs={"x": xs}, input_policy="values", scores=scores,
            threshold=0.5, latency_ms=1.0,
        )  # fmt: skip

    from engine.governance.seal import seal_record

    a = measure(lambda: seal_record(clear(), ks), 200, warmup=5)
    b = measure(clear, 200, warmup=5)
    back = unseal_record(a.result, ks)
    same = back["ids"] == ids and back["x"] == xs and back["scores"] == scores
    cases.append(
        case(
            "seal one /predict request (32 rows x 12 inputs; each row under its subject's "
            "AES-GCM key, keys cached)",
            a,
            "the same record in the clear",
            b,
            same,
            added_us=round((a.median - b.median) * 1e6, 1),
        )
    )


def _erasure_cases(cases: list[dict[str, Any]], tmp: Path, requests: int, customers: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.audit.verify import segments, verify
    from engine.audit.window import read_window
    from engine.governance.erase import clear_records
    from engine.governance.keys import KeyStore
    from engine.governance.rows import drop_rows
    from engine.workspace import Workspace

    t0 = time.perf_counter()
    ws = Workspace(tmp / "ws")
    ks = KeyStore(tmp / "ws" / "keys")
    _served_log(ws.audit / "insight", requests, customers, sealed=True, keys=ks)
    clear_root = tmp / "clear" / "audit" / "insight"
    _served_log(clear_root, requests, customers, sealed=False)
    table = tmp / "ws" / "data" / "customers.parquet"
    table.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"customer_id": [f"c{i}" for i in range(customers)],
                  "age": np.random.default_rng(5).integers(18, 90, customers)}),
        table,
    )  # fmt: skip
    print(
        f"bench_governance: built 2 logs of {requests:,} requests in {time.perf_counter() - t0:.1f} s"
    )
    log_bytes = sum(p.stat().st_size for p in segments(ws.audit / "insight"))

    # 7. reading a window: sealed (decrypting) against clear
    a = measure(lambda: read_window(ws.audit / "insight", 0, time.time() + 10), 3)
    b = measure(lambda: read_window(clear_root, 0, time.time() + 10), 3)
    same = a.result.rows == b.result.rows and bool((a.result.score == b.result.score).all())
    cases.append(
        case(
            f"read a window of {requests:,} sealed requests (every row decrypted)",
            a,
            "the same requests written in the clear",
            b,
            same,
        )
    )
    # 5. erasing one subject: the key, the scan for clear records, the table
    victims = [f"c{i}" for i in range(0, customers, 100)]  # 1% of the customers
    target = victims[0]

    def erase_one() -> dict[str, Any]:
        kid = ks.erase(target)
        clear = clear_records(ws, [target])
        rows = drop_rows(table, ["customer_id"], [target])
        return {"kid": kid, "clear": clear, "rows": rows}

    def rewrite_log() -> int:
        """Erasure without per-subject keys: every segment rewritten without the subject."""
        import pyarrow.compute as pc

        from engine.audit.verify import read_columnar

        written = 0
        for seg in segments(clear_root):
            _, batches = read_columnar(seg)
            t = pa.Table.from_batches(batches)
            hit = pc.is_in(pc.list_element(t.column("ids"), 0), value_set=pa.array([target]))
            kept = t.filter(pc.invert(pc.fill_null(hit, False)))
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, kept.schema) as wr:
                wr.write_table(kept)
            out = tmp / "rewritten.arrows"
            out.write_bytes(sink.getvalue().to_pybytes())
            written += out.stat().st_size
        return written

    a = measure(erase_one, 1, warmup=0)  # once: a second erase of the same subject is a no-op
    b = measure(rewrite_log, 1, warmup=0)
    gone = read_window(ws.audit / "insight", 0, time.time() + 10)
    same = target not in set(gone.entity) and a.result["clear"] == 0
    cases.append(
        case(
            f"erase one subject: {requests:,} served requests (sealed), {customers:,} customers",
            a,
            "rewriting every audit segment without the subject (no per-subject keys; "
            "breaks the chain)",
            b,
            same,
            bytes_rewritten=table.stat().st_size,
            reference_bytes_rewritten=b.result,
            log_bytes=log_bytes,
        )
    )
    # 6. verify with 1% shredded against none
    fresh = measure(lambda: verify(ws.audit / "insight"), 3)
    for v in victims[1:]:
        ks.erase(v)
    shredded = measure(lambda: verify(ws.audit / "insight"), 3)
    cases.append(
        case(
            f"audit verify, {requests:,} requests, {len(victims)} of {customers:,} customers "
            "shredded",
            shredded,
            "the same log before they were shredded",
            fresh,
            bool(shredded.result.ok and fresh.result.ok),
        )
    )
    ks.close()


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
        _seal_case(cases, tmp)
        _erasure_cases(
            cases, tmp, 10_000 if args.smoke else 1_000_000, 1_000 if args.smoke else 100_000
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for c in cases:
        print(f"bench_governance: {c['case']}: ratio {c['ratio']:.2f}x, equal={c['equal']}")
    path = write("bench_governance", args.smoke, cases, args.out)
    print(f"bench_governance: results in {path}")


if __name__ == "__main__":
    main()
