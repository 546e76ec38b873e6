"""Ray Tune overhead and ASHA, measured: the engine's XGBoost trainable through Tune on 2
CPUs vs the same trials run one after another in one process.

- Parallel efficiency = sequential time / (Tune wall time x CPUs used), for trials of about
  10 s and about 30 s (targets: >= 0.8 at 30 s; never slower than sequential at 10 s).
  Ray is started once before timing; actors are reused between trials.
- ASHA vs full budget: the same 8 sampled configurations with ASHA early stopping and
  without; best valid AUC reached and compute spent (boosting rounds and trial seconds).

The trial length is calibrated on this machine first (seconds per boosting round), so the
same script gives ~10 s / ~30 s trials on a slower or faster box. Smoke: ~1 s trials.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._harness import case, measure, parser, write
from engine.train.schema import InputSchema

CPUS = 2


def _data(n: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 20))
    logit = x[:, 0] - 0.8 * x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + 0.3 * np.sin(3 * x[:, 4])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    cols = [f"f{i}" for i in range(20)]
    df = pd.DataFrame(x, columns=cols)
    cut = int(0.8 * n)
    return {
        "x_train": df.iloc[:cut],
        "y_train": y[:cut],
        "x_valid": df.iloc[cut:],
        "y_valid": y[cut:],
        "nthread": 1,
        "seed": 0,
        "schema": InputSchema.numeric(cols),
        "checkpoint_every": 10_000,  # the bench measures scheduling, not checkpoint I/O
    }


def _configs(k: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "max_depth": int(rng.integers(3, 8)),
            "eta": float(np.exp(rng.uniform(np.log(0.02), np.log(0.3)))),
            "subsample": float(rng.uniform(0.6, 1.0)),
            "min_child_weight": int(rng.integers(1, 10)),
        }
        for _ in range(k)
    ]


def _sequential(data: dict[str, Any], configs: list[dict[str, Any]], rounds: int) -> list[float]:
    """The same trials in this process, one after another: plain xgboost.train."""
    import xgboost as xgb

    from engine.train.families.xgboost import params

    names = list(data["x_train"].columns)
    dtr = xgb.DMatrix(data["x_train"], label=data["y_train"], feature_names=names)
    dva = xgb.DMatrix(data["x_valid"], label=data["y_valid"], feature_names=names)
    out = []
    for c in configs:
        res: dict[str, Any] = {}
        xgb.train(
            params(c, 1, 0),
            dtr,
            num_boost_round=rounds,
            evals=[(dva, "valid")],
            evals_result=res,
            verbose_eval=False,
        )
        out.append(float(res["valid"]["auc"][-1]))
    return out


def _tune(
    data: dict[str, Any],
    configs: list[dict[str, Any]],
    rounds: int,
    storage: Path,
    scheduler: Any = None,
) -> Any:
    from ray import tune

    from engine.train.families import dispatch

    d = {**data, "num_boost_round": rounds}
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(dispatch, data=d), {"cpu": 1}),
        param_space={
            "family": "xgboost",
            "xgboost": tune.grid_search(configs),
        },
        tune_config=tune.TuneConfig(
            metric="valid_auc",
            mode="max",
            max_concurrent_trials=CPUS,
            reuse_actors=True,
            scheduler=scheduler,
        ),
        run_config=tune.RunConfig(storage_path=str(storage), verbose=0),
    )
    return tuner.fit()


def _half(args: tuple[int, int, int, int]) -> list[float]:
    n, k, i, rounds = args
    return _sequential(_data(n), _configs(k, seed=1)[i::2], rounds)


def _plain_processes(n: int, k: int, rounds: int) -> float:
    """The hardware ceiling: the same trials split over 2 plain processes, no Ray."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(CPUS, mp_context=mp.get_context("spawn")) as ex:
        t0 = time.perf_counter()
        list(ex.map(_half, [(n, k, i, rounds) for i in range(CPUS)]))
        return time.perf_counter() - t0


