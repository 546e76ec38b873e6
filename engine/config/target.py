"""The targeting task of a project file (``target:``): a randomised campaign table (who was
assigned which arm, what they did afterwards, their attributes), the meta-learners fitted
on it, the segments reported, and the ``business:`` numbers that turn uplift into a
budgeted contact policy.

A file with ``target:`` and no ``label:`` is a targeting project (:class:`TargetProject`),
written by ``insight init --from campaign.csv --treatment COL --control VALUE --outcome
COL``. The churn loader (:class:`engine.config.project.ProjectConfig`) keeps its own
``treatment:`` block for uplift on churn projects."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from engine.config.base import IDENT, Model, read_project_file, resolve_source_path
from engine.config.cluster import ClusterConfig, load_cluster
from engine.config.governance import GovernanceConfig
from engine.config.ingest import ScheduleConfig
from engine.config.monitor import MonitorConfig
from engine.config.source import SourceConfig, complete_sources
from engine.errors import ConfigError, format_validation_error

LEARNERS = ("s_learner", "t_learner", "x_learner", "dr_learner")


class SegmentsConfig(Model):
    """``target.segments``: the two kinds of segments the card and the report show."""

    k: int | Literal["auto"] = Field(
        default="auto",
        description="K-means clusters of customers; auto: the k in 2..k_max with the best "
        "silhouette score (on a sample of at most 5,000 rows).",
    )
    k_max: int = Field(default=6, ge=2, le=20)
    tree_depth: int = Field(
        default=2,
        ge=1,
        le=4,
        description="Depth of the effect tree (segments are its leaves: readable rules).",
    )
    min_share: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="Smallest effect-tree leaf, as a share of the rows it is fitted on.",
    )
    fdr: float = Field(
        default=0.05, gt=0, lt=1, description="Benjamini-Hochberg false discovery rate."
    )
    n_boot: int = Field(default=1000, ge=100, le=100_000, description="Bootstrap resamples.")


class TargetRollout(Model):
    """``target.rollout``: a new policy version reaches customers in steps, each step
    judged on live traffic against the champion in the same window; a breach rolls back."""

    steps: list[float] = Field(default_factory=lambda: [10.0, 50.0, 100.0])
    min_rows: int = Field(
        default=200,
        ge=20,
        description="Chosen customers with an outcome (contacted or held out) each version "
        "needs in a step before it is judged; fewer by max_wait: rolled back.",
    )
    max_wait: str = "30m"
    max_lift_drop: float = Field(
        default=0.0,
        ge=0,
        description="Breach when the challenger's live lift interval lies wholly below the "
        "champion's live lift minus this.",
    )
    max_contact_gap_increase: float = Field(
        default=0.1,
        ge=0,
        description="Breach when, on a sensitive attribute, the challenger's gap in contact "
        "rate between groups exceeds the champion's by more than this.",
    )


class Budget(Model):
    """One of a number of contacts or an amount of money."""

    contacts: int | None = Field(default=None, ge=1)
    money: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> Budget:
        if (self.contacts is None) == (self.money is None):
            raise ValueError(
                "budget needs exactly one of contacts (a count) or money (an amount). Fix: "
                "e.g. budget: {contacts: 5000}."
            )
        return self


class TargetBusiness(Model):
    """``business:`` of a targeting project: what a contact costs, what a conversion is
    worth, and the budget. Without them the policy ranks by uplift alone (value 1 per
    conversion, no cost) and says so."""

    cost_per_contact: float | dict[str, float] = Field(
        default=0.0,
        description="One cost for every arm, or a cost per treatment arm (by its value in "
        "the table). The control arm costs nothing.",
    )
    value_per_conversion: float = Field(
        default=1.0,
        gt=0,
        description="What one extra conversion (binary outcome) or one unit of the outcome "
        "(an amount such as spend) is worth.",
    )
    budget: Budget | None = None
    currency: str = Field(default="EUR", max_length=8)

    @field_validator("cost_per_contact")
    @classmethod
    def _costs(cls, v: float | dict[str, float]) -> float | dict[str, float]:
        vals = v.values() if isinstance(v, dict) else [v]
        bad = [c for c in vals if c < 0]
        if bad:
            raise ValueError(f"a contact cannot cost less than 0 (got {bad[0]}).")
        return v

    def cost(self, arm: str) -> float:
        c = self.cost_per_contact
        if isinstance(c, dict):
            return float(c.get(arm, 0.0))
        return float(c)


class TargetConfig(Model):
    """``target:``: the campaign table and how uplift is learned from it."""

    source: str = Field(description="The campaign table (a source of this file).")
    key: str | None = Field(
        default=None, description="The customer key (target lists name customers by it)."
    )
    treatment: str = Field(description="The column saying which arm each row was assigned.")
    control: str = Field(description="The treatment column's value of the control arm.")
    arms: list[str] = Field(
        default_factory=list,
        description="The treatment arms (values of the treatment column, control excluded); "
        "empty: every other value in the table.",
    )
    outcome: str
    outcome_kind: Literal["binary", "amount"] = Field(
        default="binary",
        description="binary: converted or not (positive names the value); amount: a "
        "non-negative number such as spend.",
    )
    positive: str | None = Field(
        default=None,
        description="Binary outcomes: the value meaning 'converted' (default: 1/yes/true).",
    )
    features: list[str] = Field(min_length=1)
    learners: list[Literal["s_learner", "t_learner", "x_learner", "dr_learner"]] = Field(
        default_factory=lambda: list(LEARNERS)  # type: ignore[arg-type]
    )
    depths: list[int] = Field(
        default_factory=lambda: [2, 4], description="Tree depths of the base learners searched."
    )
    n_estimators: int = Field(default=100, ge=1, le=5000)
    folds: int = Field(
        default=5, ge=2, le=20, description="Cross-fitting folds: each row scored out of fold."
    )
    min_arm_rows: int = Field(
        default=30,
        ge=10,
        description="Fewest rows an arm needs (per fold, a model and a CI need rows).",
    )
    segments: SegmentsConfig = Field(default_factory=SegmentsConfig)
    rollout: TargetRollout = Field(default_factory=TargetRollout)
    model_name: str = Field(default="", description="Registry name (default: NAME-uplift).")
    risk: str | None = Field(
        default=None,
        description="A column of the campaign table with a risk score (e.g. the churn "
        "model's probability from insight score): the policy is compared with contacting "
        "by it. Default: by the predicted outcome without contact.",
    )
    seed: int = 0

    @field_validator("features")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        import re

        bad = [f for f in v if not re.match(IDENT, f)]
        if bad:
            raise ValueError(
                f"feature name(s) {bad} are not identifiers. Fix: rename them in the "
                "source's rename: mapping (insight init does)."
            )
        return v

    @model_validator(mode="after")
    def _roles(self) -> TargetConfig:
        roles = {self.treatment, self.outcome} | ({self.key} if self.key else set())
        clash = sorted(roles & set(self.features))
        if clash:
            raise ValueError(
                f"features {clash} are also the treatment, outcome or key column; a model "
                "must not take them as inputs. Fix: remove them from target.features."
            )
        if self.control in self.arms:
            raise ValueError(
                f"target.arms lists the control value '{self.control}'. Fix: list only "
                "the treatment arms."
            )
        return self


_OTHER_TASK = {"label", "treatment", "features", "train", "serve", "drift", "forecast"}


class TargetProject(Model):
    """The targeting part of a project file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    workspace: str = ".insight"
    sources: dict[str, SourceConfig]
    entities: dict[str, Any] = Field(default_factory=dict)
    target: TargetConfig
    business: TargetBusiness = Field(default_factory=TargetBusiness)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    pii: list[str] = Field(default_factory=list)
    sensitive: list[str] = Field(default_factory=list)
    sample: Any = None
    schedule: ScheduleConfig | None = None
    governance: GovernanceConfig = Field(
        default_factory=GovernanceConfig,
        description="Consent by purpose and policy files (engine.config.governance).",
    )
    base_dir: str = Field(default=".", exclude=True)

    @model_validator(mode="after")
    def _source(self) -> TargetProject:
        t = self.target
        if t.source not in self.sources:
            raise ValueError(
                f"target.source '{t.source}' is not a source of this file (sources: "
                f"{', '.join(self.sources)})."
            )
        cols = self.sources[t.source].columns
        if cols:
            named = [("target.treatment", t.treatment), ("target.outcome", t.outcome)]
            named += [("target.key", t.key)] if t.key else []
            named += [("target.risk", t.risk)] if t.risk else []
            named += [("target.features", f) for f in t.features]
            for where, c in named:
                if c not in cols:
                    raise ValueError(
                        f"{where}: '{c}' is not a declared column of source '{t.source}' "
                        f"(columns: {', '.join(cols)}). Fix: use one of them."
                    )
        if isinstance(self.business.cost_per_contact, dict) and t.arms:
            unknown = sorted(set(self.business.cost_per_contact) - set(t.arms))
            if unknown:
                raise ValueError(
                    f"business.cost_per_contact names {unknown}, not treatment arms "
                    f"(arms: {', '.join(t.arms)}). Fix: one cost per arm."
                )
        return self

    @property
    def model_name(self) -> str:
        return self.target.model_name or f"{self.name}-uplift"

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: Path | str = "project file") -> TargetProject:
        if "target" not in raw:
            raise ConfigError(
                f"{where}: no 'target:' block. Fix: add one (insight init --from TABLE "
                "--treatment COLUMN --control VALUE --outcome COLUMN writes it)."
            )
        mine = complete_sources({k: v for k, v in raw.items() if k not in _OTHER_TASK})
        assert isinstance(mine, dict)
        if isinstance(mine.get("cluster"), str):
            mine["cluster"] = load_cluster(mine["cluster"], str(raw.get("base_dir", ".")))
        try:
            return cls.model_validate(mine)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(where, exc)) from None

    @classmethod
    def load(cls, path: str | Path) -> TargetProject:
        p, raw = read_project_file(path)
        return cls.from_dict(raw, p)

    def resolve_path(self, path: str, workspace: Path) -> Path:
        return resolve_source_path(self.base_dir, path, workspace)

    def workspace_root(self, override: str | Path | None = None) -> Path:
        return Path(override if override is not None else self.workspace).resolve()
