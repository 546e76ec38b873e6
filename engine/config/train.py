"""The ``train:`` block of the project file: the search (families and their ranges, searcher,
scheduler, checkpoints), the split, the final fit, the data-parallel backend, and the
promotion gate (``train.gate``)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, field_validator

from engine.config.base import Model


def _default_families() -> dict[str, dict[str, list[float]]]:
    from engine.train.families import default_spaces

    return default_spaces()


class GateConfig(Model):
    """When a challenger may replace the champion (``insight models gate``)."""

    auc_margin: float = Field(
        default=0.01,
        ge=0,
        description="Pass if the paired CI of AUC(challenger) - AUC(champion) has its lower "
        "bound >= -margin (non-inferiority on the same test rows).",
    )
    max_fairness_shift: float = Field(
        default=0.05,
        ge=0,
        description="Fail if a demographic-parity difference moves by more than this.",
    )
    fairness_metric: Literal[
        "demographic_parity_difference",
        "equal_opportunity_difference",
        "equalized_odds_difference",
    ] = "demographic_parity_difference"
    qini_not_worse: bool = Field(
        default=True, description="Uplift: challenger Qini upper CI bound >= champion Qini."
    )
    beat_baselines: bool = Field(
        default=True,
        description="With no champion, the challenger must beat the class prior (its AUC "
        "interval above 0.5) and hold against the best single feature on its test rows "
        "(paired AUC interval, see baseline_rule) to be promoted.",
    )
    baseline_rule: Literal["not_worse", "better"] = Field(
        default="not_worse",
        description="Against the best single feature: not_worse (the paired interval of "
        "AUC(model) - AUC(feature) reaches 0 or above: not significantly worse; when it also "
        "reaches below 0 the gate and the card say the model is not shown better) or better "
        "(the whole interval above 0: significantly better, which a small test split rarely "
        "shows).",
    )
    n_boot: int = Field(default=300, ge=50, le=10_000)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    min_test_rows: int = Field(
        default=100,
        ge=10,
        description="Fail when fewer test rows than this are unseen by both models (a "
        "champion retrained on newer labels has seen an older challenger's test rows).",
    )


class TrainConfig(Model):
    model_name: str = Field(default="churn", pattern=r"^[A-Za-z0-9_.-]+$")
    num_samples: int = Field(default=4, ge=1, le=1000)
    max_concurrent: int = Field(default=2, ge=1)
    cpus_per_trial: float = Field(default=1.0, gt=0)
    num_boost_round: int = Field(default=60, ge=1)
    valid_fraction: float = Field(
        default=0.25, gt=0, lt=1, description="Label times held out for validation (search)."
    )
    test_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Latest label times held out for the model card."
    )
    families: dict[str, dict[str, list[float]]] = Field(
        default_factory=_default_families,
        description="Model family -> {parameter: [low, high]}; integers for max_depth.",
    )
    searcher: Literal["optuna", "random"] = "optuna"
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_rounds: int = Field(default=10, ge=1, description="ASHA: rounds before any stop.")
    checkpoint_every: int = Field(default=10, ge=1, description="Rounds between checkpoints.")
    max_failures: int = Field(default=2, ge=0, description="Retries per failed trial.")
    report_every: int = Field(
        default=0,
        ge=0,
        description="Rounds between Tune reports (0: num_boost_round // 40). Every round's "
        "valid_auc still reaches MLflow; ASHA decides at reports.",
    )
    uplift_learners: list[Literal["t_learner", "x_learner"]] = Field(
        default_factory=lambda: ["t_learner", "x_learner"],  # type: ignore[arg-type]
        description="Meta-learners fitted when the project has a treatment.",
    )
    seed: int = 0
    split: Literal["auto", "time", "random"] = Field(
        default="auto",
        description="time: by label time (oldest trains, latest tests); random: stratified by "
        "label, seeded. auto: time when the labels have at least 3 distinct times, else random.",
    )
    cv: Literal["auto", "always", "off"] = Field(
        default="auto",
        description="Choose the family by k-fold cross-validation over train + validation "
        "(each family's best search configuration): auto where those rows are at most "
        "cv_max_rows and the split is random (one small validation split is mostly noise).",
    )
    cv_folds: int = Field(default=5, ge=2, le=20)
    cv_max_rows: int = Field(default=20_000, ge=0)
    refit: bool = Field(
        default=True,
        description="Refit the chosen configuration on train + validation rows before "
        "registering (the test rows stay unseen).",
    )
    embargo: str | None = Field(
        default=None,
        description="With label.horizon: a further gap ('14d') between a training row's "
        "outcome window and the next period, for outcomes that settle late.",
    )
    until: dt.date | None = Field(
        default=None, description="Train on label times up to this date (inclusive)."
    )
    exclude: list[str] = Field(
        default_factory=list, description="Feature columns the model must not use."
    )
    allow_leaky: list[str] = Field(
        default_factory=list,
        description="Features that look like they leak the label (they determine it, or "
        "separate it almost perfectly alone) but are known when predictions are made: "
        "trained on anyway. Any other such feature stops training with the reason.",
    )
    gate: GateConfig = Field(default_factory=GateConfig)
    backend: Literal["tune", "ray_train"] = Field(
        default="tune",
        description="tune: the search (one process per trial). ray_train: one data-parallel "
        "XGBoost over `workers` Ray Train workers, for data larger than one worker.",
    )
    workers: int = Field(default=2, ge=1, description="ray_train: data-parallel workers.")
    distributed_params: dict[str, float] = Field(
        default_factory=lambda: {
            "max_depth": 4,
            "eta": 0.1,
            "subsample": 0.9,
            "min_child_weight": 3,
        },
        description="ray_train: XGBoost parameters (e.g. the best of a search on a sample).",
    )

    @field_validator("embargo")
    @classmethod
    def _embargo(cls, v: str | None) -> str | None:
        from engine.features.views import parse_duration

        if v is not None:
            parse_duration(v)
        return v

    @field_validator("families")
    @classmethod
    def _ranges(cls, v: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, list[float]]]:
        from engine.train.families import FAMILIES

        if not v:
            raise ValueError("at least one model family is needed")
        for fam, space in v.items():
            if fam not in FAMILIES:
                raise ValueError(f"unknown model family '{fam}'; known: {sorted(FAMILIES)}")
            for name, bounds in space.items():
                if len(bounds) != 2 or not bounds[0] <= bounds[1]:
                    raise ValueError(
                        f"'{fam}.{name}' must be [low, high] with low <= high, got {bounds}"
                    )
        return v
