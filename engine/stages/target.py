"""Targeting: from a randomised campaign table to a registered targeting model with its card
(``stage_target_train``), and from a customer table to a ranked contact list under a budget
(``stage_target_decide``).

Training: the campaign is read through the one source resolver and checked; the learners
are searched (Ray Tune, or in this process for a small table when no Ray is wanted), each
configuration cross-fitted so every row is scored out of fold, and chosen by out-of-fold
Qini with the one-standard-error rule. The chosen configuration's out-of-fold uplift gives
the calibration check, the segments and the policy's held-out value; the configuration
refitted on every row is what is registered and served.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from engine.config.target import Budget, TargetProject
from engine.errors import ConfigError
from engine.workspace import Workspace

CARD = "target_card.json"
LOCAL_MAX_ROWS = 200_000


@dataclass
class TargetTrainResult:
    model_name: str
    version: str
    alias: str
    run_id: str
    card: dict[str, Any]
    seconds: dict[str, float]


def _use_ray(ws: Workspace, rows: int, engine: str) -> bool:
    from engine.raycluster import ray_wanted

    if engine != "auto":
        return engine == "ray"
    return ray_wanted(ws) or rows > LOCAL_MAX_ROWS


def stage_target_train(
    proj: TargetProject,
    ws: Workspace,
    *,
    engine: Literal["auto", "ray", "local"] = "auto",
    log: Callable[[str], None] = print,
) -> TargetTrainResult:
    import mlflow

    from engine.targeting import balance
    from engine.targeting.campaign import load_campaign
    from engine.targeting.card import build_card, card_markdown
    from engine.targeting.evaluate import choose
    from engine.targeting.learners import COMPLEXITY
    from engine.targeting.search import search_here, search_on_ray
    from engine.tracking import code_version, setup_mlflow

    t = proj.target
    t0 = time.perf_counter()
    c = load_campaign(proj, ws.root)
    bal = balance.check(c.x, c.arm, c.arms)
    counts = ", ".join(f"{a} {n:,}" for a, n in bal["arms"].items())
    log(
        f"campaign: {c.arm.size:,} customers; arms {counts}; outcome {t.outcome} ({c.outcome_kind})"
    )
    for why, n in c.dropped.items():
        log(f"  dropped {n:,} row(s): {why}")
    if (w := balance.warning(bal)) is not None:
        log(f"  warning: {w}")
    exp_id = setup_mlflow(ws, proj.name)
    t_data = time.perf_counter()
    with mlflow.start_run(experiment_id=exp_id, run_name=f"target-{proj.name}") as run:
        tags = {"task": "target", "code": code_version(), "project": proj.name}
        mlflow.set_tags(tags)
        if _use_ray(ws, c.arm.size, engine):
            from engine.raycluster import start_ray
            from engine.train.tracking import MLflowTrialCallback

            start_ray(ws)
            scores = search_on_ray(
                c,
                t,
                name=f"{proj.name}-target-{run.info.run_id[:8]}",
                storage_path=str(ws.tune),
                callbacks=[
                    MLflowTrialCallback(
                        ws.tracking_uri, exp_id, run.info.run_id, {**tags, "kind": "uplift"}
                    )
                ],
                max_concurrent=max(1, (os.cpu_count() or 2)),
            )
            where = "Ray Tune"
        else:
            scores = search_here(c, t, os.cpu_count() or 1, log)
            where = "this process"
        pick, why = choose(scores, COMPLEXITY)
        k = len(scores)
        log(f"search ({where}, {k} configuration{'s' if k != 1 else ''}): {why}")
        t_search = time.perf_counter()
        card, targeter = build_card(proj, c, bal, scores, pick, why, log)
        card["search"]["engine"] = where
        from engine.ingest.ledger import ingested

        if lineage := ingested(ws, proj, t.source):  # a database source: the runs it saw
            card["source_lineage"] = lineage
        t_card = time.perf_counter()
        mlflow.log_params(
            {
                "learner": pick.learner,
                "max_depth": pick.hp.get("max_depth"),
                "folds": t.folds,
                "arms": ",".join(c.arms),
                "outcome": t.outcome,
                "outcome_kind": c.outcome_kind,
            }
        )
        pol = card["policy"]["at_budget"]["policy"]
        mlflow.log_metrics(
            {
                "oof_qini": pick.qini,
                "oof_qini_se": pick.se,
                "policy_profit": pol["profit"],
                "policy_profit_low": pol["low"],
                "policy_incremental": pol["incremental"],
            }
        )
        from engine.targeting.pyfunc import TargetPyfunc
        from engine.targeting.targeter import ARTIFACT

        with tempfile.TemporaryDirectory() as d:
            p = Path(d)
            (p / CARD).write_text(json.dumps(card, indent=1, default=_json))
            (p / "target_card.md").write_text(card_markdown(card))
            (p / ARTIFACT).write_bytes(targeter.dumps())
            mlflow.log_artifact(str(p / CARD))
            mlflow.log_artifact(str(p / "target_card.md"))
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=TargetPyfunc(),
                artifacts={"targeter": str(p / ARTIFACT)},
                registered_model_name=proj.model_name,
                # named, not inferred: inference runs the model in a subprocess (~7 s)
                pip_requirements=pins("mlflow", "xgboost", "scikit-learn", "pandas", "numpy"),
            )
    version = str(info.registered_model_version)
    alias = _alias(proj.model_name, version, pick.qini, list(c.x.columns))
    secs = {
        "data": t_data - t0,
        "search": t_search - t_data,
        "card": t_card - t_search,
        "register": time.perf_counter() - t_card,
    }
    at = card["policy"]["at_budget"]
    log(
        f"registered {proj.model_name} v{version} as @{alias}: {pick.name}, out-of-fold Qini "
        f"{pick.qini:.4f}; at the budget the policy earns {at['policy']['profit']:,.0f} "
        f"{proj.business.currency} (95% CI {at['policy']['low']:,.0f}..{at['policy']['high']:,.0f}) "
        f"over contacting no one"
    )
    return TargetTrainResult(proj.model_name, version, alias, run.info.run_id, card, secs)


def _alias(name: str, version: str, qini: float, features: list[str]) -> str:
    from mlflow.tracking import MlflowClient

    from engine.registry.models import try_resolve

    client = MlflowClient()
    tags = {"task": "target", "oof_qini": f"{qini:.6f}", "features": json.dumps(features)}
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
    champ = try_resolve(name, "champion")
    better = champ is None or float(champ.tags.get("oof_qini", "-inf")) < qini
    alias = "champion" if better else "challenger"
    client.set_registered_model_alias(name, alias, version)
    return alias


def _json(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def pins(*dists: str) -> list[str]:
    """``name==version`` of installed distributions: a logged model's requirements."""
    from importlib.metadata import version

    return [f"{d}=={version(d)}" for d in dists]


