"""Shared benchmark plumbing: timing, machine info, atomic JSON results.

Each ``bench_*.py`` times our code and its reference side by side in one process and
reports ``ratio = reference_seconds / engine_seconds`` (above 1: we are faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (the test suite)")
    ap.add_argument("--out", type=Path, default=None, help="results JSON path")
    return ap


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def write(name: str, smoke: bool, cases: list[dict[str, Any]], out: Path | None) -> Path:
    path = out or RESULTS / f"{name}{'.smoke' if smoke else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "smoke": smoke,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "cases": cases,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)
    for c in cases:
        print(
            f"{name}: {c['case']}: engine {c['engine_s']:.4f} s, {c['reference']} "
            f"{c['reference_s']:.4f} s, ratio {c['ratio']:.2f}x, equal={c['equal']}"
        )
    print(f"results: {path}")
    return path
