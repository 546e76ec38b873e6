"""Benchmarks at their --smoke size, group b (tests/bench_smoke.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench_smoke import benches, run_smoke

pytestmark = pytest.mark.bench


@pytest.mark.parametrize("stem", benches("b"))
def test_benchmark_smoke(stem: str, tmp_path: Path) -> None:
    run_smoke(stem, tmp_path)
