"""Compare two benchmark runs and flag regressions.

    python -m benchmarks.compare OLD NEW [--tolerance 0.15]

OLD and NEW are result JSON files (benchmarks/results/*.json) or folders of them. Cases are
matched by benchmark and case name; a case regressed when NEW's engine median is more than
``tolerance`` slower than OLD's (and still slower than OLD's slowest run, so noise within
OLD's own spread is not flagged). Runs of different profiles, CPU models or CPU counts are
not comparable: refused unless ``--any-machine``. Exit 1 when anything regressed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

SAME = ("profile", "cpu_model", "cpus", "nodes")


def load(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for f in files:
        doc = json.loads(f.read_text())
        for c in doc.get("cases", []):
            if "engine_median_s" in c:
                out[(doc["benchmark"], c["case"])] = {**c, "_machine": doc.get("machine", {})}
    return out


def compare(
    old: dict[tuple[str, str], dict[str, Any]],
    new: dict[tuple[str, str], dict[str, Any]],
    tolerance: float,
    any_machine: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows for every case in both, and the problems that make the runs incomparable."""
    problems = []
    rows = []
    for key in sorted(set(old) & set(new)):
        a, b = old[key], new[key]
        ma, mb = a["_machine"], b["_machine"]
        diff = [k for k in SAME if ma.get(k) != mb.get(k)]
        if diff and not any_machine:
            problems.append(
                f"{key[0]} / {key[1]}: measured on different {', '.join(diff)} "
                f"({', '.join(f'{k}: {ma.get(k)} vs {mb.get(k)}' for k in diff)})"
            )
            continue
        slower = b["engine_median_s"] / a["engine_median_s"] - 1.0
        regressed = slower > tolerance and b["engine_median_s"] > a.get(
            "engine_max_s", a["engine_median_s"]
        )
        rows.append(
            {
                "benchmark": key[0],
                "case": key[1],
                "old_s": a["engine_median_s"],
                "new_s": b["engine_median_s"],
                "change": slower,
                "regressed": regressed,
                "old_sha": ma.get("git_sha"),
                "new_sha": mb.get("git_sha"),
            }
        )
    return rows, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--tolerance", type=float, default=0.15, help="allowed slowdown (0.15: 15%%)")
    ap.add_argument("--any-machine", action="store_true", help="compare unlike runs anyway")
    args = ap.parse_args(argv)
    for p in (args.old, args.new):
        if not p.exists():
            print(f"error: {p} does not exist", file=sys.stderr)
            return 2
    rows, problems = compare(load(args.old), load(args.new), args.tolerance, args.any_machine)
    for p in problems:
        print(f"not comparable: {p}")
    for r in rows:
        flag = "REGRESSED" if r["regressed"] else "ok"
        print(
            f"{flag:9} {r['benchmark']} / {r['case']}: {r['old_s']:.4f} s -> {r['new_s']:.4f} s "
            f"({r['change']:+.1%})"
        )
    bad = [r for r in rows if r["regressed"]]
    print(
        f"{len(rows)} case(s) compared, {len(bad)} regressed beyond {args.tolerance:.0%}"
        + (f", {len(problems)} not comparable" if problems else "")
    )
    if problems and not rows:
        return 2
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
