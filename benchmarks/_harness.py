"""Shared benchmark plumbing: timing, machine info, atomic JSON results.

Each ``bench_*.py`` times our code and its reference side by side in one process and
reports ``ratio = reference_seconds / engine_seconds`` (above 1: we are faster).

Timing is warm and repeated (:func:`measure`): untimed warm-up calls first (Numba
compilation, the one-time sort selection, imports, caches), then ``repeat`` timed calls;
each side records min, median and max, and the ratio is of the medians. A cold first call
once made KS on 1e7 look 1.6x scipy when warm calls gave 4.1-7.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (the test suite)")
    ap.add_argument("--out", type=Path, default=None, help="results JSON path")
    return ap


@dataclass
class Timing:
    """Seconds of ``runs`` warm calls, and the last call's result."""

    min: float
    median: float
    max: float
    runs: int
    warmup: int
    result: Any = None

    def fields(self, side: str) -> dict[str, Any]:
        return {
            f"{side}_s": self.median,
            f"{side}_min_s": self.min,
            f"{side}_median_s": self.median,
            f"{side}_max_s": self.max,
            f"{side}_runs": self.runs,
            f"{side}_warmup_runs": self.warmup,
        }


def measure(fn: Callable[[], Any], repeat: int = 3, warmup: int = 1) -> Timing:
    """``warmup`` untimed calls, then ``repeat`` timed ones. ``warmup=0`` only where the
    caller already warmed the code on a smaller input (say so at the call)."""
    for _ in range(max(0, warmup)):
        fn()
    times, result = [], None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return Timing(min(times), statistics.median(times), max(times), len(times), warmup, result)


def case(
    name: str,
    engine: Timing,
    reference_name: str,
    reference: Timing,
    equal: bool,
    **extra: Any,
) -> dict[str, Any]:
    """One result row: both sides' timings, the ratio of medians, and whether they agreed."""
    return {
        "case": name,
        **engine.fields("engine"),
        "reference": reference_name,
        **reference.fields("reference"),
        "ratio": reference.median / engine.median,
        "equal": bool(equal),
        **extra,
    }


PACKAGES = (
    "ray",
    "pyspark",
    "mlflow",
    "xgboost",
    "scikit-learn",
    "numba",
    "numpy",
    "pandas",
    "pyarrow",
    "shap",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ray_nodes() -> dict[str, Any]:
    """Nodes and CPUs of the Ray cluster this process is connected to, or of the cluster
    ``RAY_ADDRESS`` names (inside a Ray job, for a benchmark that ran without Ray); one node
    when neither."""
    try:
        import ray

        joined = False
        if not ray.is_initialized() and os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
            joined = True
        if ray.is_initialized():
            alive = [n for n in ray.nodes() if n.get("Alive")]
            out = {
                "nodes": len(alive),
                "cluster_cpus": sum(n["Resources"].get("CPU", 0) for n in alive),
            }
            if joined:
                ray.shutdown()
            return out
    except Exception:
        pass
    return {"nodes": 1, "cluster_cpus": os.cpu_count()}


def machine() -> dict[str, Any]:
    """Where and with what a result was measured: enough to refuse comparing unlike runs."""
    from importlib.metadata import PackageNotFoundError, version

    from engine.tracking import code_version

    versions: dict[str, str | None] = {}
    for p in PACKAGES:
        try:
            versions[p] = version(p)
        except PackageNotFoundError:
            versions[p] = None
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "git_sha": code_version(),
        "profile": os.environ.get("INSIGHT_PROFILE") or "local",
        "packages": versions,
        **_ray_nodes(),
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
        spread = ""
        if "engine_min_s" in c:
            spread = (
                f" (engine {c['engine_min_s']:.4f}-{c['engine_max_s']:.4f} over "
                f"{c['engine_runs']}, reference {c['reference_min_s']:.4f}-"
                f"{c['reference_max_s']:.4f} over {c['reference_runs']})"
            )
        print(
            f"{name}: {c['case']}: engine {c['engine_s']:.4f} s, {c['reference']} "
            f"{c['reference_s']:.4f} s, ratio {c['ratio']:.2f}x, equal={c['equal']}{spread}"
        )
    print(f"results: {path}")
    return path
