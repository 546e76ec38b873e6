"""The search over learners x base-model depths: each configuration cross-fitted and scored
by its out-of-fold Qini with a bootstrap standard error, on Ray Tune (one trial per
configuration, each an MLflow run under the parent) or in this process (a small table and
no Ray wanted: a trial is seconds, a Ray start is ten)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.config.target import TargetConfig
from engine.targeting.campaign import Campaign
from engine.targeting.evaluate import ConfigScore, score
from engine.targeting.learners import crossfit

N_BOOT_SEARCH = 200


def configs(t: TargetConfig) -> list[dict[str, Any]]:
    return [
        {"learner": lr, "max_depth": d, "n_estimators": t.n_estimators, "eta": 0.1}
        for lr in t.learners
        for d in t.depths
    ]


def name_of(cfg: dict[str, Any]) -> str:
    return f"{cfg['learner']}(max_depth={cfg['max_depth']})"


def evaluate_config(
    c: Campaign, cfg: dict[str, Any], folds: int, seed: int, threads: int = 1
) -> ConfigScore:
    hp = {k: v for k, v in cfg.items() if k != "learner"}
    cf = crossfit(c, cfg["learner"], hp, folds, seed, threads)
    return score(c, cf.tau, name_of(cfg), cfg["learner"], hp, N_BOOT_SEARCH, seed)


def search_here(
    c: Campaign, t: TargetConfig, threads: int, log: Callable[[str], None]
) -> list[ConfigScore]:
    out = []
    grid = configs(t)
    for i, cfg in enumerate(grid, 1):
        s = evaluate_config(c, cfg, t.folds, t.seed, threads)
        log(f"  [{i}/{len(grid)}] {s.name}: out-of-fold Qini {s.qini:.4f} (SE {s.se:.4f})")
        out.append(s)
    return out


def _trainable(config: dict[str, Any], data: dict[str, Any]) -> None:
    from ray import tune

    s = evaluate_config(data["campaign"], config, data["folds"], data["seed"])
    tune.report({"qini": s.qini, "se": s.se, "per_arm": s.per_arm, "round": 1})


def search_on_ray(
    c: Campaign,
    t: TargetConfig,
    *,
    name: str,
    storage_path: str,
    callbacks: list[Any],
    max_concurrent: int,
) -> list[ConfigScore]:
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(
                _trainable, data={"campaign": c, "folds": t.folds, "seed": t.seed}
            ),
            {"cpu": 1},
        ),
        param_space={
            "learner": tune.grid_search(list(t.learners)),
            "max_depth": tune.grid_search(list(t.depths)),
            "n_estimators": t.n_estimators,
            "eta": 0.1,
        },
        tune_config=tune.TuneConfig(
            metric="qini", mode="max", max_concurrent_trials=max_concurrent, reuse_actors=True
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=storage_path, callbacks=callbacks, verbose=0
        ),
    )
    results = tuner.fit()
    out = []
    for i in range(len(results)):
        r = results[i]
        if r.error is not None or not r.metrics or not r.config:
            raise RuntimeError(f"uplift trial {r.config} failed: {r.error}")
        cfg = dict(r.config)
        hp = {k: v for k, v in cfg.items() if k != "learner"}
        out.append(
            ConfigScore(
                name_of(cfg),
                cfg["learner"],
                hp,
                float(r.metrics["qini"]),
                float(r.metrics["se"]),
                list(r.metrics["per_arm"]),
            )
        )
    return out
