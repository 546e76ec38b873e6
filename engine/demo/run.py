"""The whole loop once, end to end, on the project's sample data: data -> Spark features ->
Ray Tune search -> MLflow registry and gate -> Ray Serve over HTTP (predict, explain,
audit) -> Numba drift check -> the monitoring loop (:mod:`engine.demo.loop`) -> clean
shutdown -> the report. ``insight demo`` and ``jobs/demo.py`` run it; each step is one
function below, calling the stages."""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from engine.config.project import ProjectConfig
from engine.console import console, drift_table, stage
from engine.errors import InsightError
from engine.features.snapshot import Snapshot
from engine.workspace import Workspace

if TYPE_CHECKING:
    from engine.stages.train import TrainResult


def _predict_rows(cfg: ProjectConfig, ws: Workspace, snapshot_id: str, n: int) -> Any:
    from engine.features import snapshot as snap
    from engine.stages.drift import windows

    _, cur = windows(cfg, snap.find(ws, cfg.name, snapshot_id))
    return cur.sample(n=min(n, len(cur)), random_state=0)


def _set_aside_champion(name: str) -> None:
    """The demo replays the whole story each run: a champion left by an earlier run (often
    its retrain, trained on newer labels) is set aside, so this run's model meets the gate
    as the first. Its version stays in the registry; the removal is printed."""
    from mlflow.tracking import MlflowClient

    from engine.registry.models import try_resolve

    old = try_resolve(name, "champion")
    if old is None:
        return
    client = MlflowClient()
    for alias in ("champion", "previous"):
        with contextlib.suppress(Exception):  # not set
            client.delete_registered_model_alias(name, alias)
    client.set_registered_model_tag(name, "champion_history", "[]")
    console.print(
        f"an earlier demo run's champion v{old.version} set aside (aliases cleared, version "
        "kept): this run starts with no champion"
    )


def run_demo(
    cfg: ProjectConfig, ws: Workspace, *, size: str | None = None, address: str | None = None
) -> dict[str, Any]:
    from engine.raycluster import start_ray
    from engine.report import write_report

    t_start = time.monotonic()
    summary: dict[str, Any] = {"workspace": str(ws.root)}
    data = _sample_data(cfg, ws, size, summary)
    ray_dir = ws.ray_temp_dir()
    # One Spark session (one JVM) for every stage that uses Spark: features, the online
    # table, the retrain's snapshot, the demand features; each alone would start and stop
    # its own (engine.features.spark.master_session uses an active session as it is).
    spark = contextlib.ExitStack()
    try:
        from engine.features.spark import spark_session

        spark.enter_context(spark_session(cfg, ws))
        s = _features(cfg, ws, summary)
        with stage("3/9 Ray Tune search, tracked in MLflow"):
            start_ray(ws, address=address)
            tr = _train_and_gate(cfg, ws, s.id, summary)
        with stage("4/9 online table (Spark) and Ray Serve on 127.0.0.1, real HTTP"):
            url = _serve_and_call(cfg, ws, s, tr.features, summary)
        with stage(
            "5/9 drift check (Numba: KS + PSI, chi-square + JS), training vs current window"
        ):
            _drift(cfg, ws, s.id, Path(str(data["path"])), summary)
        with stage("6/9 the monitoring loop: audit log -> monitor -> alerts -> labels -> retrain"):
            from engine.demo.loop import monitoring_loop

            summary["loop"] = monitoring_loop(cfg, ws, url, tr.features, s)
        with stage("7/9 demand: many series backtested on Ray, chosen per series, stock levels"):
            summary["demand"] = _demand(ws, size)
        with stage("8/9 targeting: whom to contact under a budget (uplift, segments, /decide)"):
            from engine.demo.targeting import run_targeting

            # /decide is served in the full demo; the smoke size leaves it to
            # tests/test_target_serve.py (a Serve deployment is ~10 s of the suite)
            summary["targeting"] = run_targeting(ws, size, serve=size != "tiny")
    finally:
        with stage("9/9 shutdown"):
            try:
                _shutdown(ray_dir)
            finally:
                spark.close()
    rep = write_report(cfg, ws)
    summary["report"] = str(rep.path)
    summary["seconds"] = round(time.monotonic() - t_start, 1)
    _print_outputs(ws, summary, rep)
    return summary


def _sample_data(
    cfg: ProjectConfig, ws: Workspace, size: str | None, summary: dict[str, Any]
) -> dict[str, Any]:
    from engine.stages.data import stage_data

    with stage("1/9 sample data"):
        data = stage_data(cfg, ws, size)
        rows = data["rows"]
        assert isinstance(rows, dict)
        reused = " (reused)" if data.get("reused") else ""
        console.print(
            f"{rows['customers']:,} customers, {rows['transactions']:,} transactions, "
            f"{rows['labels']:,} labels -> {data['path']}{reused}"
        )
        summary["data"] = data["path"]
    return data


