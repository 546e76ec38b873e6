"""Stage: demand forecasting. ``stage_forecast_train`` checks the series table into a
content-addressed panel snapshot, backtests every candidate over rolling origins in Ray
tasks, chooses per series and calibrates the intervals (engine.forecast.backtest), and
tracks and registers the result in MLflow with its card; ``stage_forecast`` writes every
series' forecast from the end of its history to Parquet (temp path, then rename)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.config.forecast import ForecastProject
from engine.errors import ConfigError, DataError
from engine.features.snapshot import Snapshot, commit, snapshot_root, temp_dir
from engine.forecast.card import build_card, card_markdown, global_card
from engine.forecast.monitor import CARD
from engine.forecast.panel import Panel, load_panel
from engine.workspace import Workspace

PANEL_FORMAT = 1


@dataclass
class ForecastTrainResult:
    model_name: str
    version: str
    alias: str
    run_id: str
    snapshot_id: str
    card: dict[str, Any]
    seconds: dict[str, float]


def panel_snapshot(proj: ForecastProject, ws: Workspace, panel: Panel) -> Snapshot:
    """The checked panel as an immutable snapshot; its id hashes the forecast block and
    the source's bytes, so the same inputs find the same folder and write nothing."""
    from engine.data.sources import fingerprint, source_path
    from engine.ingest.ledger import ingested

    fc = proj.forecast
    src_fp = fingerprint(source_path(proj, fc.source, ws.root))
    spec = {
        "format": PANEL_FORMAT,
        "source": proj.sources[fc.source].model_dump(mode="json"),
        "forecast": {k: v for k, v in fc.model_dump(mode="json").items()},
        "source_fingerprint": src_fp,
    }
    sid = "fc-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    final = snapshot_root(ws, proj.name) / sid
    if (final / "manifest.json").is_file():
        return Snapshot(final, json.loads((final / "manifest.json").read_text()))
    tmp = temp_dir(ws, proj.name, sid)
    (tmp / "data").mkdir(parents=True)
    panel.frame.to_parquet(tmp / "data" / "panel.parquet", index=False)
    panel.profile.to_parquet(tmp / "profile.parquet", index=False)
    manifest = {
        "snapshot_id": sid,
        "kind": "forecast-panel",
        "format": PANEL_FORMAT,
        "series": panel.series,
        "rows": len(panel.frame),
        "freq": panel.freq,
        "time_range": [str(panel.frame["ds"].min()), str(panel.frame["ds"].max())],
        "keys": panel.keys,
        "known": panel.known,
        "static": panel.static,
        "notes": panel.notes,
        "ingest": ingested(ws, proj, fc.source),
        **spec,
    }
    return commit(tmp, manifest)


def read_panel(s: Snapshot) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(s.data / "panel.parquet"), pd.read_parquet(s.path / "profile.parquet")


