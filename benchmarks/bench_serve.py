"""The serving path on 127.0.0.1, against bare echo servers measured in the same run.

One local Ray cluster (2 CPUs); one replica of everything (0.25 CPU each), so the cases
compare per-request cost, not replica counts. The load client runs in this process on the
same 2 cores (asyncio + httpx, fixed concurrency, fixed duration), which caps every case alike.

Cases (throughput = answered requests per second, latency p50/p99 in ms):

- bare FastAPI/uvicorn echo (its own process) and a bare Ray Serve echo deployment (FastAPI
  ingress, same route shape): the ceilings;
- our ``/predict``, one row per request, ``@serve.batch`` on and off (the model: XGBoost,
  200 trees of depth 6 over 20 features, registered in MLflow and loaded by alias; the audit
  log is written for every request);
- our ``/predict`` with 100 rows per request: rows/s against the 1-row case;
- concurrency above one replica's capacity (4x max_ongoing_requests): no collapse;
- ``/explain`` (SHAP), one row, sequential: latency.

``ratio`` = our throughput / the reference's (above 1: we are faster). Smoke: tiny model,
1-second runs.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import parser, write

ECHO_APP = """
from fastapi import FastAPI, Request
app = FastAPI()
@app.post("/predict")
async def predict(request: Request):
    return await request.json()
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _load(url: str, body: dict[str, Any], concurrency: int, seconds: float) -> dict[str, Any]:
    import httpx

    lat: list[float] = []
    errors = 0
    t_end = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, json=body)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    a = np.array(lat) * 1000 if lat else np.array([np.nan])
    return {
        "rps": len(lat) / wall,
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "ok": len(lat),
        "errors": errors,
    }


WINDOWS = 3  # timed windows per measurement (1 at the smoke size: the suite checks it runs)


