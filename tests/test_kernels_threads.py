"""Kernels use the cores they are given (engine.kernels.cores) and give the same answers at
1 thread and at N: no pool in the engine has a fixed size."""

from __future__ import annotations

from collections.abc import Iterator

import numba
import numpy as np
import pandas as pd
import pytest

from engine.kernels import cores


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


def test_allowed_is_the_smallest_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    full = cores.allowed()
    assert 1 <= full <= numba.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cores.allowed() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert cores.allowed() == full
    monkeypatch.delenv("OMP_NUM_THREADS")
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert cores.allowed() == 1
        with cores.numba_threads() as n:
            assert n == 1
    finally:
        numba.set_num_threads(before)


def _answers(seed: int) -> dict[str, object]:
    from engine.kernels.metrics import auc_bootstrap
    from engine.kernels.qini import uplift_metrics
    from engine.kernels.report import report
    from engine.kernels.sketch import NumericSketch, drift_vs_sketch

    rng = np.random.default_rng(seed)
    n = 300_000  # above every kernel's threshold for going parallel
    y = (rng.random(n) < 0.3).astype(float)
    t = (rng.random(n) < 0.5).astype(float)
    s = rng.random(n) + 0.1 * y
    ref = rng.normal(0, 1, 200_000)
    cur = rng.normal(0.05, 1, n)
    sk = NumericSketch.from_sample(ref)
    d = drift_vs_sketch(sk, cur)
    rep = report(
        pd.DataFrame({"a": ref[:50_000], "b": rng.choice(list("abc"), 50_000)}),
        pd.DataFrame({"a": cur[:60_000], "b": rng.choice(list("abcd"), 60_000)}),
    )
    return {
        "uplift": tuple(uplift_metrics(y, t, s)),
        "auc": auc_bootstrap(y[:20_000], s[:20_000], n_boot=100),
        "sketch": d,
        "report": [r.as_dict() for r in rep],
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_answers_at_one_thread_and_at_n(seed: int) -> None:
    many = _answers(seed)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = _answers(seed)
    finally:
        numba.set_num_threads(before)
    assert one == many