def stage_forecast_train(
    proj: ForecastProject,
    ws: Workspace,
    *,
    use_ray: bool = True,
    log: Callable[[str], None] = print,
) -> ForecastTrainResult:
    import mlflow

    from engine.forecast.backtest import run_backtest, series_scale
    from engine.forecast.predictor import Forecaster, ForecastPyfunc
    from engine.registry.models import try_resolve
    from engine.stages.target import pins
    from engine.tracking import code_version, setup_mlflow

    fc = proj.forecast
    t0 = time.perf_counter()
    panel = load_panel(proj, ws.root)
    snap = panel_snapshot(proj, ws, panel)
    prof = panel.profile
    log(
        f"panel {snap.id}: {panel.series:,} series, {len(panel.frame):,} periods, {fc.freq}; "
        + ", ".join(f"{k} {v}" for k, v in prof["kind"].value_counts().items())
    )
    ok = prof.loc[prof["backtestable"], "unique_id"].tolist()
    short = prof.loc[~prof["backtestable"], "unique_id"].tolist()
    if use_ray:
        from engine.raycluster import start_ray

        start_ray(ws)
    g_in, fsnap_id = _global_inputs(proj, ws, panel, snap, ok, log)
    t_panel = time.perf_counter()
    groups = prof.set_index("unique_id")["kind"]
    bt = run_backtest(
        panel.frame, fc, ok, log=log, use_ray=use_ray, groups=groups, global_inputs=g_in
    )
    t_bt = time.perf_counter()
    gmodel = None
    if g_in is not None and bt.global_search is not None:
        from engine.forecast import global_model as gm

        gmodel = gm.fit(*g_in, bt.global_search.best, fc.freq, fc.global_model.seed)
    chosen = {str(k): str(v) for k, v in bt.final.chosen.items()}
    common = str(bt.final.chosen.value_counts().idxmax())
    for u in short:
        chosen[u] = common  # forecast by the fallback whatever the name: counted in the card
    lens = panel.frame.groupby("unique_id", sort=False).size()
    scale = {str(k): float(v) for k, v in series_scale(panel.frame, lens, fc.season_length).items()}
    from engine.forecast.inventory import cumulative_errors, error_grid

    assert bt.final.picks is not None
    grid = error_grid(cumulative_errors(bt.table, bt.final.picks, bt.candidates, fc.horizon))
    fcr = Forecaster(fc, chosen, scale, bt.final.quantiles, snap.id, grid)
    if gmodel is not None and g_in is not None:
        fcr.global_spec = g_in[2].to_dict()
        fcr.static_values = _static_values(panel.frame, fc.static)
        fcr.global_model = gmodel
    card = build_card(proj, panel, bt, snap.id, short)
    if fc.hierarchy:
        card["hierarchy"] = _hierarchy(panel, fc, ok, bt, log)
        fcr.hierarchy = {k: card["hierarchy"][k] for k in ("upper_chosen", "weights", "method")}
    if gmodel is not None and g_in is not None:
        card["global_model"] = global_card(bt, g_in[2], gmodel, fsnap_id)
    # the project's experiment, whose artifacts live in the workspace (a bare start_run
    # used the Default experiment, whose artifact root is ./mlruns of the working directory)
    exp_id = setup_mlflow(ws, proj.name)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"forecast-{snap.id}") as run:
        mlflow.set_tags({"task": "forecast", "snapshot_id": snap.id, "code": code_version()})
        mlflow.log_params(
            {
                "horizon": fc.horizon,
                "freq": fc.freq,
                "season_length": fc.season_length,
                "windows": fc.backtest.windows,
                "step": fc.step,
                "families": ",".join(fc.families),
                "known": ",".join(fc.known),
                "choice_margin": bt.final.margin,
            }
        )
        h = card["holdout"]
        mlflow.log_metrics(
            {
                "holdout_mase": h["mase"],
                "holdout_wape": h["wape"],
                "holdout_smape": h["smape"],
                "holdout_bias": h["bias"],
                "improvement_vs_best_single": h["improvement_vs_best_single"],
                **{f"coverage_{lv}": c for lv, c in h["coverage"].items()},
                **{f"mase_{k.replace('+', '_x')}": v for k, v in h["mase_by_candidate"].items()},
            }
        )
        with tempfile.TemporaryDirectory() as d:
            p = Path(d)
            bt.per_series.to_parquet(p / "per_series.parquet", index=False)
            bt.table.to_parquet(p / "backtest.parquet", index=False)
            (p / CARD).write_text(json.dumps(card, indent=1, default=str))
            (p / "forecast_card.md").write_text(card_markdown(card))
            (p / "forecaster.json").write_text(fcr.to_json())
            artifacts = {"forecaster": str(p / "forecaster.json")}
            if gmodel is not None:
                from engine.forecast.global_model import dumps
                from engine.forecast.predictor import GLOBAL_ARTIFACT

                (p / GLOBAL_ARTIFACT).write_bytes(dumps(gmodel))
                artifacts["global_model"] = str(p / GLOBAL_ARTIFACT)
                assert bt.global_search is not None
                pd.DataFrame([{**c, "mase": m} for c, m in bt.global_search.scores]).to_parquet(
                    p / "global_search.parquet", index=False
                )
                mlflow.log_params(
                    {f"global_{k}": v for k, v in bt.global_search.best.items()}
                    | {"global_features_snapshot": fsnap_id}
                )
            mlflow.log_artifacts(d)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=ForecastPyfunc(),
                artifacts=artifacts,
                registered_model_name=fc.model_name,
                # named, not inferred: inference runs the model in a subprocess (~7 s)
                pip_requirements=pins(
                    "mlflow", "statsforecast", "mlforecast", "lightgbm", "pandas", "numpy"
                ),
            )
    version = str(info.registered_model_version)
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    tags = {
        "task": "forecast",
        "family": "forecast",
        "features": json.dumps(fc.known),
        "snapshot_id": snap.id,
        "holdout_mase": f"{card['holdout']['mase']:.6f}",
    }
    for k, v in tags.items():
        client.set_model_version_tag(fc.model_name, version, k, v)
    champ = try_resolve(fc.model_name, "champion")
    better = champ is None or float(champ.tags.get("holdout_mase", "inf")) > card["holdout"]["mase"]
    alias = "champion" if better else "challenger"
    client.set_registered_model_alias(fc.model_name, alias, version)
    secs = {
        "panel": t_panel - t0,
        "backtest": t_bt - t_panel,
        "register": time.perf_counter() - t_bt,
    }
    log(
        f"registered {fc.model_name} v{version} as @{alias}: held-out MASE {h['mase']:.3f} "
        f"(best single {h['best_single']} {h['mase_by_candidate'][h['best_single']]:.3f}); "
        "coverage " + ", ".join(f"{lv}% {c:.1%}" for lv, c in h["coverage"].items())
    )
    return ForecastTrainResult(fc.model_name, version, alias, run.info.run_id, snap.id, card, secs)


