"""The radix sort equals np.sort, many seeds and awkward values."""

from __future__ import annotations

import numpy as np

from engine.kernels._sort import radix_sort, sort_f64


def test_radix_sort_equals_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 50_000))
    a = rng.standard_t(2, size=n) * 10.0 ** rng.integers(-300, 300)
    if seed % 3 == 0:
        a = np.round(a, 1)  # many ties
    a[: min(n, 4)] = [0.0, -0.0, np.inf, -np.inf][: min(n, 4)]
    if seed % 5 == 0:
        a = np.full(n, 3.25)  # one value: every pass skipped
    np.testing.assert_array_equal(radix_sort(a), np.sort(a))
    np.testing.assert_array_equal(sort_f64(a), np.sort(a))


def test_sort_f64_large_input_equals_numpy() -> None:
    a = np.random.default_rng(1).normal(size=300_000)
    np.testing.assert_array_equal(sort_f64(a), np.sort(a))