def _features(cfg: ProjectConfig, ws: Workspace, summary: dict[str, Any]) -> Snapshot:
    from engine.stages.features import stage_features

    with stage("2/9 features on Spark (point-in-time as-of join -> snapshot)"):
        s, reused_snap = stage_features(cfg, ws)
        m = s.manifest
        console.print(
            f"snapshot [bold]{s.id}[/]{' (reused: the sources have not changed)' if reused_snap else ''}: "
            f"{m['rows']:,} rows x {len(m['features'])} features, label times "
            f"{m['event_time_range'][0]} .. {m['event_time_range'][1]}"
        )
        summary["snapshot"] = str(s.path)
    return s


def _train_and_gate(
    cfg: ProjectConfig, ws: Workspace, snapshot_id: str, summary: dict[str, Any]
) -> TrainResult:
    from engine.registry.gate import run_gate
    from engine.stages.train import stage_train

    tr = stage_train(cfg, ws, snapshot_id)
    console.print(
        f"{tr.trials} trials ({tr.errored} errored, {tr.stopped_early} stopped early "
        f"by ASHA) on {tr.train_rows:,} train / {tr.valid_rows:,} validation rows; "
        f"best valid AUC [bold]{tr.best_metrics['valid_auc']:.4f}[/] with "
        f"{tr.best_config}"
    )
    a = tr.test_auc
    console.print(
        f"registered [bold]{tr.model_name}[/] version {tr.version} as @{tr.alias}: "
        f"test AUC {a['estimate']:.4f} (95% CI {a['low']:.4f}-{a['high']:.4f}) on "
        f"{tr.test_rows:,} rows; model card logged (parent run {tr.parent_run_id})"
    )
    console.print(f"split {tr.split}; final model: {tr.final_fit}")
    if tr.uplift:
        u = tr.uplift
        console.print(
            f"uplift: campaign ATE {u['ate']['estimate']:+.4f} "
            f"({u['ate']['low']:+.4f}..{u['ate']['high']:+.4f}); best learner "
            f"{u['best']} Qini AUC {u['best_qini']['estimate']:.4f}"
        )
    _set_aside_champion(tr.model_name)
    g = run_gate(cfg, ws)
    for chk in g.checks:
        console.print(f"gate {chk.name}: {'pass' if chk.passed else 'FAIL'} - {chk.detail}")
    console.print(
        f"gate verdict: {'pass' if g.passed else 'fail'}"
        + (f"; v{g.challenger} promoted to @champion" if g.promoted else "")
    )
    summary["model"] = f"models:/{tr.model_name}@champion"
    summary["card"] = f"insight models card {tr.model_name} --version {tr.version}"
    return tr


def _serve_and_call(
    cfg: ProjectConfig, ws: Workspace, s: Snapshot, features: list[str], summary: dict[str, Any]
) -> str:
    """Materialize the online table, deploy, and call /predict and /explain over HTTP."""
    import httpx

    from engine.audit import verify
    from engine.features.online import materialize
    from engine.features.spark import spark_session
    from serve.deploy import serve_up
    from serve.inputs import request_rows

    with spark_session(cfg, ws) as spark:
        online = materialize(cfg, ws, spark, s.id)
    console.print(f"online table (latest features per customer, as of now): {online}")
    ep = serve_up(cfg, ws, alias="champion")
    console.print(f"serving at {ep.url}  (OpenAPI: {ep.url}/docs)")
    sample = _predict_rows(cfg, ws, s.id, 5)
    payload = {"rows": request_rows(sample[features])}
    resp = httpx.post(f"{ep.url}/predict", json=payload, timeout=30)
    if resp.status_code != 200:
        raise InsightError(f"/predict answered {resp.status_code}: {resp.text[:500]}")
    body = resp.json()
    t = Table("customer_id", "label_time", "score", "decision", "churned (truth)")
    key, lt = s.manifest["entity"], s.manifest["label_time"]
    for (_, row), pred in zip(sample.iterrows(), body["predictions"], strict=True):
        t.add_row(
            str(row[key]),
            str(row[lt].date()),
            f"{pred['score']:.3f}",
            "churn" if pred["decision"] else "stay",
            str(int(row[cfg.label.column])),
        )
    console.print(t)
    one = {"rows": payload["rows"][:1]}
    lat = []
    with httpx.Client(timeout=30) as client:
        for _ in range(30):
            t0 = time.perf_counter()
            client.post(f"{ep.url}/predict", json=one).raise_for_status()
            lat.append((time.perf_counter() - t0) * 1000)
    console.print(
        f"30 single-row requests: p50 {statistics.median(lat):.1f} ms, "
        f"max {max(lat):.1f} ms (model {body['model']} v{body['predictions'][0]['version']})"
    )
    ex = httpx.post(f"{ep.url}/explain", json=one, timeout=60)
    if ex.status_code != 200:
        raise InsightError(f"/explain answered {ex.status_code}: {ex.text[:500]}")
    e0 = ex.json()["explanations"][0]
    top = sorted(e0["shap"].items(), key=lambda kv: -abs(kv[1]))[:3]
    link = "sigmoid(" if e0["output"] == "log_odds" else "("
    console.print(
        f"/explain first row: score {e0['score']:.3f} = {link}base "
        f"{e0['base_value']:+.3f} + SHAP); largest: " + ", ".join(f"{k} {v:+.3f}" for k, v in top)
    )
    audit = verify(ws.audit)
    console.print(
        f"audit log: {audit.records} records in {len(audit.segments)} hash-chained "
        f"segment(s), {'intact' if audit.ok else 'NOT intact'} (insight audit verify)"
    )
    summary["endpoint"] = ep.url
    summary["predictions"] = body["predictions"]
    summary["audit"] = str(ws.audit)
    return str(ep.url)


