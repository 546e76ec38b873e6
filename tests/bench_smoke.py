"""Every benchmark runs at its --smoke size and reports agreeing answers. The benchmarks
are split over three test files so the integration tier's two workers (one file each at a
time, --dist loadfile) share them: ``GROUPS`` names the files' benchmarks; a benchmark in
no group runs in the last file, so a new one is never left out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))
# Seconds at the smoke size (a 2-core run): serve 96, forecast 71, tune 69, score 48,
# ingest 38, monitor 35, forecast_scale 35, asof 31, report 28, drift 21, kernels 17.
GROUPS = {
    "a": ["bench_serve", "bench_score", "bench_asof", "bench_drift"],
    "b": ["bench_forecast", "bench_ingest", "bench_monitor", "bench_kernels"],
}


def benches(group: str) -> list[str]:
    if group in GROUPS:
        return [b for b in GROUPS[group] if b in BENCHES]
    named = {b for g in GROUPS.values() for b in g}
    return [b for b in BENCHES if b not in named]


def run_smoke(stem: str, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{stem}", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert doc["smoke"] is True and doc["cases"]
    for case in doc["cases"]:
        assert case["equal"] is True, case
        assert case["engine_s"] > 0 and case["reference_s"] > 0
        for side in ("engine", "reference"):  # warm, repeated: the spread is recorded
            lo, mid, hi = (case[f"{side}_{k}_s"] for k in ("min", "median", "max"))
            assert 0 < lo <= mid <= hi, (side, case)
            assert case[f"{side}_runs"] >= 1
