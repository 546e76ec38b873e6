"""Batch scoring (engine.stages.score: Ray Data tasks, model cached per worker, Parquet in and
out, atomic rename, an audit record) against the plain way: one process reads the same
Parquet with pandas, calls ``Booster.predict`` and writes Parquet.

Then the scaling from one CPU to two (a local Ray of 1 CPU, then of 2). The scaling from one
node to two is measured by the multi-node tests' cluster only as correctness, not speed: on
this 2-core machine a second node adds no core (``ray.cluster_utils.Cluster`` also writes
the machine-wide /tmp/ray/ray_current_cluster, which other Ray users here would read). The
ceiling is 2x, and the read, the write and the driver share the same two cores.

Full: 1,000,000 rows x 20 features in 8 Parquet files, XGBoost 200 trees of depth 6.
``--smoke``: 20,000 rows, 20 trees (no 2-CPU run).

The local engine (the same stage in one process, batch by batch) is measured beside both.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._harness import case, measure, parser, write

NUM = [f"x{i}" for i in range(20)]


def _data(n: int, files: int, folder: Path) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    df = pd.DataFrame(rng.normal(size=(n, len(NUM))), columns=NUM)
    df.insert(0, "customer_id", np.arange(n).astype(str))
    folder.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(n), files)):
        df.iloc[part].to_parquet(folder / f"part-{i:03d}.parquet", index=False)
    return df


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    n, trees, files = (20_000, 20, 2) if args.smoke else (1_000_000, 200, 8)
    import mlflow
    import ray
    import xgboost as xgb

    from engine.config.project import DEFAULT_PROJECT, ProjectConfig
    from engine.raycluster import ray_env
    from engine.registry.models import register_model
    from engine.stages.score import stage_score
    from engine.tracking import setup_mlflow
    from engine.train.families.xgboost import XGBScorer
    from engine.train.schema import InputSchema
    from engine.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench-score-"))
    cases: list[dict[str, Any]] = []
    try:
        src = tmp / "table"
        df = _data(n, files, src)
        rng = np.random.default_rng(6)
        y = (df["x0"] + 0.5 * df["x1"] ** 2 + rng.normal(size=n) > 0.8).astype(float)
        fit = min(n, 100_000)
        booster = xgb.train(
            {"max_depth": 6, "eta": 0.1, "objective": "binary:logistic", "nthread": 2},
            xgb.DMatrix(df[NUM].iloc[:fit], label=y.iloc[:fit]),
            num_boost_round=trees,
        )
        cfg = ProjectConfig.load(DEFAULT_PROJECT)
        ws = Workspace(tmp / ".insight").ensure()
        exp = setup_mlflow(ws, cfg.name)
        scorer = XGBScorer(booster, InputSchema.numeric(NUM))
        with mlflow.start_run(experiment_id=exp):
            register_model(
                model_name=cfg.train.model_name,
                scorer=scorer,
                x_example=df[NUM].head(5),
                tags={},
                alias="champion",
            )
        ray_env()
        cluster = os.environ.get("RAY_ADDRESS")  # inside a Ray job: score on that cluster

        def start(cpus: int) -> None:
            if ray.is_initialized():
                ray.shutdown()
            if cluster:
                ray.init(address=cluster, log_to_driver=False)
                return
            ray.init(
                num_cpus=cpus,
                include_dashboard=False,
                object_store_memory=300 * 1024 * 1024,
                _temp_dir=str(ws.ray_temp_dir()),
                _node_ip_address="127.0.0.1",
                log_to_driver=False,
            )

        start(1)

        def engine_run() -> Any:
            out = tmp / "scores"
            return stage_score(
                cfg, ws, input_path=src, output=out, overwrite=True, log=lambda *_: None
            )

        def engine_local() -> Any:
            out = tmp / "scores-local"
            return stage_score(
                cfg,
                ws,
                input_path=src,
                output=out,
                overwrite=True,
                engine="local",
                log=lambda *_: None,
            )

        def reference() -> np.ndarray:
            t = pd.read_parquet(src)
            p = booster.predict(xgb.DMatrix(t[NUM]))
            t[["customer_id"]].assign(score=p, decision=p >= 0.5).to_parquet(tmp / "ref.parquet")
            return np.asarray(p)

        reps = {"repeat": 1, "warmup": 0} if args.smoke else {"repeat": 3, "warmup": 1}
        ref = measure(reference, **reps)
        one = measure(engine_run, **reps)
        got = pd.read_parquet(tmp / "scores").set_index("customer_id")["score"]
        want = pd.Series(ref.result, index=df["customer_id"])
        equal = bool(np.allclose(got.loc[want.index].to_numpy(), want.to_numpy(), atol=1e-6))
        where = "Ray on 1 CPU"
        if cluster:
            alive = [x for x in ray.nodes() if x.get("Alive")]
            cpus = sum(x["Resources"].get("CPU", 0) for x in alive)
            where = f"the Ray cluster ({len(alive)} nodes, {cpus:g} CPUs)"
        cases.append(
            case(
                f"score {n:,} rows x {len(NUM)} features, Parquet in and out, {where}",
                one,
                "one process: pandas read + Booster.predict (2 threads) + write",
                ref,
                equal,
                rows_per_s=n / one.median,
                reference_rows_per_s=n / ref.median,
            )
        )
        # the local engine (`insight score --engine local`, and `auto` for a small table on
        # one machine): the same stage in this process, batch by batch
        loc = measure(engine_local, **reps)
        got_l = pd.read_parquet(tmp / "scores-local").set_index("customer_id")["score"]
        cases.append(
            case(
                f"score {n:,} rows x {len(NUM)} features, Parquet in and out, in one process "
                "(--engine local)",
                loc,
                "one process: pandas read + Booster.predict (2 threads) + write",
                ref,
                bool(np.allclose(got_l.loc[want.index].to_numpy(), want.to_numpy(), atol=1e-6)),
                rows_per_s=n / loc.median,
                reference_rows_per_s=n / ref.median,
            )
        )
        # on a cluster, it is what it is: no 1-vs-2-CPU local comparison; the smoke size
        # skips it too (a second local Ray start, for a ratio 20,000 rows cannot show)
        if not cluster and not args.smoke:
            start(2)
            two = measure(engine_run, **reps)
            cases.append(
                case(
                    f"score {n:,} rows: Ray on 2 CPUs vs 1 CPU",
                    two,
                    "Ray on 1 CPU",
                    one,
                    equal,
                    rows_per_s=n / two.median,
                    ceiling="2x; the driver, read and write share this machine's 2 cores",
                )
            )
    finally:
        if ray.is_initialized():
            ray.shutdown()
        time.sleep(0.5)
        shutil.rmtree(ws.ray_temp_dir(), ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    write("bench_score", args.smoke, cases, args.out)


if __name__ == "__main__":
    main()