def _drift(
    cfg: ProjectConfig, ws: Workspace, snapshot_id: str, data_dir: Path, summary: dict[str, Any]
) -> None:
    """The training window against the current one, checked against the generator's truth
    where the sample data carries it."""
    from engine.stages.drift import stage_drift

    dr = stage_drift(cfg, ws, snapshot_id)
    console.print(drift_table(dr.columns))
    console.print(
        f"{dr.reference_rows:,} reference rows vs {dr.current_rows:,} current rows; "
        f"drifted: [bold]{', '.join(dr.drifted) or 'none'}[/]"
    )
    summary["drifted"] = dr.drifted
    summary["drift_report"] = str(dr.report_path)
    truth_file = data_dir / "ground_truth.json"
    if not truth_file.is_file():
        return
    truth = json.loads(truth_file.read_text())["drift"]
    missed = sorted(set(truth["drifted_features"]) - set(dr.drifted))
    false = sorted(set(truth["stable_features"]) & set(dr.drifted))
    ok = not missed and not false
    verdict = (
        "[green]all injected features found, no stable feature flagged"
        if ok
        else f"[red]missed {missed}, false alarms {false}"
    )
    console.print(f"ground truth: injected drift in {sorted(truth['columns'])}; {verdict}[/]")
    summary["drift_matches_truth"] = ok


DEMAND_PROJECT = Path(__file__).resolve().parents[2] / "examples" / "demand" / "insight.yaml"


def _demand(ws: Workspace, size: str | None = None) -> dict[str, Any]:
    """The sales panel with known truth, forecast as a user would: train (backtest,
    choice, intervals, registry), then every series' next 8 weeks with the planned prices,
    and the stock each needs; then how close each part came to the truth."""
    import pandas as pd

    from engine.config.forecast import ForecastProject
    from engine.data.sales import against_truth, generate_sales
    from engine.stages.forecast import stage_forecast, stage_forecast_train

    proj = ForecastProject.load(DEMAND_PROJECT)
    # the tiny (smoke) demo: 2 stores x 12 products instead of 4 x 12, the same story
    truth = generate_sales(ws.data / "sales", stores=2 if size == "tiny" else 4)
    console.print(
        f"sales panel: {truth['series']} series, truth: elasticity {truth['elasticity']}, "
        f"promotion lift +{truth['promo_lift']:.0%}, {len(truth['intermittent'])} intermittent, "
        f"{len(truth['new_products'])} new products, a break in {truth['structural_break']}"
        + (" (reused)" if truth.get("reused") else "")
    )
    tr = stage_forecast_train(proj, ws, log=console.print)
    cv = tr.card["holdout"]["cross_validated"]
    plain = {k: v for k, v in cv["mase_by_candidate"].items() if k in proj.forecast.families}
    best = min(plain, key=lambda k: plain[k])
    console.print(
        f"every window held out in turn: chosen MASE [bold]{cv['mase']:.3f}[/] vs the best "
        f"single statsforecast family {best} {plain[best]:.3f}; interval coverage "
        + ", ".join(f"{lv}% -> {c:.1%}" for lv, c in cv["coverage"].items())
        + "; wins: "
        + ", ".join(f"{k} {v}" for k, v in sorted(tr.card["wins"].items(), key=lambda kv: -kv[1]))
    )
    out = ws.root / "forecasts" / "demand.parquet"
    res = stage_forecast(
        proj,
        ws,
        output=out,
        future=ws.data / "sales" / "future.csv",
        overwrite=True,
        log=console.print,
    )
    vs = against_truth(pd.read_parquet(out), truth, proj.forecast.levels)
    console.print(
        f"against the truth of the next 8 weeks: MAE {vs['mae_vs_expected']:.2f} units from "
        f"the expected demand (the demand's own noise: {vs['noise_floor_mae']:.2f}); the "
        "intervals held what the future drew: "
        + ", ".join(f"{lv}% -> {c:.1%}" for lv, c in vs["coverage"].items())
    )
    mon = _demand_monitor(proj, ws, truth, str(res["version"]))
    return {
        "model": f"models:/{tr.model_name}/{tr.version}",
        "monitor": mon,
        "cv_mase": cv["mase"],
        "best_family": best,
        "best_family_mase": plain[best],
        "coverage": cv["coverage"],
        "vs_truth": vs,
        "inventory": res.get("inventory"),
        "forecasts": str(out),
    }


