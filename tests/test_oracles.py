"""The oracle table (benchmarks/oracles.py): every kernel agrees with its reference."""

from __future__ import annotations

import pytest

from benchmarks.oracles import ORACLES, Oracle


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("oracle", ORACLES, ids=lambda o: o.name)
def test_kernel_agrees_with_reference(oracle: Oracle, seed: int) -> None:
    data = oracle.make(oracle.test_n, seed)
    ours, ref = oracle.ours(*data), oracle.reference(*data)
    assert oracle.agree(ours, ref), f"{oracle.name} seed={seed}: {ours} vs {ref}"
