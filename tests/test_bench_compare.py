"""benchmarks/compare.py flags a slowdown beyond the tolerance, not noise within the old
run's spread, and refuses runs measured on different profiles or machines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.compare import main

MACHINE = {"profile": "local", "cpu_model": "X", "cpus": 2, "nodes": 1, "git_sha": "abc"}


def _write(path: Path, cases: list[tuple[str, float, float]], **machine: Any) -> Path:
    doc = {
        "benchmark": "bench_x",
        "machine": {**MACHINE, **machine},
        "cases": [
            {"case": c, "engine_median_s": m, "engine_max_s": mx, "engine_min_s": m}
            for c, m, mx in cases
        ],
    }
    path.write_text(json.dumps(doc))
    return path


def test_flags_regressions_beyond_tolerance(tmp_path: Path, capsys: Any) -> None:
    old = _write(tmp_path / "old.json", [("a", 1.0, 1.05), ("b", 1.0, 1.4), ("c", 1.0, 1.0)])
    new = _write(tmp_path / "new.json", [("a", 1.3, 1.3), ("b", 1.3, 1.3), ("c", 0.5, 0.5)])
    assert main([str(old), str(new), "--tolerance", "0.15"]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED bench_x / a" in out, "30% slower, beyond the old spread"
    assert "ok        bench_x / b" in out, "within the old run's own spread"
    assert "ok        bench_x / c" in out
    assert main([str(old), str(old)]) == 0


def test_refuses_unlike_runs(tmp_path: Path, capsys: Any) -> None:
    old = _write(tmp_path / "old.json", [("a", 1.0, 1.0)])
    new = _write(tmp_path / "new.json", [("a", 3.0, 3.0)], profile="lab", nodes=3)
    assert main([str(old), str(new)]) == 2
    assert "different profile, nodes" in capsys.readouterr().out
    assert main([str(old), str(new), "--any-machine"]) == 1
    assert main([str(tmp_path / "nope.json"), str(new)]) == 2


def test_run_only_names_an_existing_benchmark() -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--only", "bench_nope"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "bench_nope" in r.stdout and "bench_score" in r.stdout
