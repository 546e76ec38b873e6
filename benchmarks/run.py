"""`make bench`: run every benchmarks/bench_*.py, then write benchmarks/RESULTS.md.

Each script runs in its own process (its own warm-up and memory). ``--smoke`` passes
``--smoke`` on (what the test suite does, into a temp folder).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def render(results: Path, out: Path) -> None:
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (benchmarks/run.py) from benchmarks/results/*.json. Ratio = "
        "reference time / engine time, medians (above 1: the engine is faster). Both run in one "
        "process on the same data, warm (warm-up runs first), repeated: each time is the median "
        "with [min-max] and the number of runs; `equal` says the answers agree.",
        "",
        "| benchmark | case | engine (s) | reference | reference (s) | ratio | equal |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in sorted(results.glob("*.json")):
        doc = json.loads(f.read_text())
        if doc.get("smoke"):
            continue
        for c in doc["cases"]:
            lines.append(
                f"| {doc['benchmark']} | {c['case']} | {_t(c, 'engine')} | {c['reference']} | "
                f"{_t(c, 'reference')} | {c['ratio']:.2f}x | {c['equal']} |"
            )
    notes = HERE / "NOTES.md"
    if notes.is_file():
        lines += ["", notes.read_text().strip()]
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)


def _t(c: dict[str, object], side: str) -> str:
    """'median [min-max] xN' when the spread was recorded, else the one time."""
    med = float(c[f"{side}_s"])  # type: ignore[arg-type]

    def f(v: float) -> str:  # below a millisecond, in microseconds
        return f"{v * 1e6:.1f} us" if med < 1e-3 else f"{v:.4f}"

    if f"{side}_min_s" not in c:
        return f(med)
    lo, hi = float(c[f"{side}_min_s"]), float(c[f"{side}_max_s"])  # type: ignore[arg-type]
    return f"{f(med)} [{f(lo)}-{f(hi)}] x{c.get(f'{side}_runs', 1)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument(
        "--results",
        type=Path,
        default=None,
        help="default: results/ (local), else <the profile's workspace>/benchmarks/<profile>",
    )
    ap.add_argument(
        "--only", nargs="+", default=None, metavar="NAME", help="run only these (bench_score ...)"
    )
    ap.add_argument("--profile", default=None, help="a cluster profile of the project file")
    ap.add_argument("--project", type=Path, default=None, help="the project file (profiles)")
    ap.add_argument(
        "--render-only", action="store_true", help="rewrite RESULTS.md from the JSON results"
    )
    args = ap.parse_args()
    import os

    if args.profile or args.project:
        sys.path.insert(0, str(HERE.parent))
        from engine.config.project import DEFAULT_PROJECT
        from engine.project import open_project

        _, ws, prof = open_project(args.project or DEFAULT_PROJECT, None, args.profile)
        os.environ["INSIGHT_PROFILE"] = prof.name  # recorded in every result's machine
        if args.results is None and not prof.is_local:
            args.results = ws.root / "benchmarks" / prof.name
    if args.results is None:
        args.results = HERE / "results"
    if args.render_only:
        render(args.results, HERE / "RESULTS.md")
        print(f"table: {HERE / 'RESULTS.md'}")
        return 0
    failed = []
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        unknown = sorted(set(args.only) - {s.stem for s in scripts})
        if unknown:
            print(f"--only: no benchmark {unknown}; there are {[s.stem for s in scripts]}")
            return 2
        scripts = [s for s in scripts if s.stem in args.only]
    for script in scripts:
        out = args.results / f"{script.stem}{'.smoke' if args.smoke else ''}.json"
        cmd = [sys.executable, "-m", f"benchmarks.{script.stem}", "--out", str(out)]
        cmd += ["--smoke"] if args.smoke else []
        print(f"== {script.name}", flush=True)
        if subprocess.run(cmd, cwd=HERE.parent, check=False).returncode != 0:
            failed.append(script.name)
        else:
            print(f"   -> {out}", flush=True)
    if not args.smoke and not args.only:
        render(args.results, HERE / "RESULTS.md")
        print(f"table: {HERE / 'RESULTS.md'}")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