def _global_inputs(
    proj: ForecastProject,
    ws: Workspace,
    panel: Panel,
    snap: Snapshot,
    ok: list[str],
    log: Callable[[str], None],
) -> tuple[tuple[pd.DataFrame, pd.DataFrame, Any] | None, str]:
    """The global model's training rows: the panel's point-in-time features, built on
    Spark into their own snapshot (engine.forecast.features); None when it is off."""
    fc = proj.forecast
    if not fc.global_model.enabled or not ok:
        return None, ""
    from engine.features.spark import master_session
    from engine.forecast.features import (
        FeatureSpec,
        features_snapshot,
        model_input,
        read_features,
    )

    spec = FeatureSpec.of(fc, panel.frame)
    fsnap = features_snapshot(
        lambda: master_session(proj.spark_master, ws), ws, proj.name, snap, spec
    )
    feats = read_features(fsnap)
    log(
        f"features {fsnap.id}: {len(feats):,} rows x {len(spec.columns)} point-in-time "
        f"features on Spark ({', '.join(spec.columns)})"
    )
    return (feats, model_input(panel.frame, spec), spec), fsnap.id


def _hierarchy(
    panel: Panel, fc: Any, ok: list[str], bt: Any, log: Callable[[str], None]
) -> dict[str, Any]:
    """Backtest the upper levels' series with the local families, reconcile every
    window's forecasts (MinTrace) and measure each level before and after."""
    from engine.forecast import hierarchy as hy
    from engine.forecast.backtest import backtest_batch, choose
    from engine.forecast.models import candidates

    st = hy.structure(panel.frame, fc, ok)
    up = hy.upper_frame(panel.frame, st)
    fc_up = fc.model_copy(
        update={
            "known": [],
            "static": [],
            "hierarchy": [],
            "global_model": fc.global_model.model_copy(update={"enabled": False}),
        }
    )
    up_bt = backtest_batch(up, fc_up.model_dump(mode="json"))
    cands = candidates(fc.families, [], fc.ensemble)
    ch = choose(up_bt, cands, list(range(fc.backtest.windows)), fc.levels, fc.choice_margin)
    assert ch.picks is not None and bt.final.picks is not None
    bottom_rows = hy.picked(bt.table, bt.final.picks, bt.candidates)
    upper_rows = hy.picked(up_bt, ch.picks, cands)
    res, _ = hy.evaluate_levels(bottom_rows, upper_rows, st)
    res["upper_chosen"] = {str(k): str(v) for k, v in ch.chosen.items()}
    res["weights"] = hy.error_weights(bottom_rows, upper_rows)
    log(
        "hierarchy ("
        + res["method"]
        + "): MASE per level, base -> reconciled: "
        + "; ".join(
            f"{lv} ({d['series']}) {d['mase_base']:.3f} -> {d['mase_reconciled']:.3f}"
            for lv, d in res["levels"].items()
        )
    )
    return res


