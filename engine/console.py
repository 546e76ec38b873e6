"""Shared console output: stage headers with timings and small tables."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console

console = Console(highlight=False)


@contextlib.contextmanager
def stage(title: str) -> Iterator[None]:
    console.rule(f"[bold cyan]{title}")
    t0 = time.monotonic()
    yield
    console.print(f"[dim]{title}: {time.monotonic() - t0:.1f} s[/]")