def load(
    url: str, body: dict[str, Any], concurrency: int, seconds: float, windows: int | None = None
) -> dict[str, Any]:
    """Warm up (connections, replicas), then ``windows`` timed windows of ``seconds`` each:
    requests/s is the median window's, with the min and max kept."""
    windows = windows or WINDOWS
    asyncio.run(_load(url, body, concurrency, 0.3))
    runs = [asyncio.run(_load(url, body, concurrency, seconds)) for _ in range(windows)]
    rps = sorted(r["rps"] for r in runs)
    out = dict(runs[[r["rps"] for r in runs].index(rps[len(rps) // 2])])
    out.update(
        rps_min=rps[0],
        rps_max=rps[-1],
        windows=windows,
        ok=sum(r["ok"] for r in runs),
        errors=sum(r["errors"] for r in runs),
    )
    return out


def _model(tmp: Path, smoke: bool) -> tuple[str, list[str], np.ndarray]:
    """Train and register an XGBoost model in a fresh MLflow (sqlite) registry."""
    import mlflow
    import pandas as pd
    import xgboost as xgb

    from engine.registry.models import register_model
    from engine.tracking import setup_mlflow
    from engine.train.families.xgboost import XGBScorer
    from engine.train.schema import InputSchema
    from engine.workspace import Workspace

    ws = Workspace(tmp / ".insight").ensure()
    exp = setup_mlflow(ws, "bench-serve")
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(20)]
    x = rng.normal(size=(20_000, 20))
    y = (x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + rng.normal(size=len(x)) > 0).astype(int)
    trees = 10 if smoke else 200
    b = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "nthread": 2},
        xgb.DMatrix(x, label=y, feature_names=names),
        trees,
    )
    with mlflow.start_run(experiment_id=exp):
        register_model(
            model_name="bench",
            scorer=XGBScorer(b, InputSchema.numeric(names)),
            x_example=pd.DataFrame(x[:20], columns=names),
            tags={},
            alias="champion",
        )
    return ws.tracking_uri, names, x


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    smoke = args.smoke
    global WINDOWS
    WINDOWS = 1 if smoke else 3
    seconds = 0.5 if smoke else 3.0  # per timed window; three windows per measurement
    conc = 8 if smoke else 16
    from engine.config.project import ServeConfig

    max_ongoing = ServeConfig().max_ongoing_requests
    from ray import serve

    from benchmarks._serve_echo import build_echo
    from engine.raycluster import start_ray, stop_ray
    from engine.workspace import Workspace
    from serve.app import build_app

    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    tracking, names, x = _model(tmp, smoke)
    ws = Workspace(tmp / ".insight")
    echo_port = _port()
    echo_file = tmp / "echo_app.py"
    echo_file.write_text(ECHO_APP)
    uv = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "echo_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(echo_port),
            "--log-level",
            "warning",
        ],
        cwd=tmp,
    )
    start_ray(ws, num_cpus=2)
    port = _port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base = f"http://127.0.0.1:{port}"
    results: dict[str, dict[str, Any]] = {}
    try:
        one = {"rows": [dict(zip(names, map(float, x[0]), strict=True))]}
        hundred = {"rows": [dict(zip(names, map(float, r), strict=True)) for r in x[:100]]}
        serve.run(build_echo(max_ongoing), name="echo", route_prefix="/echo", blocking=False)
        common = {
            "tracking_uri": tracking,
            "model": "bench",
            "challenger_alias": "",
            "workspace": str(ws.root),
            "max_ongoing_requests": max_ongoing,
            "num_cpus": 0.25,
            "autoscaling": {"min_replicas": 1, "max_replicas": 1},  # one replica each
        }

        def deploy(name: str, batching: bool, **over: Any) -> str:
            serve.run(
                build_app(
                    {
                        **common,
                        **over,
                        "app": name,
                        "batching": batching,
                        "audit_dir": str(ws.audit / name),
                        "rollout_path": str(ws.root / "serve" / f"rollout-{name}.json"),
                    }
                ),
                name=name,
                route_prefix=f"/{name}",
                blocking=False,
            )
            return f"{base}/{name}"

        on = deploy("batch-on", True)
        off = deploy("batch-off", False)
        # the smoke size leaves out the undersized-queue app (a fourth deployment: ~20 s of
        # the suite); the full run measures it
        small = None if smoke else deploy("small-queue", True, max_ongoing_requests=conc // 2)
        _wait(f"{base}/echo/predict", one)
        _wait(f"{on}/predict", one)
        _wait(f"{off}/predict", one)
        if small is not None:
            _wait(f"{small}/predict", one)
        # Uvicorn started long ago; wait anyway.
        _wait(f"http://127.0.0.1:{echo_port}/predict", one)

        results["uvicorn_echo"] = load(f"http://127.0.0.1:{echo_port}/predict", one, conc, seconds)
        results["serve_echo"] = load(f"{base}/echo/predict", one, conc, seconds)
        results["predict_1_batch_on"] = load(f"{on}/predict", one, conc, seconds)
        results["predict_1_batch_off"] = load(f"{off}/predict", one, conc, seconds)
        results["predict_100_batch_on"] = load(f"{on}/predict", hundred, conc, seconds)
        over = 4 * conc
        results["predict_1_over_capacity"] = load(f"{on}/predict", one, over, seconds)
        results["serve_echo_over_capacity"] = load(f"{base}/echo/predict", one, over, seconds)
        if small is not None:
            results["small_queue_over_capacity"] = load(f"{small}/predict", one, over, seconds)
        results["uvicorn_echo_over_capacity"] = load(
            f"http://127.0.0.1:{echo_port}/predict", one, over, seconds
        )
        import httpx

        lat = []
        with httpx.Client(timeout=60) as c:
            c.post(f"{on}/explain", json=one).raise_for_status()
            for _ in range(20 if smoke else 200):
                t0 = time.perf_counter()
                c.post(f"{on}/explain", json=one).raise_for_status()
                lat.append((time.perf_counter() - t0) * 1000)
            lat_p = []
            for _ in range(20 if smoke else 200):
                t0 = time.perf_counter()
                c.post(f"{on}/predict", json=one).raise_for_status()
                lat_p.append((time.perf_counter() - t0) * 1000)
        for key, values in (("explain_1_sequential", lat), ("predict_1_sequential", lat_p)):
            results[key] = {
                "p50_ms": float(np.median(values)),
                "p99_ms": float(np.percentile(values, 99)),
                "min_ms": float(np.min(values)),
                "max_ms": float(np.max(values)),
                "n": len(values),
            }
        from engine.audit import read_records, verify

        audited = sum(1 for _ in read_records(ws.audit))
        intact = verify(ws.audit).ok
    finally:
        serve.shutdown()
        stop_ray()
        uv.terminate()
        uv.wait(timeout=30)
        shutil.rmtree(ws.ray_temp_dir(), ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    for k, v in results.items():
        print(
            f"{k}: "
            + ", ".join(
                f"{a}={b:.1f}" if isinstance(b, float) else f"{a}={b}" for a, b in v.items()
            )
        )
    r = results
    errors = sum(int(v.get("errors", 0)) for v in r.values())

    def case(
        name: str,
        ours: dict[str, Any],
        ref_name: str,
        ref: dict[str, Any],
        rows: int = 1,
        **extra: Any,
    ) -> dict[str, Any]:
        return {
            "case": name,
            "engine_s": 1 / (ours["rps"] * rows),
            "engine_min_s": 1 / (ours["rps_max"] * rows),
            "engine_median_s": 1 / (ours["rps"] * rows),
            "engine_max_s": 1 / (ours["rps_min"] * rows),
            "engine_runs": ours["windows"],
            "reference": ref_name,
            "reference_s": 1 / ref["rps"],
            "reference_min_s": 1 / ref["rps_max"],
            "reference_median_s": 1 / ref["rps"],
            "reference_max_s": 1 / ref["rps_min"],
            "reference_runs": ref["windows"],
            "ratio": ours["rps"] * rows / ref["rps"],
            "equal": errors == 0 and intact,
            "engine_rps": ours["rps"],
            "engine_p50_ms": ours["p50_ms"],
            "engine_p99_ms": ours["p99_ms"],
            "reference_rps": ref["rps"],
            "reference_p50_ms": ref["p50_ms"],
            "reference_p99_ms": ref["p99_ms"],
            **extra,
        }

    cases = [
        case(
            f"/predict 1 row, @serve.batch on, concurrency {conc}",
            r["predict_1_batch_on"],
            "bare Ray Serve echo",
            r["serve_echo"],
        ),
        case(
            f"/predict 1 row, @serve.batch on, concurrency {conc}",
            r["predict_1_batch_on"],
            "bare FastAPI/uvicorn echo",
            r["uvicorn_echo"],
        ),
        case(
            f"/predict 1 row, @serve.batch off, concurrency {conc}",
            r["predict_1_batch_off"],
            "bare Ray Serve echo",
            r["serve_echo"],
        ),
        case(
            "@serve.batch on vs off, 1 row",
            r["predict_1_batch_on"],
            "@serve.batch off",
            r["predict_1_batch_off"],
        ),
        case(
            f"/predict 100 rows per request: rows/s, concurrency {conc}",
            r["predict_100_batch_on"],
            "/predict 1 row per request: rows/s",
            r["predict_1_batch_on"],
            rows=100,
        ),
        case(
            f"/predict 1 row at concurrency {4 * conc} vs {conc} (max_ongoing_requests "
            f"{max_ongoing})",
            r["predict_1_over_capacity"],
            f"/predict 1 row at concurrency {conc}",
            r["predict_1_batch_on"],
        ),
        *(
            [
                case(
                    f"same, max_ongoing_requests {conc // 2} (undersized) at concurrency "
                    f"{4 * conc}",
                    r["small_queue_over_capacity"],
                    f"/predict 1 row at concurrency {conc}",
                    r["predict_1_batch_on"],
                )
            ]
            if "small_queue_over_capacity" in r
            else []
        ),
        {
            "case": "/explain (SHAP) 1 row, sequential p50",
            "engine_s": r["explain_1_sequential"]["p50_ms"] / 1000,
            **{
                f"{side}_{k}_s": r[key][f"{m}_ms"] / 1000
                for side, key in (
                    ("engine", "explain_1_sequential"),
                    ("reference", "predict_1_sequential"),
                )
                for k, m in (("min", "min"), ("median", "p50"), ("max", "max"))
            },
            "engine_runs": r["explain_1_sequential"]["n"],
            "reference_runs": r["predict_1_sequential"]["n"],
            "reference": "/predict 1 row, sequential p50",
            "reference_s": r["predict_1_sequential"]["p50_ms"] / 1000,
            "ratio": r["predict_1_sequential"]["p50_ms"] / r["explain_1_sequential"]["p50_ms"],
            "equal": errors == 0 and intact,
            "explain_p99_ms": r["explain_1_sequential"]["p99_ms"],
            "predict_p99_ms": r["predict_1_sequential"]["p99_ms"],
        },
    ]
    cases[0]["audit_records"] = audited
    cases[0]["audit_intact"] = intact
    cases[0]["errors"] = errors
    cases[0]["raw"] = r
    write("bench_serve", smoke, cases, args.out)


def _wait(url: str, body: dict[str, Any], timeout_s: float = 180) -> None:
    import httpx

    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        try:
            if httpx.post(url, json=body, timeout=10).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in {timeout_s} s")


if __name__ == "__main__":
    main()