def _static_values(frame: pd.DataFrame, static: list[str]) -> dict[str, dict[str, Any]]:
    if not static:
        return {}
    first = frame.groupby("unique_id", sort=False)[static].first()
    out: dict[str, dict[str, Any]] = json.loads(first.to_json(orient="index"))
    return out


def load_forecaster(ws: Workspace, name: str, which: str = "champion") -> tuple[Any, Any]:
    """The registered forecaster (and its model version) by alias or version."""

    from engine.forecast.predictor import Forecaster
    from engine.registry.models import find
    from engine.tracking import use_workspace

    use_workspace(ws)
    ref = find(name, which)
    if ref.tags.get("task") != "forecast":
        raise ConfigError(
            f"model '{name}' v{ref.version} is not a forecaster (task "
            f"{ref.tags.get('task', 'churn')}). Fix: forecast.model_name names the "
            "forecasting model."
        )
    return Forecaster.load_run(ref.run_id), ref


def _forecast_batch(
    hist: pd.DataFrame, fut: pd.DataFrame | None, text: str, gbytes: bytes | None
) -> pd.DataFrame:
    from engine.forecast.global_model import loads
    from engine.forecast.predictor import Forecaster

    f = Forecaster.from_json(text)
    if gbytes is not None:
        f.global_model = loads(gbytes)
    return f.forecast(hist, fut)


# Up to this many series, a batch forecast with no Ray cluster named runs in this process:
# it fits each series' chosen model once (no backtest), up to ~65 ms a series (AutoETS,
# season 52, measured), and starting a local Ray cluster costs ~10 s: about break-even
# here on 2 CPUs.
LOCAL_MAX_SERIES = 300


