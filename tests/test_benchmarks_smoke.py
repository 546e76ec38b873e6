"""Every benchmark runs at its --smoke size and reports agreeing answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHES = sorted((ROOT / "benchmarks").glob("bench_*.py"))


pytestmark = pytest.mark.bench


@pytest.mark.parametrize("script", BENCHES, ids=lambda p: p.stem)
def test_benchmark_smoke(script: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{script.stem}", "--smoke", "--out", str(out)],
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
