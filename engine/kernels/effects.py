"""Average treatment effects of a randomized assignment: the ATE with a Welch normal CI and
with a percentile bootstrap CI.

Both intervals cover the true effect at the nominal rate in simulation, from 100 rows and
a 2% base rate upward (tests/test_intervals_coverage.py).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from engine.kernels._checks import outcome_treatment
from engine.kernels.intervals import Interval, percentile, z_value


def ate(y: ArrayLike, t: ArrayLike, alpha: float = 0.05) -> Interval:
    """Difference in means with a Welch (unequal-variance) normal CI.

    Examples
    --------
    >>> ate([1, 0, 1, 1], [1, 0, 1, 0]).estimate
    0.5
    """
    ya, ta = outcome_treatment(y, t)
    y1, y0 = ya[ta == 1], ya[ta == 0]
    est = float(y1.mean() - y0.mean())
    if y1.size < 2 or y0.size < 2:
        raise ValueError("each group needs at least 2 rows for a variance.")
    se = math.sqrt(y1.var(ddof=1) / y1.size + y0.var(ddof=1) / y0.size)
    z = z_value(alpha)
    return Interval(est, est - z * se, est + z * se)


@njit(cache=True)
def _boot_rows(
    y: NDArray[np.float64], t: NDArray[np.int64], n_boot: int, seed: int
) -> NDArray[np.float64]:
    np.random.seed(seed)  # Numba's own generator: one stream per seed, reproducible
    n = y.size
    out = np.empty(n_boot)
    for b in range(n_boot):
        s1 = 0.0
        s0 = 0.0
        c1 = 0
        for _ in range(n):
            i = np.random.randint(0, n)
            if t[i] == 1:
                s1 += y[i]
                c1 += 1
            else:
                s0 += y[i]
        c0 = n - c1
        out[b] = s1 / c1 - s0 / c0 if (c1 > 0 and c0 > 0) else np.nan
    return out


def bootstrap_ci(
    y: ArrayLike,
    t: ArrayLike,
    stat: str = "ate",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap CI of the difference in means (``stat="ate"``).

    For a 0/1 outcome the bootstrap needs only the 2x2 cell counts: each resample is one
    multinomial draw over the four (t, y) cells, so 1000 resamples of 1e6 rows cost
    microseconds. Other outcomes resample rows in a Numba loop. Same seed, same interval.
    """
    if stat != "ate":
        raise ValueError(f"stat must be 'ate', got {stat!r}.")
    if n_boot < 10:
        raise ValueError(f"n_boot must be >= 10, got {n_boot}.")
    ya, ta = outcome_treatment(y, t)
    est = float(ya[ta == 1].mean() - ya[ta == 0].mean())
    if np.isin(ya, (0.0, 1.0)).all():
        cells = np.array(
            [
                ((ta == 0) & (ya == 0)).sum(),
                ((ta == 0) & (ya == 1)).sum(),
                ((ta == 1) & (ya == 0)).sum(),
                ((ta == 1) & (ya == 1)).sum(),
            ],
            dtype=np.float64,
        )
        draws = np.random.default_rng(seed).multinomial(ya.size, cells / ya.size, size=n_boot)
        n0, n1 = draws[:, 0] + draws[:, 1], draws[:, 2] + draws[:, 3]
        with np.errstate(invalid="ignore", divide="ignore"):
            boots = draws[:, 3] / n1 - draws[:, 1] / n0
    else:
        boots = _boot_rows(ya, ta, n_boot, seed)
    return percentile(est, boots, alpha)


def ate_from_cells(cells: NDArray[np.int64], alpha: float) -> Interval:
    """Welch ATE of a 0/1 outcome from the 2x2 (t, y) cell counts (as :func:`ate`)."""
    n0, n1 = float(cells[0] + cells[1]), float(cells[2] + cells[3])
    if n1 < 2 or n0 < 2:
        raise ValueError("each group needs at least 2 rows for a variance.")
    p0, p1 = cells[1] / n0, cells[3] / n1
    est = float(p1 - p0)
    se = math.sqrt(p1 * (1 - p1) / (n1 - 1) + p0 * (1 - p0) / (n0 - 1))
    z = z_value(alpha)
    return Interval(est, est - z * se, est + z * se)
