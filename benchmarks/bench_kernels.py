"""Every kernel of the oracle table against its reference, side by side, plus the
bootstrap against a plain NumPy loop and the sketch against one memory pass."""

from __future__ import annotations

from functools import partial

import numpy as np

from benchmarks._harness import case, measure, parser, write
from benchmarks.oracles import ORACLES


def _numpy_bootstrap(y: np.ndarray, t: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, y.size, y.size)
        yb, tb = y[idx], t[idx]
        out[b] = yb[tb == 1].mean() - yb[tb == 0].mean()
    lo, hi = np.quantile(out, [0.025, 0.975])
    return float(lo), float(hi)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    cases = []
    for o in ORACLES:
        n = o.test_n if args.smoke else o.full_n
        data = o.make(n, 0)
        warm = o.make(200, 1)
        o.ours(*warm)  # compile / warm up both sides on a small input first
        o.reference(*warm)
        ours = measure(partial(o.ours, *data), repeat=5, warmup=1)
        ref = measure(partial(o.reference, *data), repeat=3, warmup=1)
        agree = o.agree(ours.result, ref.result)
        cases.append(case(f"{o.name}, n={n:,}", ours, o.reference_name, ref, agree))

    from engine.kernels.effects import bootstrap_ci

    n = 20_000 if args.smoke else 1_000_000
    n_boot = 100 if args.smoke else 1000
    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.2 + 0.05 * t).astype(np.float64)
    bootstrap_ci(y[:100], t[:100], n_boot=10)
    boot = measure(lambda: bootstrap_ci(y, t, n_boot=n_boot, seed=1), repeat=5)
    # The NumPy loop takes tens of seconds at full size: warmed on the smoke size instead.
    _numpy_bootstrap(y[:1000], t[:1000], 10, 2)
    loop = measure(
        lambda: _numpy_bootstrap(y, t, n_boot, 2), repeat=3 if args.smoke else 2, warmup=0
    )
    ours, ref = boot.result, loop.result
    width = ours.high - ours.low
    # Two independent percentile bootstraps differ by Monte-Carlo error: the 2.5% quantile's
    # SE is ~0.68 * width / sqrt(B), so 3 sigma of a difference is ~2.9 * width / sqrt(B).
    tol = 2.9 * width / np.sqrt(n_boot)
    cases.append(
        case(
            f"bootstrap CI of ATE, {n_boot} resamples x {n:,} rows",
            boot,
            "NumPy row-resampling loop",
            loop,
            abs(ours.low - ref[0]) < tol and abs(ours.high - ref[1]) < tol,
        )
    )

    from engine.kernels.drift import ks_2samp, psi
    from engine.kernels.sketch import NumericSketch, drift_vs_sketch

    n = 20_000 if args.smoke else 10_000_000
    a, b = rng.normal(size=n), rng.normal(0.01, 1, size=n)
    sk = NumericSketch.from_sample(a, 1000, 10)
    drift_vs_sketch(sk, b[:100])
    sketch = measure(lambda: drift_vs_sketch(sk, b), repeat=7)
    mem = measure(lambda: b.sum(), repeat=7)
    d = sketch.result
    exact = ks_2samp(a, b, method="asymp").statistic
    cases.append(
        case(
            f"drift vs saved sketch (KS bracket + PSI), n={n:,}",
            sketch,
            "one memory pass (np.sum)",
            mem,
            d.ks_low <= exact <= d.ks_low + d.ks_err and abs(d.psi - psi(a, b)) < 1e-12,
            ks_err_bound=d.ks_err,
        )
    )
    write("bench_kernels", args.smoke, cases, args.out)


if __name__ == "__main__":
    main()
