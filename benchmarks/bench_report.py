"""The HTML report against Evidently's HTML report: build time and page size.

Ours: ``insight report`` (engine.report.write_report) from a monitor history of 2,000 runs
of 25 features (a week of 5-minute windows), with the registry read (empty here; each
registered version adds one card read): one self-contained page of aggregates. Evidently
0.7: ``Report([DataDriftPreset()])`` on the window itself and ``save_html``. (Measured: its
page was 5.2 MB at 20,000 and at 1,000,000 rows, so 0.7 no longer grows with the window as
the versions behind evidently#15 did; it carries its own plotting bundle.) The statistics behind the two pages are compared in bench_monitor (same
values); here the page is the product. The window's statistics cost our side a monitor run
(bench_monitor: the whole 1,000,000-request window, log read included); that cost is paid
once per window, whatever page is built from it.

Full: a window of 1,000,000 rows x 25 features against 200,000 reference rows.
``--smoke``: 20,000 x 25 against 20,000.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import case, measure, parser, write
from benchmarks.bench_monitor import CAT, NUM, _frame


def _history(path: Path, runs: int) -> None:
    rng = np.random.default_rng(9)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i in range(runs):
            m = {
                "role": "champion",
                "rows": 500,
                "requests": 500,
                "decision_rate": float(rng.uniform(0.15, 0.25)),
                "score_mean": float(rng.uniform(0.2, 0.3)),
                "latency": {"p50_ms": 8.0, "p95_ms": 12.0, "p99_ms": 20.0},
                "psi": {c: float(rng.random() * 0.2) for c in NUM},
                "js": {c: float(rng.random() * 0.05) for c in CAT},
                "concept": {"label_rate": 0.22, "lift_top_decile": 2.5},
                "confusion": {"tp": 30, "fp": 70, "fn": 10, "tn": 390},
                "fairness": {},
                "ate": None,
            }
            line = {
                "run_id": f"r{i}",
                "from": 1.8e9 + 300 * i,
                "to": 1.8e9 + 300 * (i + 1),
                "requests": 500,
                "rows": 500,
                "chain_ok": True,
                "models": {"1": m},
                "firing": [],
                "changes": [],
                "covered": [["seg", 500 * i, 500 * i + 499]],
            }
            f.write(json.dumps(line) + "\n")


def _evidently_html(ref: Any, cur: Any, out: Path) -> int:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snap = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
        snap.save_html(str(out))
    return out.stat().st_size


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    n, n_ref = (20_000, 20_000) if args.smoke else (1_000_000, 200_000)
    from engine.config.project import DEFAULT_PROJECT, ProjectConfig
    from engine.report import write_report
    from engine.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    cases: list[dict[str, Any]] = []
    try:
        cfg = ProjectConfig.load(DEFAULT_PROJECT)
        ws = Workspace(tmp / ".insight").ensure()
        _history(ws.root / "monitor" / "history.jsonl", 2000)

        def ours() -> int:
            return write_report(cfg, ws, out=tmp / "ours" / "report.html").bytes

        mine = measure(ours, 3)
        ref, cur = _frame(n_ref, 1, 0.0), _frame(n, 2, 0.05)
        _evidently_html(ref.head(500), cur.head(500), tmp / "warm.html")
        ev = measure(
            partial(_evidently_html, ref, cur, tmp / "ev.html"),
            1 if not args.smoke else 2,
            warmup=0,
        )
        ours_b, ev_b = int(mine.result), int(ev.result)
        cases.append(
            case(
                f"build the report page (2,000 monitor runs) vs Evidently's HTML drift report "
                f"of a {n:,}-row window",
                mine,
                "Evidently 0.7 DataDriftPreset + save_html",
                ev,
                ours_b < 2 * 1024 * 1024,
                page_bytes=ours_b,
                reference_page_bytes=ev_b,
                size_ratio=round(ev_b / ours_b, 1),
            )
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write("bench_report", args.smoke, cases, args.out)


if __name__ == "__main__":
    main()
