"""The monitor on a window of served requests, reading the log included.

Full: 1,000,000 one-row requests with 25 features (20 numeric, 5 categorical), written by
the real audit writer (hash-chained segments, rotated every 100,000 records), against a
reference profile of 200,000 training rows:

1. ``insight monitor``'s window computation (engine.monitor.run.monitor_window): list,
   verify every chain it reads, parse, assemble, and every statistic of the result, against
   the budget (10 s) and broken down (where the time goes);
2. the drift statistics of that window, with Evidently's method choices (the kernels'
   report), against Evidently 0.7's DataDriftPreset on the same window (same values);
3. appending one served request to the audit log (inputs, record, chained write), against
   the budget of 0.2 ms per request.

Smoke: 20,000 requests, a 20,000-row reference.
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


def _log(root: Path, cur: pd.DataFrame, scores: np.ndarray) -> float:
    """The window as the served app writes it: one record per request, chained."""
    from engine.audit import AuditWriter, decision_record

    w = AuditWriter(root, writer="bench", anchor_every=10_000, max_records=100_000)
    lid = w.register_layout(NUM, CAT, [])
    xs = cur[NUM].to_numpy().round(6).tolist()
    cs = cur[CAT].to_numpy().tolist()
    t0 = time.time() + 1
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
    return t0


def _evidently(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, float]:
    from benchmarks.bench_drift import _evidently as ev

    return ev(ref, cur)


def _ours(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, float]:
    from engine.kernels.report import report

    return {r.column: r.value for r in report(ref, cur)}


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    n, n_ref = (20_000, 20_000) if args.smoke else (1_000_000, 200_000)
    from engine.config.project import DEFAULT_PROJECT, ProjectConfig
    from engine.monitor.profile import build_profile
    from engine.monitor.run import monitor_window
    from engine.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    cases: list[dict[str, Any]] = []
    try:
        ref, cur = _frame(n_ref, 1, 0.0), _frame(n, 2, 0.05)
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
        t_gen = time.perf_counter()
        t0 = _log(ws.audit / "insight", cur, rng.random(n))
        gen_s = time.perf_counter() - t_gen
        size_mb = sum(p.stat().st_size for p in (ws.audit / "insight").glob("*.jsonl")) / 1e6
        window = partial(monitor_window, cfg, ws, t0 - 1, t0 + n * 1e-5 + 1)
        mon = measure(window, repeat=3, warmup=1)
        res = mon.result
        m = res.models["1"]
        budget = measure(lambda: 10.0, repeat=1, warmup=0)  # the budget as the reference side
        budget.min = budget.median = budget.max = 10.0
        cases.append(
            case(
                f"monitor a window of {n:,} served requests x 25 features, reading the log",
                mon,
                "budget: 10 s",
                budget,
                res.traffic.requests == n and res.audit.chain_ok and len(m.features) == 25,
                log_mb=round(size_mb, 1),
                segments=res.audit.segments_read,
                where_the_time_goes={k: round(v, 3) for k, v in res.seconds.items()},
                drifted=m.drifted,
                log_written_s=round(gen_s, 1),
            )
        )
        # Same window, same statistics: the kernels' report (Evidently's choices) vs Evidently.
        _ours(ref.head(500), cur.head(500))
        ours = measure(partial(_ours, ref, cur), 3)
        _evidently(ref.head(500), cur.head(500))
        ev = measure(partial(_evidently, ref, cur), 3 if args.smoke else 2, warmup=0)
        agree = all(
            abs(ours.result[c] - ev.result[c]) <= 1e-9 * max(1.0, abs(ev.result[c])) for c in NUM
        )
        cases.append(
            case(
                f"drift statistics of the window ({n:,} x 25) vs a {n_ref:,}-row reference",
                ours,
                "Evidently 0.7 DataDriftPreset",
                ev,
                agree,
            )
        )
        cases.append(
            case(
                f"the monitor's whole window ({n:,} requests, log read and verified)",
                mon,
                "Evidently 0.7 DataDriftPreset on the same window (a DataFrame in memory)",
                ev,
                True,
            )
        )
        # Appending one served request: inputs from a request frame, the record, the write.
        from engine.audit import AuditWriter, audit_inputs, decision_record

        w = AuditWriter(tmp / "append", writer="bench")
        lid = w.register_layout(NUM, CAT, [])
        one = cur.head(1)

        def append(k: int = 2000) -> int:
            for _ in range(k):
                rec = decision_record(
                    route="predict",
                    request_id="0" * 32,
                    model="m",
                    versions=["1"],
                    generation=1,
                    ids=["c1"],
                    layout=lid,
                    inputs=audit_inputs(one, "values", NUM, CAT),
                    input_policy="values",
                    scores=[0.3],
                    threshold=0.5,
                    latency_ms=2.0,
                )
                w.append([rec])
            return k

        per = measure(append, 5)
        for t in ("min", "median", "max"):
            setattr(per, t, getattr(per, t) / 2000)
        limit = measure(lambda: 0.0002, 1, warmup=0)
        limit.min = limit.median = limit.max = 0.0002
        cases.append(
            case(
                "append one served request (25 inputs) to the audit log",
                per,
                "budget: 0.2 ms",
                limit,
                per.median <= 0.0002,
                per_request_ms=round(per.median * 1000, 4),
            )
        )
        w.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write("bench_monitor", args.smoke, cases, args.out)


if __name__ == "__main__":
    main()
