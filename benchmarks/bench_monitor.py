"""The monitor on a window of served requests, reading the log included.

Full: 1,000,000 and 10,000,000 one-row requests with 25 features (20 numeric, 5
categorical), logged as the served app logs them (audit format 3: Arrow record batches in
hash-chained frames, segments of 100,000 records, compacted when closed), against a
reference profile of 200,000 training rows:

1. ``insight monitor``'s whole window (engine.monitor.run.monitor_window: list, verify
   every frame, decode, per-segment partial aggregates, merge, every statistic), against
   the budget (10 s for 10,000,000 on this machine), at 1 thread and at every core given,
   and against a *memory pass*: a parallel sum over the same bytes, the floor on one node;
2. incremental: after 1% new traffic, the same window plus the new requests, with the
   closed segments' parts from the cache, against the full run (budget: 5%);
3. the same 1,000,000-request window logged as JSON lines (format 2), read the same way;
4. the drift statistics of the window, with Evidently's method choices (the kernels'
   report), against Evidently 0.7's DataDriftPreset on the same window (same values);
5. appending one served request to the log (inputs, record, chained write), one writer
   thread at a time and 16 at once (group commit), against the budget of 0.2 ms
   (``within_budget``, reported; ``equal``: every record is in the log once and the chain
   verifies); then compacting that closed segment (the writer's background rewrite of its
   group-commit frames as Arrow batches), per record, against the append.

``--cluster ADDRESS`` also runs the window as Ray tasks on that cluster against one node
(tests/raynodes.py starts one on 127.0.0.1). Smoke: 20,000 requests, a 20,000-row reference.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmarks._harness import case, measure, parser, write

NUM = [f"x{i}" for i in range(20)]
CAT = [f"c{i}" for i in range(5)]
CATS = np.array(["a", "b", "c", "d", "e"], dtype=object)


def _frame(n: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(0, 1, (n, 20)) + shift * (np.arange(20) % 4), columns=NUM)
    for j, c in enumerate(CAT):
        p = [0.3, 0.3, 0.2, 0.1, 0.1] if (shift and j == 0) else [0.2] * 5
        df[c] = rng.choice(CATS, n, p=p)
    return df


def _segment_table(
    lo: int, hi: int, x: np.ndarray, codes: np.ndarray, scores: np.ndarray, t0: float, lid: str
) -> pa.Table:
    """Requests ``lo``..``hi`` as the served app logs them (one row each), in columns."""
    n = hi - lo
    one = pa.array(np.arange(n + 1, dtype=np.int32))
    inner = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n * 20 + 1, 20, dtype=np.int32)), pa.array(x[lo:hi].ravel())
    )
    cats = pa.DictionaryArray.from_arrays(
        pa.array(codes[lo:hi].ravel()), pa.array(list(CATS))
    ).cast(pa.string())
    inner_c = pa.ListArray.from_arrays(pa.array(np.arange(0, n * 5 + 1, 5, dtype=np.int32)), cats)
    idx = np.arange(lo, hi)
    s = scores[lo:hi]
    return pa.table(
        {
            "kind": pa.array(["decision"] * n),
            "time": pa.array(t0 + idx * 1e-5),
            "route": pa.array(["predict"] * n),
            "request_id": pa.array(np.char.zfill(idx.astype(str), 32)),
            "model": pa.array(["m"] * n),
            "versions": pa.ListArray.from_arrays(one, pa.array(["1"] * n)),
            "generation": pa.array(np.ones(n, dtype=np.int64)),
            "ids": pa.ListArray.from_arrays(one, pa.array(np.char.add("c", idx.astype(str)))),
            "layout": pa.array([lid] * n),
            "x": pa.ListArray.from_arrays(one, inner),
            "xc": pa.ListArray.from_arrays(one, inner_c),
            "input_policy": pa.array(["values"] * n),
            "scores": pa.ListArray.from_arrays(one, pa.array(s)),
            "threshold": pa.array(np.full(n, 0.5)),
            "decisions": pa.ListArray.from_arrays(one, pa.array(s >= 0.5)),
            "latency_ms": pa.array((2 + idx % 7).astype(float)),
        }
    )


def _write_part(args: tuple[str, str, int, int, int, float, float]) -> None:
    """One writer process's share of the window (the served app's replicas write their
    own segments; here two processes write halves of the requests)."""
    root, name, lo, hi, n, t0, shift = args
    from engine.audit import AuditWriter

    cur = _frame(n, 2, shift)
    x = cur[NUM].to_numpy()
    codes = np.stack([pd.Categorical(cur[c], categories=list(CATS)).codes for c in CAT], axis=1)
    scores = np.random.default_rng(3).random(n)
    w = AuditWriter(
        Path(root), writer=name, anchor_every=10_000, max_records=SEGMENT, columnar=True
    )
    lid = w.register_layout(NUM, CAT, [])
    for a in range(lo, hi, SEGMENT // 2):
        b = min(hi, a + SEGMENT // 2)
        w.append_table(_segment_table(a, b, x, codes.astype(np.int8), scores, t0, lid))
    w.close()


SEGMENT = 100_000  # records per segment, the served app's default


def _log(root: Path, n: int, t0: float, shift: float, procs: int = 2) -> None:
    """The window, written by ``procs`` processes (the row hashes are Python work)."""
    from concurrent.futures import ProcessPoolExecutor

    step = -(-n // procs)
    jobs = [
        (str(root), f"replica-{k}", k * step, min(n, (k + 1) * step), n, t0, shift)
        for k in range(procs)
        if k * step < n
    ]
    with ProcessPoolExecutor(len(jobs)) as pool:
        list(pool.map(_write_part, jobs))


def _log_jsonl(root: Path, cur: pd.DataFrame, scores: np.ndarray, t0: float) -> None:
    """The window as format 2 (JSON lines) writes it: one record per request, chained."""
    from engine.audit import AuditWriter, decision_record

    w = AuditWriter(root, writer="bench", anchor_every=10_000, max_records=SEGMENT)
    lid = w.register_layout(NUM, CAT, [])
    xs = cur[NUM].to_numpy().round(6).tolist()
    cs = cur[CAT].to_numpy().tolist()
    batch = []
    for i in range(len(cur)):
        rec = decision_record(
            route="predict",
            request_id=f"{i:032x}",
            model="m",
            versions=["1"],
            generation=1,
            ids=[f"c{i}"],
            layout=lid,
            inputs={"x": [xs[i]], "xc": [cs[i]]},
            input_policy="values",
            scores=[float(scores[i])],
            threshold=0.5,
            latency_ms=float(2 + (i % 7)),
        )
        rec["time"] = t0 + i * 1e-5
        batch.append(rec)
        if len(batch) == 5000:
            w.append(batch)
            batch = []
    w.append(batch)
    w.close()


def _memory_pass(files: list[Path], threads: int) -> int:
    """A parallel sum over the bytes of ``files`` (memory-mapped): the floor of any pass
    that reads them on this node."""
    from concurrent.futures import ThreadPoolExecutor

    def one(p: Path) -> int:
        with pa.memory_map(str(p), "r") as mm:
            buf = mm.read_buffer()
        a = np.frombuffer(buf, dtype=np.uint64, count=buf.size // 8)
        return int(a.sum(dtype=np.uint64))

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(one, files)) & 0xFFFF


def _evidently(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, float]:
    from benchmarks.bench_drift import _evidently as ev

    return ev(ref, cur)


def _ours(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, float]:
    from engine.kernels.report import report

    return {r.column: r.value for r in report(ref, cur)}


def _workspace(tmp: Path, n_ref: int) -> tuple[Any, Any, pd.DataFrame]:
    from engine.config.project import DEFAULT_PROJECT, ProjectConfig
    from engine.monitor.profile import build_profile
    from engine.workspace import Workspace

    ref = _frame(n_ref, 1, 0.0)
    rng = np.random.default_rng(3)
    cfg = ProjectConfig.load(DEFAULT_PROJECT)
    cfg = cfg.model_copy(
        update={"sensitive": [], "monitor": cfg.monitor.model_copy(update={"rules": []})}
    )
    ws = Workspace(tmp / ".insight").ensure()
    prof = build_profile(
        rows=ref.assign(y=(rng.random(n_ref) < 0.3).astype(float)),
        scores=rng.random(n_ref),
        label="y",
        features=NUM + CAT,
        categorical=CAT,
        sensitive=[],
        threshold=0.5,
        psi_bins=10,
        test_labels=np.r_[0.0, 1.0],
        test_scores=np.r_[0.2, 0.8],
        uplift=None,
    )
    cache = ws.root / "monitor" / "profiles" / f"{cfg.train.model_name}-v1.json"
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps(prof))
    (ws.root / "serve").mkdir()
    (ws.root / "serve" / "rollout-insight.json").write_text(json.dumps({"champion": "1"}))
    return cfg, ws, ref


def _same(a: Any, b: Any) -> bool:
    """Two monitor results agree: counts exactly, floats to 1e-9 (moments merged)."""
    import math

    def walk(x: Any, y: Any) -> bool:
        if isinstance(x, dict) and isinstance(y, dict):
            return set(x) == set(y) and all(walk(x[k], y[k]) for k in x)
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(walk(p, q) for p, q in zip(x, y, strict=True))
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
        return bool(x == y)

    da, db = (r.model_dump(mode="json")["models"] for r in (a, b))
    return walk(da, db)


def _window_cases(n: int, n_ref: int, args: Any, cases: list[dict[str, Any]]) -> None:
    from engine.kernels import cores
    from engine.monitor.run import monitor_window

    tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    try:
        cfg, ws, ref = _workspace(tmp, n_ref)
        root = ws.audit / "insight"
        t0 = 1_800_000_000.0
        t_gen = time.perf_counter()
        _log(root, n, t0, 0.05)
        gen_s = time.perf_counter() - t_gen
        files = sorted(root.glob("*.arrows"))
        size_mb = sum(p.stat().st_size for p in files) / 1e6
        t_end = t0 + n * 1e-5 + 1
        n_threads = cores.allowed()
        budget_s = 10.0 * n / 10_000_000  # 10 s for 10,000,000: one microsecond a request

        def run(threads: int, cache: bool = False, end: float = t_end) -> Any:
            return monitor_window(cfg, ws, t0 - 1, end, threads=threads, cache=cache)

        big = n >= 10_000_000
        full = measure(partial(run, n_threads), repeat=2 if big else 3, warmup=1)
        one = measure(partial(run, 1), repeat=1 if big else 2, warmup=0)  # warmed above
        mem = measure(partial(_memory_pass, files, n_threads), repeat=3, warmup=1)
        res = full.result
        m = res.models["1"]
        ok = res.traffic.requests == n and res.audit.chain_ok and len(m.features) == 25
        if not big:  # the parts equal the whole window computed at once
            ok = ok and _same(res, monitor_window(cfg, ws, t0 - 1, t_end, mode="single"))
        budget = measure(lambda: budget_s, repeat=1, warmup=0)
        budget.min = budget.median = budget.max = budget_s
        where = {k: round(v, 3) for k, v in res.seconds.items()}
        cases.append(
            case(
                f"monitor a window of {n:,} served requests x 25 features (read, verify, "
                f"statistics), {n_threads} threads",
                full,
                f"budget: {budget_s:g} s",
                budget,
                ok,
                log_mb=round(size_mb, 1),
                segments=res.audit.segments_read,
                read_by=res.audit.read_by,
                where_the_time_goes=where,
                drifted=m.drifted,
                log_written_s=round(gen_s, 1),
                requests_per_second=round(n / full.median),
            )
        )
        cases.append(
            case(
                f"the same window ({n:,}): {n_threads} threads vs 1",
                full,
                "1 thread",
                one,
                ok,
                efficiency=round(one.median / full.median / n_threads, 3),
            )
        )
        cases.append(
            case(
                f"the same window ({n:,}) vs a parallel memory pass over its {size_mb:,.0f} MB",
                full,
                f"numpy sum over the memory-mapped segments, {n_threads} threads",
                mem,
                ok,
            )
        )
        # Incremental: 1% new traffic, the closed segments' parts from the cache.
        run(n_threads, cache=True)  # fills the cache (what the previous run left)
        incr_times: list[float] = []
        end = t_end
        step = max(1, n // 100)
        for _ in range(3):
            start = end + 1
            _log(root, step, start, 0.05, procs=1)
            end = start + step * 1e-5 + 1
            a = time.perf_counter()
            inc = run(n_threads, cache=True, end=end)
            incr_times.append(time.perf_counter() - a)
        from benchmarks._harness import Timing

        incr = Timing(min(incr_times), sorted(incr_times)[1], max(incr_times), 3, 0, inc)
        cached = inc.audit.segments_cached
        cases.append(
            case(
                f"incremental: the window after 1% new traffic ({step:,} requests), parts of "
                "closed segments cached",
                incr,
                "the full run (no cache)",
                full,
                inc.traffic.requests == n + 3 * step and cached >= len(files),
                share_of_full=round(incr.median / full.median, 4),
                budget_share=0.05,
                segments_cached=cached,
                segments_read=inc.audit.segments_read,
            )
        )
        if args.cluster:
            import os

            os.environ["RAY_ADDRESS"] = args.cluster
            ray_t = measure(
                lambda: monitor_window(cfg, ws, t0 - 1, t_end, executor="ray", cache=False),
                repeat=2,
                warmup=1,
            )
            cases.append(
                case(
                    f"the same window ({n:,}) as Ray tasks on the cluster at {args.cluster}",
                    ray_t,
                    f"one node, {n_threads} threads",
                    full,
                    _same(ray_t.result, res),
                    read_by=ray_t.result.audit.read_by,
                )
            )
        if n == (20_000 if args.smoke else 1_000_000) and not args.cluster:
            _format2_and_evidently(cfg, ws, ref, n, n_threads, full, cases, args.smoke)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _format2_and_evidently(
    cfg: Any,
    ws: Any,
    ref: pd.DataFrame,
    n: int,
    threads: int,
    full: Any,
    cases: list[dict[str, Any]],
    smoke: bool,
) -> None:
    from engine.monitor.run import monitor_window
    from engine.workspace import Workspace

    cur = _frame(n, 2, 0.05)
    t0 = 1_900_000_000.0
    ws2 = Workspace(ws.root.parent / "jsonl" / ".insight").ensure()
    shutil.copytree(ws.root / "monitor" / "profiles", ws2.root / "monitor" / "profiles")
    (ws2.root / "serve").mkdir()
    (ws2.root / "serve" / "rollout-insight.json").write_text(json.dumps({"champion": "1"}))
    _log_jsonl(ws2.audit / "insight", cur, np.random.default_rng(3).random(n), t0)
    j = measure(
        lambda: monitor_window(cfg, ws2, t0 - 1, t0 + n * 1e-5 + 1, threads=threads, cache=False),
        repeat=2,
        warmup=1,
    )
    cases.append(
        case(
            f"the window ({n:,}) logged as audit format 3 (columnar) vs format 2 (JSON lines)",
            full,
            "format 2, the same reader and statistics",
            j,
            j.result.traffic.requests == n,
            where_the_time_goes_format2={k: round(v, 3) for k, v in j.result.seconds.items()},
        )
    )
    # Same window, same statistics: the kernels' report (Evidently's choices) vs Evidently.
    _ours(ref.head(500), cur.head(500))
    ours = measure(partial(_ours, ref, cur), 3)
    _evidently(ref.head(500), cur.head(500))
    ev = measure(partial(_evidently, ref, cur), 3 if smoke else 2, warmup=0)
    agree = all(
        abs(ours.result[c] - ev.result[c]) <= 1e-9 * max(1.0, abs(ev.result[c])) for c in NUM
    )
    cases.append(
        case(
            f"drift statistics of the window ({n:,} x 25) vs a {len(ref):,}-row reference",
            ours,
            "Evidently 0.7 DataDriftPreset",
            ev,
            agree,
        )
    )


def _append_cases(cases: list[dict[str, Any]], smoke: bool) -> None:
    """Appending one served request: inputs from a request frame, the record, the write;
    one writer thread, then 16 threads at once (group commit)."""
    import threading

    from engine.audit import AuditWriter, audit_inputs, decision_record
    from engine.audit.verify import verify

    tmp = Path(tempfile.mkdtemp(prefix="bench-append-"))
    try:
        cur = _frame(1, 2, 0.0)
        # compact=False: the segment stays as the group commits wrote it, for the case below
        w = AuditWriter(tmp / "append", writer="bench", columnar=True, compact=False)
        lid = w.register_layout(NUM, CAT, [])

        def rec() -> dict[str, Any]:
            return decision_record(
                route="predict",
                request_id="0" * 32,
                model="m",
                versions=["1"],
                generation=1,
                ids=["c1"],
                layout=lid,
                inputs=audit_inputs(cur, "values", NUM, CAT),
                input_policy="values",
                scores=[0.3],
                threshold=0.5,
                latency_ms=2.0,
            )

        k = 200 if smoke else 2000

        def sequential() -> int:
            for _ in range(k):
                w.append([rec()])
            return k

        def concurrent(threads: int = 16) -> int:
            def work() -> None:
                for _ in range(k // threads):
                    w.append([rec()])

            ts = [threading.Thread(target=work) for _ in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            return (k // threads) * threads

        limit = measure(lambda: 0.0002, 1, warmup=0)
        limit.min = limit.median = limit.max = 0.0002
        appended = 0
        rows: list[dict[str, Any]] = []
        for name, fn in (
            ("one writer thread", sequential),
            ("16 threads at once (group commit)", concurrent),
        ):
            per = measure(fn, 5)
            appended += per.result * (per.runs + per.warmup)
            for t in ("min", "median", "max"):
                setattr(per, t, getattr(per, t) / per.result)
            rows.append(
                case(
                    f"append one served request (25 inputs) to the columnar log, {name}",
                    per,
                    "budget: 0.2 ms",
                    limit,
                    False,  # set below, from what the log holds
                    per_request_ms=round(per.median * 1000, 4),
                    # Reported, not asserted: a timing is the benchmark's to show, the
                    # smoke test checks only that every record was written once.
                    within_budget=per.median <= 0.0002,
                )
            )
        w.close()
        # Equal: every appended record is in the log once, and the chain verifies.
        checked = verify(tmp / "append")
        # each segment holds its open record and one layout record besides the requests
        held = sum(s.records - 2 for s in checked.segments)
        for row in rows:
            row["equal"] = checked.ok and held == appended
            row["records_in_log"] = held
        cases.extend(rows)
        cases.append(_compaction_case(w.path, rows[0]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _compaction_case(seg: Path, append_row: dict[str, Any]) -> dict[str, Any]:
    """Compacting the closed segment the appends wrote (group-commit frames -> 64k-row Arrow
    batches; engine.audit.compact, run by the writer in a background thread when a segment
    closes): seconds a record, on a fresh copy each run, against the append of a record
    from one thread (the cost it follows)."""
    import json as _json

    from engine.audit import columnar as col
    from engine.audit.compact import compact
    from engine.audit.verify import segment_name, verify

    head = _json.loads(seg.with_suffix(".head").read_text())
    sc = col.scan(segment_name(seg), seg.read_bytes())
    n = sc.records
    copies = []
    for i in range(4):  # one warm-up, three timed
        d = seg.parent.parent / f"compact{i}"
        d.mkdir()
        shutil.copy(seg, d / seg.name)
        shutil.copy(seg.with_suffix(".head"), d / seg.with_suffix(".head").name)
        copies.append(d / seg.name)
    todo = list(copies)
    per = measure(lambda: compact(todo.pop(0), head), 3)
    for t in ("min", "median", "max"):
        setattr(per, t, getattr(per, t) / n)
    ok = bool(per.result) and all(verify(c.parent).ok for c in copies)
    after = col.scan(segment_name(copies[-1]), copies[-1].read_bytes())
    ok = ok and after.records == n
    append = measure(lambda: append_row["engine_median_s"], 1, warmup=0)
    append.min, append.median, append.max = (
        append_row["engine_min_s"],
        append_row["engine_median_s"],
        append_row["engine_max_s"],
    )
    return case(
        f"compact a closed segment of {n:,} group-commit records (background, per record)",
        per,
        "append one record, one writer thread",
        append,
        ok,
        frames_before=len(sc.frames),
        frames_after=len(after.frames),
        per_record_us=round(per.median * 1e6, 1),
    )


def main() -> None:
    ap = parser(__doc__ or "")
    ap.add_argument("--sizes", default=None, help="requests per window, comma-separated")
    ap.add_argument("--cluster", default=None, help="a Ray cluster's address for the task run")
    args = ap.parse_args()
    sizes = (
        [int(x) for x in args.sizes.split(",")]
        if args.sizes
        else ([20_000] if args.smoke else [1_000_000, 10_000_000])
    )
    n_ref = 20_000 if args.smoke else 200_000
    cases: list[dict[str, Any]] = []
    for n in sizes:
        print(f"bench_monitor: a window of {n:,} requests", flush=True)
        _window_cases(n, n_ref, args, cases)
    _append_cases(cases, args.smoke)
    path = write("bench_monitor", args.smoke, cases, args.out)
    print(f"bench_monitor: results in {path}")


if __name__ == "__main__":
    main()
