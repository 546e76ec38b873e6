"""Shared console output: stage headers with timings and small tables."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console

console = Console(highlight=False)


@contextlib.contextmanager
def stage(title: str) -> Iterator[None]:
    console.rule(f"[bold cyan]{title}")
    t0 = time.monotonic()
    yield
    console.print(f"[dim]{title}: {time.monotonic() - t0:.1f} s[/]")


def drift_table(columns: list[Any]) -> Any:
    """One row per feature: the test's statistic and p-value, the distance, the verdict."""
    from rich.table import Table

    t = Table("feature", "kind", "test", "p-value", "distance", "drifted")
    for c in columns:
        numeric = c.kind == "numeric"
        t.add_row(
            c.column,
            c.kind,
            f"KS {c.ks_statistic:.3f}" if numeric else "chi-square",
            f"{c.test_pvalue:.2g}",
            f"PSI {c.psi:.3f}" if numeric else f"JS {c.jensen_shannon:.3f}",
            "[bold red]yes[/]" if c.drifted else "no",
        )
    return t