def _demand_monitor(
    proj: Any, ws: Workspace, truth: dict[str, Any], version: str
) -> dict[str, Any]:
    """The 8 weeks that followed arrive as actuals (the generator's draws); the forecast
    monitor scores the issued forecasts against them, as it would an ERP's extract."""
    import pandas as pd

    from engine.forecast.actuals import ingest_actuals
    from engine.stages.monitor import stage_forecast_monitor

    fut = pd.read_csv(ws.data / "sales" / "future.csv")
    fut["units"] = [
        truth["future"][f"{s}/{p}"]["draw"][k]
        for s, p, k in zip(
            fut["store"], fut["product"], fut.groupby(["store", "product"]).cumcount(), strict=True
        )
    ]
    path = ws.data / "sales" / "actuals.csv"
    fut[["store", "product", "week", "units"]].to_csv(path, index=False)
    ingest_actuals(proj, ws, path)
    run = stage_forecast_monitor(proj, ws, send=False, log=console.print)
    v = str(version)  # the version that forecast this run (an earlier run's may be there too)
    m = run.result.models.get(v)
    q = None if m is None else m.forecast.get("all")
    if q is None or q.mase.estimate is None:
        return {}

    def ci(s: Any, pct: bool = False) -> str:
        f = (lambda x: f"{x:.1%}") if pct else (lambda x: f"{x:.3f}")
        return f"{f(s.estimate)} ({f(s.low)}-{f(s.high)})" if s.low is not None else f(s.estimate)

    console.print(
        f"forecast monitor, v{v} on the {q.points} series-weeks that followed: realized MASE "
        f"{ci(q.mase)}, {ci(q.mase_ratio)} x its backtest; bias {ci(q.bias, True)}; "
        + ", ".join(f"{lv}% held {ci(c, True)}" for lv, c in q.coverage.items())
    )
    return {
        "version": v,
        "mase": q.mase.triple(),
        "mase_ratio": q.mase_ratio.triple() if q.mase_ratio else None,
        "coverage": {lv: c.triple() for lv, c in q.coverage.items()},
        "result": str(run.path),
    }


def _shutdown(ray_dir: Path) -> None:
    from engine.procs import processes_mentioning
    from engine.raycluster import stop_ray
    from serve.deploy import serve_down

    try:
        serve_down()
    finally:
        stop_ray()
    left = processes_mentioning(str(ray_dir))
    if left:
        console.print(f"[yellow]{len(left)} Ray process(es) still exiting[/]")
        for p in left:
            try:
                p.wait(timeout=15)
            except Exception:
                console.print(f"[red]process {p.pid} left running: {p.cmdline()[:3]}[/]")
    console.print("serve app shut down, Ray stopped, Spark stopped: no process left")


def _print_outputs(ws: Workspace, summary: dict[str, Any], rep: Any) -> None:
    console.rule("[bold green]demo finished")
    console.print(f"in {summary['seconds']} s. Outputs under {ws.root}:")
    console.print(f"  feature snapshot   {summary['snapshot']}")
    console.print(f"  model              {summary['model']}")
    console.print(f"  drift report       {summary['drift_report']}")
    console.print(f"  audit log          {summary.get('audit')}  (insight audit verify)")
    if summary.get("demand"):
        console.print(
            f"  demand forecasts   {summary['demand']['forecasts']} (+ .inventory.parquet)"
        )
    if summary.get("targeting"):
        t = summary["targeting"]
        console.print(
            f"  targeting          {t['model']} ({t['project']}); next month's list captured "
            f"{t['captured']:.0%} of the achievable profit"
        )
    console.print(
        f"  report             {rep.path} ({rep.bytes / 1024:.0f} KB, {len(rep.cards)} card "
        "page(s) in cards/)"
    )
    console.print(f"Open the report: {rep.path.as_uri()}   (live: insight dashboard)")
    console.print("Next: open the runs with")
    console.print(f"  .venv/bin/mlflow ui --backend-store-uri {ws.tracking_uri} --host 127.0.0.1")
    console.print("  keep a server up: insight serve up; insight serve status; insight serve down")
    console.print("  or run one stage alone: insight features build | train | serve up | drift")
