"""Benchmarks at their --smoke size, group c (tests/bench_smoke.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench_smoke import benches, run_smoke

pytestmark = pytest.mark.bench


@pytest.mark.parametrize("stem", benches("c"))
def test_benchmark_smoke(stem: str, tmp_path: Path) -> None:
    run_smoke(stem, tmp_path)


def test_every_benchmark_is_in_exactly_one_group() -> None:
    from tests.bench_smoke import BENCHES

    groups = [b for g in ("a", "b", "c") for b in benches(g)]
    assert sorted(groups) == BENCHES
