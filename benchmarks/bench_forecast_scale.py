"""Forecasting at scale: a panel of 100,000 weekly series x 150 weeks backtested through
the engine (Ray tasks over batches of series, a bounded number in flight) vs statsforecast's
own ``cross_validation`` with ``n_jobs`` = the CPUs, the same cheap families (naive,
seasonal naive: the platform's cost per series is what is measured, not a model's), the
same windows; the answers must agree.

Reported: series per second, seconds per 1,000 series, where the time goes (the engine's
phases: backtest fan-out, choice and calibration), peak memory of the driver and of the Ray
workers (sampled every 0.2 s) against the panel's own bytes, and, on a cluster
(``RAY_ADDRESS``), how the batches split across its nodes.

Full: 100,000 series (``--series`` to change), each side warmed on 300 series and then
timed once (one run is minutes). Smoke: 300 series, 3 batches.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._harness import case, measure, parser, write
from benchmarks.bench_forecast import _statsforecast
from engine.config.forecast import ForecastConfig


def _panel(n: int, t: int, seed: int = 0) -> pd.DataFrame:
    """Weekly series with yearly seasonality, levels spread over two orders of magnitude;
    ids as categories (a string per row would be most of the panel's bytes)."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(5, 500, n)
    k = np.arange(t)
    mu = level[:, None] * (1 + 0.3 * np.sin(2 * np.pi * k / 52))[None, :]
    y = rng.poisson(mu).astype(np.float64)
    ds = pd.date_range("2022-01-03", periods=t, freq="W-MON")
    ids = pd.Categorical.from_codes(
        np.repeat(np.arange(n), t).tolist(), categories=pd.Index([f"s{i:06d}" for i in range(n)])
    )
    return pd.DataFrame(
        {"unique_id": ids, "ds": np.tile(ds.to_numpy(), n), "y": y.ravel(), "observed": True}
    )


class PeakMemory:
    """Peak resident memory (bytes) of this process and, summed, of its Ray worker
    processes on this machine, sampled every ``every`` seconds."""

    def __init__(self, every: float = 0.2) -> None:
        import psutil

        self._ps = psutil
        self.every = every
        self.driver = 0
        self.workers = 0
        self.one_worker = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = self._ps.Process()
        self.driver = max(self.driver, me.memory_info().rss)
        tot, one = 0, 0
        for p in self._ps.process_iter(["cmdline", "memory_info"]):
            cmd = " ".join(p.info.get("cmdline") or [])
            if "ray::" in cmd or "default_worker.py" in cmd:
                r = p.info["memory_info"].rss if p.info.get("memory_info") else 0
                tot += r
                one = max(one, r)
        self.workers = max(self.workers, tot)
        self.one_worker = max(self.one_worker, one)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a process ended while read
                self._sample()
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()


def _engine(df: pd.DataFrame, fc: ForecastConfig, ids: list[str]) -> Any:
    from engine.forecast.backtest import run_backtest

    return run_backtest(df, fc, ids, log=lambda m: None)


def _agree(table: pd.DataFrame, ref: pd.DataFrame, fams: list[str], sample: list[str]) -> bool:
    ours = table[table["unique_id"].isin(sample)]
    r = ref.reset_index() if "unique_id" not in ref.columns else ref
    r = r.assign(unique_id=r["unique_id"].astype(str))
    m = ours.merge(r[r["unique_id"].isin(sample)], on=["unique_id", "ds"], suffixes=("", "_r"))
    if len(m) != len(ours) or m.empty:
        return False
    cols = {"naive": "naive", "seasonal_naive": "seasonal_naive"}
    return all(
        np.allclose(m[f].to_numpy(), np.maximum(m[cols[f] + "_r"].to_numpy(), 0), rtol=1e-9)
        for f in fams
    )


def _nodes_of_batches() -> dict[str, int]:
    """Finished backtest tasks per node (Ray's state API), for a run on a cluster."""
    try:
        from ray.util.state import list_tasks

        tasks = list_tasks(
            filters=[("state", "=", "FINISHED")], limit=10_000, raise_on_missing_output=False
        )
    except Exception:
        return {}
    out: dict[str, int] = {}
    for t in tasks:
        if not str(getattr(t, "func_or_class_name", "")).endswith("backtest_batch"):
            continue
        node = str(getattr(t, "node_id", None) or "?")[:12]
        out[node] = out.get(node, 0) + 1
    return out


def main() -> None:
    ap = parser(__doc__ or "")
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--weeks", type=int, default=150)
    ap.add_argument("--no-reference", action="store_true", help="the engine's run alone")
    args = ap.parse_args()
    import ray

    n = 300 if args.smoke else args.series
    t = 80 if args.smoke else args.weeks
    cpus = os.cpu_count() or 1
    t0 = time.perf_counter()
    df = _panel(n, t)
    t_gen = time.perf_counter() - t0
    ids = [str(c) for c in df["unique_id"].cat.categories]
    df["unique_id"] = df["unique_id"].astype(str)  # as the engine's panel holds it
    panel_bytes = int(df.memory_usage(deep=True).sum())
    fc = ForecastConfig.model_validate(
        dict(
            source="x",
            series=["unique_id"],
            time="ds",
            target="y",
            freq="W-MON",
            horizon=8,
            season_length=52,
            families=["naive", "seasonal_naive"],
            ensemble=False,
            backtest={"windows": 3},
            batch_series=100 if args.smoke else 2000,
        )
    )
    address = os.environ.get("RAY_ADDRESS")
    ray_tmp = tempfile.mkdtemp(prefix="insray-b-")  # a private session folder, removed after
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, _temp_dir=ray_tmp)
    cluster_cpus = int(ray.cluster_resources().get("CPU", cpus))
    small = df[df["unique_id"].isin(ids[:300])]
    try:
        # warm-up on 300 series, untimed, for both sides (imports, Numba, worker start-up);
        # the full run is timed once: at 100,000 series one run is minutes
        _engine(small, fc, ids[:300])
        if not args.no_reference:
            _statsforecast(small, fc, cpus)
        before = _nodes_of_batches() if address else {}
        with PeakMemory() as mem:
            ours = measure(partial(_engine, df, fc, ids), repeat=1, warmup=0)
        nodes: dict[str, int] = {}
        deadline = time.monotonic() + 20  # task events reach the state API within seconds
        while address and time.monotonic() < deadline:
            after = _nodes_of_batches()
            nodes = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
            if sum(nodes.values()) >= -(-n // fc.batch_series):
                break
            time.sleep(1)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    bt = ours.result
    print(
        f"engine: {n:,} series x {t} weeks in {ours.median:.1f} s ({bt.seconds}); peak RSS "
        f"driver {mem.driver / 1e9:.2f} GB, Ray workers {mem.workers / 1e9:.2f} GB (largest "
        f"{mem.one_worker / 1e9:.2f} GB); panel {panel_bytes / 1e9:.2f} GB"
    )
    if args.no_reference:
        ref = ours
        equal = True
    else:
        ref = measure(partial(_statsforecast, df, fc, cpus), repeat=1, warmup=0)  # warmed above
        rng = np.random.default_rng(1)
        sample = [ids[i] for i in rng.choice(len(ids), size=min(200, len(ids)), replace=False)]
        equal = _agree(bt.table, ref.result, fc.families, sample)
    extra: dict[str, Any] = {
        "series": n,
        "weeks": t,
        "cpus": cpus,
        "cluster_cpus": cluster_cpus,
        "generate_s": t_gen,
        "engine_phases_s": bt.seconds,
        "engine_series_per_s": n / ours.median,
        "engine_s_per_1000_series": 1000 * ours.median / n,
        "reference_series_per_s": n / ref.median,
        "panel_bytes": panel_bytes,
        "panel_bytes_per_series": panel_bytes / n,
        "peak_rss_driver_bytes": mem.driver,
        "peak_rss_ray_workers_bytes": mem.workers,
        "peak_rss_largest_worker_bytes": mem.one_worker,
        "batches": -(-n // fc.batch_series),
        "batches_per_node": nodes,
        "reference_run": not args.no_reference,
    }
    cases = [
        case(
            f"backtest {n:,} series x {t} weeks, 3 windows, naive + seasonal naive "
            f"(Ray tasks, {fc.batch_series} series each)",
            ours,
            f"statsforecast cross_validation n_jobs={cpus}"
            + (" (not run: --no-reference)" if args.no_reference else ""),
            ref,
            equal,
            **extra,
        )
    ]
    write("forecast_scale", args.smoke, cases, args.out)


if __name__ == "__main__":
    main()