def budget_cutoff(tg: Any) -> float:
    """The least net value worth a contact when customers come one at a time: where the
    budget's cut fell on the campaign's rows (engine.targeting.policy.strategies)."""
    return float(tg.meta.get("cutoff", 0.0))


def load_targeter(ws: Workspace, name: str, which: str = "champion") -> tuple[Any, Any]:
    """The registered targeter (and its model version) by alias or version."""
    import mlflow

    from engine.registry.models import find
    from engine.targeting.targeter import ARTIFACT, Targeter
    from engine.tracking import use_workspace

    use_workspace(ws)
    ref = find(name, which)
    if ref.tags.get("task") != "target":
        raise ConfigError(
            f"model '{name}' v{ref.version} is not a targeting model (task "
            f"{ref.tags.get('task', 'churn')}). Fix: target.model_name names it."
        )
    path = mlflow.artifacts.download_artifacts(f"models:/{name}/{ref.version}")
    data = (Path(path) / "artifacts" / ARTIFACT).read_bytes()
    return Targeter.loads(data), ref


def stage_target_decide(
    proj: TargetProject,
    ws: Workspace,
    source: Path,
    output: Path,
    *,
    budget: Budget | None = None,
    which: str = "champion",
) -> dict[str, Any]:
    """A contact list for the customers of ``source`` (CSV or Parquet, the campaign's
    feature columns; the table's own names or the project's), written atomically."""
    from engine.data.init import read_table, snake
    from engine.targeting.targeter import summary

    tg, ref = load_targeter(ws, proj.model_name, which)
    df, _, _ = read_table(source)
    src = proj.sources[proj.target.source]
    df = df.rename(columns={k: v for k, v in src.rename.items() if k in df.columns})
    df = df.rename(columns={c: snake(c) for c in df.columns if c not in tg.model.features})
    missing = [f for f in tg.model.features if f not in df.columns]
    if missing:
        raise ConfigError(
            f"'{source.name}' lacks the model's feature column(s) {missing} (columns: "
            f"{', '.join(df.columns)}). Fix: pass a table with the campaign's attributes."
        )
    keys = df[tg.key] if tg.key and tg.key in df.columns else None
    df, withheld = _marketing_consent(proj, ws, df, keys, tg.key)
    x = df[tg.model.features]
    keys = df[tg.key] if tg.key and tg.key in df.columns else None
    dec = tg.decide(x, budget, keys)
    if withheld is not None:  # listed, never contacted, and why
        dec = pd.concat([dec, withheld], ignore_index=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    if output.suffix.lower() in (".parquet", ".pq"):
        dec.to_parquet(tmp, index=False)
    else:
        dec.to_csv(tmp, index=False)
    os.replace(tmp, output)
    out = {"model": proj.model_name, "version": ref.version, **summary(dec, tg.econ)}
    if withheld is not None:
        out["withheld"] = len(withheld)
    return out


def _marketing_consent(
    proj: TargetProject, ws: Workspace, df: pd.DataFrame, keys: pd.Series | None, key: str | None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The customers the policy lets the campaign consider (consent to the targeting
    purpose, now), and the others as rows that are never contacted, with why. The budget
    is spent among the first only."""
    from engine.governance.enforce import batch_consent

    bc = batch_consent(
        proj, ws, key, hashed=False, action="target", purpose=proj.governance.purposes.targeting
    )
    if bc is None:
        return df, None
    if keys is None:
        raise ConfigError(
            f"consent to '{proj.governance.purposes.targeting}' is checked per customer, but "
            f"the table has no '{key}' column. Fix: pass a table with the customer key."
        )
    why = bc.reasons(keys.to_numpy())
    gone = np.array([w is not None for w in why], dtype=bool)
    withheld = pd.DataFrame(
        {
            key or "key": keys.to_numpy()[gone],
            "contact": False,
            "arm": "",
            "withheld": [w for w in why if w is not None],
        }
    )
    return df[~gone].reset_index(drop=True), withheld