def stage_forecast(
    proj: ForecastProject,
    ws: Workspace,
    *,
    output: Path,
    future: Path | None = None,
    model: str = "champion",
    overwrite: bool = False,
    use_ray: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every series' forecast from the end of its history, with intervals, to Parquet.
    ``future``: a table of the known columns' planned values (series keys, time, known)."""
    fc = proj.forecast
    output = output.resolve()
    if output.exists() and not overwrite:
        raise ConfigError(
            f"forecast: output '{output}' already exists. Fix: a new path, or --overwrite."
        )
    fcr, ref = load_forecaster(ws, fc.model_name, model)
    panel = load_panel(proj, ws.root)
    hist = panel.frame.assign(y=panel.frame["y"].where(panel.frame["observed"]))
    rename = proj.sources[fc.source].rename
    fut = _read_future(future, fc, rename) if future is not None else None
    ids = list(dict.fromkeys(hist["unique_id"].tolist()))
    fcr.check_future(ids, hist.groupby("unique_id", sort=False)["ds"].max(), fut)
    t0 = time.perf_counter()
    text = fcr.to_json()
    gbytes = None
    if fcr.global_model is not None:
        from engine.forecast.global_model import dumps

        gbytes = dumps(fcr.global_model)
    size = fc.batch_series
    batches = [ids[i : i + size] for i in range(0, len(ids), size)]
    groups = dict(tuple(hist.groupby("unique_id", sort=False)))
    parts = []
    from engine.raycluster import ray_wanted, start_ray

    if use_ray and len(batches) > 1 and (ray_wanted(ws) or len(ids) > LOCAL_MAX_SERIES):
        import ray

        start_ray(ws)
        task = ray.remote(num_cpus=1, max_retries=2)(_forecast_batch)
        gref = ray.put(gbytes)
        refs = [
            task.remote(
                ray.put(pd.concat([groups[u] for u in b], ignore_index=True)),
                None if fut is None else fut[fut["unique_id"].isin(b)],
                text,
                gref,
            )
            for b in batches
        ]
        parts = ray.get(refs)
    else:
        parts = [
            _forecast_batch(
                pd.concat([groups[u] for u in b], ignore_index=True),
                None if fut is None else fut[fut["unique_id"].isin(b)],
                text,
                gbytes,
            )
            for b in batches
        ]
    out = pd.concat(parts, ignore_index=True)
    if fc.hierarchy and fcr.hierarchy:
        from engine.forecast.hierarchy import forecast_levels

        out = forecast_levels(
            panel.frame, out, fc, fcr.hierarchy["upper_chosen"], fcr.hierarchy["weights"]
        )
        log(
            f"reconciled {out['level'].nunique()} levels ({fcr.hierarchy['method']}): "
            + ", ".join(
                f"{lv} {n}"
                for lv, n in out.groupby("level", sort=False)["unique_id"].nunique().items()
            )
        )
    keys = hist.groupby("unique_id", sort=False)[fc.series].first()
    out = keys.reset_index().merge(out, on="unique_id", how="right")
    out.insert(0, "model_version", ref.version)
    out.insert(1, "snapshot_id", fcr.snapshot_id)
    tmp = output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:8]}"
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        out.to_parquet(tmp, index=False)
        if output.is_dir():
            shutil.rmtree(output)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
    secs = time.perf_counter() - t0
    log(
        f"forecast {len(ids):,} series x {fc.horizon} periods with {fc.model_name} "
        f"v{ref.version} in {secs:.1f} s -> {output}"
    )
    result: dict[str, Any] = {
        "version": ref.version,
        "series": len(ids),
        "rows": len(out),
        "output": str(output),
        "seconds": secs,
    }
    own = out[out["unique_id"].isin(ids)] if "level" in out.columns else out
    if proj.inventory is not None and fcr.cum_errors:
        result["inventory"] = _inventory(proj, fcr, own, output, log)
    from engine.forecast.monitor import record_batch

    inv = result.get("inventory")
    kept = record_batch(
        ws,
        own,
        model=fc.model_name,
        version=ref.version,
        snapshot_id=fcr.snapshot_id,
        levels=fc.levels,
        inventory=None
        if inv is None or proj.inventory is None
        else {
            **{
                k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in inv.items()
                if k != "path"
            },
            **proj.inventory.model_dump(),
            "target_service_level": proj.inventory.target,
        },
    )
    result["issued"] = str(kept)  # what `insight forecast monitor` scores once actuals arrive
    return result


def _inventory(
    proj: ForecastProject, fcr: Any, out: pd.DataFrame, output: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    """The stock each series needs under business.inventory, beside the forecasts."""
    from engine.forecast import inventory as inv
    from engine.workspace import atomic_write_bytes

    ic = proj.inventory
    assert ic is not None
    pol = inv.Policy(ic.target, ic.lead_time, ic.review_period)
    med = float(np.median(list(fcr.scale.values()))) if fcr.scale else 1.0
    scale = pd.Series({u: fcr.scale.get(u, med) for u in out["unique_id"].unique()})
    plan = inv.plan(out, scale, fcr.cum_errors, pol, proj.forecast.freq)
    path = output.with_name(output.stem + ".inventory.parquet")
    atomic_write_bytes(path, plan.to_parquet(index=False))
    s = inv.summary(plan)
    log(
        f"inventory at a {ic.target:.0%} cycle service level (lead time {ic.lead_time}, review "
        f"every {ic.review_period}): safety stock {s['safety_stock']:,.0f} units, expected fill "
        f"rate {s['fill_rate']:.1%}, inventory turnover {s['inventory_turnover']:.1f} per year "
        f"-> {path}"
    )
    return {**s, "path": str(path)}


def _read_future(path: Path, fc: Any, rename: dict[str, str]) -> pd.DataFrame:
    """The planned known values: columns named as the sales table names them (the
    source's renames apply) or as the project file does."""
    from engine.forecast.predictor import future_frame

    if not path.exists():
        raise DataError(f"forecast: future table '{path}' does not exist.")
    df = pd.read_csv(path) if path.suffix.lower() in (".csv", ".txt") else pd.read_parquet(path)
    return future_frame(df.rename(columns=rename), fc, f"future table '{path.name}'")