def _calibrate(data: dict[str, Any], configs: list[dict[str, Any]]) -> float:
    """Seconds per boosting round for these configs on this machine, single thread, with
    DMatrix construction and warm-up excluded (train 10 rounds, then time 10 and 40)."""
    _sequential(data, configs, 10)
    t0 = time.perf_counter()
    _sequential(data, configs, 10)
    t10 = time.perf_counter() - t0
    t0 = time.perf_counter()
    _sequential(data, configs, 40)
    return max(1e-4, (time.perf_counter() - t0 - t10) / (30 * len(configs)))


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    from engine.raycluster import ray_env

    ray_env()
    n = 20_000 if args.smoke else 200_000
    data = _data(n)
    targets = [1.0] if args.smoke else [10.0, 30.0]
    n_trials = 2 if args.smoke else 4
    storage = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    # Ray's session folder: short (socket paths stay under 107 bytes), removed at the end
    ray_tmp = tempfile.mkdtemp(prefix="insray-b-")
    ray.init(
        num_cpus=CPUS,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=512 * 1024 * 1024,
        _temp_dir=ray_tmp,
    )
    cases = []
    # Each side is repeated; warm-ups: the sequential loop is warmed by the calibration, and
    # Tune by one small search first (driver imports, the first actors), so neither side's
    # timed runs pay one-time costs the other does not.
    repeat = 1 if args.smoke else 2  # smoke: the suite checks that it runs and agrees
    try:
        if not args.smoke:  # smoke: one run of each side, nothing to warm for
            _tune(data, _configs(2, seed=3), 10, storage)
        for target in targets:
            configs = _configs(n_trials, seed=1)
            rounds = max(10, round(target / _calibrate(data, configs)))
            seq = measure(partial(_sequential, data, configs, rounds), repeat, warmup=0)
            tun = measure(partial(_tune, data, configs, rounds, storage), repeat, warmup=0)
            res = tun.result
            tuned = sorted(
                float(res[i].metrics["valid_auc"]) for i in range(len(res)) if res[i].metrics
            )
            plain = measure(partial(_plain_processes, n, n_trials, rounds), 1, warmup=0)
            cases.append(
                case(
                    f"{n_trials} trials of ~{seq.median / n_trials:.0f} s ({rounds} rounds, "
                    f"{n:,} rows), Tune on {CPUS} CPUs",
                    tun,
                    "same trials sequentially in one process",
                    seq,
                    # same configs, same data, same seed: the same final AUCs
                    bool(np.allclose(sorted(seq.result), tuned, atol=1e-9)),
                    parallel_efficiency=seq.median / (tun.median * CPUS),
                    plain_2_process_s=plain.result,
                    hardware_ceiling_efficiency=seq.median / (plain.result * CPUS),
                )
            )
        # ASHA vs the full budget on the same 8 sampled configurations.
        from ray.tune.schedulers import ASHAScheduler

        k = 4 if args.smoke else 8
        configs = _configs(k, seed=2)
        rounds = max(20, round((1.0 if args.smoke else 10.0) / _calibrate(data, configs[:2])))
        full_t = measure(lambda: _tune(data, configs, rounds, storage), repeat, warmup=0)
        asha_t = measure(
            lambda: _tune(
                data,
                configs,
                rounds,
                storage,
                ASHAScheduler(
                    time_attr="round",
                    max_t=rounds,
                    grace_period=max(1, rounds // 9),
                    reduction_factor=3,
                ),
            ),
            repeat,
            warmup=0,
        )
        full, asha = full_t.result, asha_t.result

        def summary(r: Any) -> tuple[float, int]:
            best = max(float(r[i].metrics["valid_auc"]) for i in range(len(r)))
            spent = sum(int(r[i].metrics["round"]) for i in range(len(r)))
            return best, spent

        b_full, s_full = summary(full)
        b_asha, s_asha = summary(asha)
        cases.append(
            case(
                f"ASHA vs full budget, {k} configs x {rounds} rounds",
                asha_t,
                "no early stopping (FIFO)",
                full_t,
                # ASHA may stop the eventual winner early; record the loss, bound it loosely.
                b_asha >= b_full - 0.01,
                best_auc_asha=b_asha,
                best_auc_full=b_full,
                rounds_asha=s_asha,
                rounds_full=s_full,
                compute_fraction=s_asha / s_full,
            )
        )
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    write("bench_tune", args.smoke, cases, args.out)


if __name__ == "__main__":
    main()
