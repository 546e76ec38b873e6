"""Typed project file.

One YAML file declares the data sources, entities, label, optional treatment, sensitive
attributes, PII columns, and the settings of each stage. It is loaded into pydantic models
by :meth:`ProjectConfig.load`; every validation error is reported with its YAML path, the
value seen and a fix, e.g.::

    examples/retail/insight.yaml: label.column: 'churn' is not a column of source 'labels'
    (columns: customer_id, label_time, churned). Fix: set label.column to one of them.

Paths in the file are relative to the file's folder; ``{workspace}`` expands to the
workspace root, so sample data can live with the rest of the local state.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.config.base import IDENT as _IDENT
from engine.config.base import Model, read_yaml, resolve_source_path
from engine.config.cluster import ClusterConfig, load_cluster
from engine.config.forecast import ForecastConfig, InventoryConfig
from engine.config.governance import GovernanceConfig
from engine.config.ingest import ScheduleConfig
from engine.config.monitor import MonitorConfig
from engine.config.source import (  # noqa: F401 (re-exported)
    CSV_SUFFIXES,
    PARQUET_SUFFIXES,
    SourceConfig,
    complete_sources,
    infer_format,
)
from engine.config.train import GateConfig, TrainConfig
from engine.errors import ConfigError, format_validation_error
from engine.features.views import FeatureView, parse_duration

__all__ = ["DEFAULT_PROJECT", "GateConfig", "ProjectConfig", "SourceConfig", "TrainConfig"]


# The embedded default project: what `make demo` runs when no insight.yaml is given.
DEFAULT_PROJECT = Path(__file__).resolve().parents[2] / "examples" / "retail" / "insight.yaml"


class EntityConfig(Model):
    key: str = Field(pattern=_IDENT)


class LabelConfig(Model):
    """The outcome to predict. Without ``event_time`` the label source is a snapshot (one
    moment): features join on the key, and training splits at random."""

    source: str
    column: str
    event_time: str | None = Field(
        default=None, description="When each label was observed; omit for a snapshot table."
    )
    positive: str | int | bool | None = Field(
        default=None,
        description="The value meaning 'positive' (churned). Default: recognised from the "
        "usual spellings (yes/no, true/false, 1/0, y/n).",
    )
    as_of: dt.datetime | None = Field(
        default=None,
        description="Snapshot labels only: when they were observed. Needed when a view reads "
        "an event table, so its features use only events before this time.",
    )
    horizon: str | None = Field(
        default=None,
        description="How far past its label time a label looks ('180d' for 'no purchase in "
        "the 180 days after the cutoff'). A split by time then purges training rows whose "
        "outcome window reaches into the validation period, and validation rows whose "
        "window reaches into the test period; the card counts them.",
    )

    @field_validator("horizon")
    @classmethod
    def _horizon(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v


class TreatmentConfig(Model):
    """A campaign on a churn project's customers (uplift beside the churn model): each
    assignment row (``source``, with the customers' entity key and an ``event_time``: when
    it was sent) is joined to the customer's features of the latest label time at or
    before the send time (an as-of join backward), so no feature sees the campaign. The
    outcome is observed after the send. A randomised table with no times, or a campaign
    on its own: ``insight init --from campaign.csv --treatment COL --control VALUE
    --outcome COL`` (a targeting project, engine.config.target)."""

    source: str
    column: str
    outcome: str
    control: str | None = Field(
        default=None,
        description="The treatment column's value of the control arm ('No E-Mail'); every "
        "other value is treated. Default: the column holds 0/1 (or false/true).",
    )


class BusinessConfig(Model):
    """What a decision is worth: the report's ROI (NannyML's business-value matrix, for a
    retention campaign). No value is assumed: without all three numbers the report shows no
    ROI and says which to set. A flagged customer is contacted (``contact_cost``); a contacted
    customer who would have churned is kept with probability ``save_rate`` and is then worth
    ``retained_value``. ROI = (TP x save_rate x retained_value - contacts x contact_cost) /
    (contacts x contact_cost)."""

    retained_value: float | None = Field(
        default=None, ge=0, description="Value of a kept customer."
    )
    contact_cost: float | None = Field(default=None, gt=0, description="Cost of one contact.")
    save_rate: float | None = Field(
        default=None, ge=0, le=1, description="Share of contacted would-be churners kept."
    )
    currency: str = Field(default="EUR", max_length=8)
    inventory: InventoryConfig | None = Field(
        default=None, description="The stock policy the demand forecast feeds (forecast:)."
    )

    @model_validator(mode="after")
    def _all_or_none(self) -> BusinessConfig:
        given = [
            k
            for k in ("retained_value", "contact_cost", "save_rate")
            if getattr(self, k) is not None
        ]
        if given and len(given) < 3:
            missing = sorted({"retained_value", "contact_cost", "save_rate"} - set(given))
            raise ValueError(
                f"business: {', '.join(given)} given without {', '.join(missing)}; the ROI needs "
                "all three. Fix: set them all (your own numbers), or none (no ROI is shown)."
            )
        return self

    @property
    def is_set(self) -> bool:
        """Whether the project file gives the numbers an ROI needs (none are assumed)."""
        return None not in (self.retained_value, self.contact_cost, self.save_rate)


class SampleConfig(Model):
    """Synthetic data the engine generates for this project (``insight data generate``)."""

    generator: Literal["retail"] = "retail"
    customers: int = Field(default=4000, ge=50, le=50_000_000)
    days: int = Field(default=300, ge=120, le=3650)
    seed: int = 7
    output: str = "{workspace}/data/retail"


class FeaturesConfig(Model):
    views: list[FeatureView] = Field(min_length=1)
    spark_master: str = "local[2]"
    spark_driver_memory: str = "2g"
    shuffle_partitions: int = Field(default=4, ge=1)


class AutoscalingConfig(Model):
    """Replicas scale on ongoing requests per replica (Ray Serve's autoscaler)."""

    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=4, gt=0)
    upscale_delay_s: float = Field(default=3, ge=0)
    downscale_delay_s: float = Field(default=15, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self


class ServeConfig(Model):
    host: str = "127.0.0.1"
    proxy_location: Literal["HeadOnly", "EveryNode", "Disabled"] = Field(
        default="HeadOnly",
        description="Where Serve runs HTTP proxies: the head only (one address to call, "
        "what a RayService's head service exposes) or every node (behind a load balancer).",
    )
    port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port.")
    route_prefix: str = "/"
    threshold: float = Field(default=0.5, gt=0, lt=1)
    max_rows_per_request: int = Field(default=1000, ge=1)
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    max_ongoing_requests: int = Field(
        default=128,
        ge=1,
        description="Per replica. Size it above the concurrency you expect: when every "
        "replica is full the proxy backs off and throughput collapses (bench_serve: 0.24x at "
        "4x an undersized limit). Autoscaling acts on target_ongoing_requests, not this.",
    )
    replica_cpus: float = Field(default=0.25, gt=0)
    batching: bool = True
    max_batch_size: int = Field(default=32, ge=1)
    batch_wait_timeout_s: float = Field(default=0.002, ge=0)
    challenger_percent: float = Field(
        default=0.0, ge=0, le=100, description="Share of entities the challenger answers."
    )
    shadow: bool = Field(
        default=False, description="Challenger scores every row; champion answers."
    )
    audit_inputs: Literal["values", "hash"] = "values"
    audit_fsync: bool = False
    audit_format: Literal["columnar", "jsonl"] = Field(
        default="columnar",
        description="How served decisions are logged: 'columnar' (audit format 3, Arrow "
        "record batches in hash-chained frames, read at memory speed by the monitor) or "
        "'jsonl' (format 2, JSON lines). Both verify and read the same way.",
    )
    admin_token_env: str = "INSIGHT_ADMIN_TOKEN"


class DriftConfig(Model):
    psi_bins: int = Field(default=10, ge=2, le=1000)
    psi_threshold: float = Field(default=0.2, gt=0)
    fdr: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="False discovery rate of the drift tests (KS, chi-square), Benjamini-"
        "Hochberg across the features compared: the one rule of `insight drift` and "
        "`insight monitor`.",
    )
    js_threshold: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Categorical: Jensen-Shannon distance that is material.",
    )
    current_from: dt.date | None = Field(
        default=None, description="Label times from this date form the current window."
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "ks_alpha" in data:
            raise ValueError(
                "drift.ks_alpha was replaced by drift.fdr: drift tests are now judged by "
                "Benjamini-Hochberg across features, in `insight drift` and `insight monitor` "
                f"alike. Fix: write fdr: {data['ks_alpha']} (or 0.05) instead of ks_alpha."
            )
        return data


class ProjectConfig(Model):
    """The whole project file. Use :meth:`load`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    workspace: str = ".insight"
    sources: dict[str, SourceConfig]
    entities: dict[str, EntityConfig]
    label: LabelConfig
    treatment: TreatmentConfig | None = None
    sensitive: list[str] = Field(default_factory=list)
    pii: list[str] = Field(default_factory=list)
    sample: SampleConfig | None = None
    features: FeaturesConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    business: BusinessConfig = Field(default_factory=BusinessConfig)
    schedule: ScheduleConfig | None = Field(
        default=None, description="Ingest, features and train on a cadence (insight schedule)."
    )
    forecast: ForecastConfig | None = Field(
        default=None, description="The demand-forecasting task (engine.config.forecast)."
    )
    cluster: ClusterConfig = Field(
        default_factory=ClusterConfig,
        description="Where each part runs (profiles), or a path to a YAML file with them.",
    )
    governance: GovernanceConfig = Field(
        default_factory=GovernanceConfig,
        description="Consent by purpose and policy files (engine.config.governance).",
    )
    # Set by load(): folder of the project file, for relative paths. Not part of the YAML.
    base_dir: str = Field(default=".", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _source_formats(cls, data: Any) -> Any:
        """A source without ``format`` takes it from its path: the extension (.csv .tsv .txt
        are CSV; .parquet .pq and folders are Parquet), else the file's first bytes (Parquet
        files begin with 'PAR1'). A CSV path read as Parquet crashed validate with 'Parquet
        magic bytes not found' (test_a_csv_source_without_format_is_read_as_csv)."""
        return complete_sources(data)

    @model_validator(mode="before")
    @classmethod
    def _cluster_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("cluster"), str):
            data = {**data, "cluster": load_cluster(data["cluster"], data.get("base_dir", "."))}
        return data

    @model_validator(mode="after")
    def _cross_refs(self) -> ProjectConfig:
        _check_refs(self)
        _check_roles(self, _view_names(self))
        if self.treatment is not None:  # after the views: their errors are the more basic
            _check_treatment(self)
        return self

    def feature_names(self) -> list[str]:
        return [f for v in self.features.views for f in v.feature_names()]

    def pii_columns(self, source: str) -> list[str]:
        return [e.split(".", 1)[1] for e in self.pii if e.split(".", 1)[0] == source]

    # ---- loading ---------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> ProjectConfig:
        """Load and validate a project file; raise :class:`ConfigError` naming the YAML path.

        Examples
        --------
        >>> cfg = ProjectConfig.load("examples/retail/insight.yaml")  # doctest: +SKIP
        >>> cfg.label.column  # doctest: +SKIP
        'churned'
        """
        p = Path(path)
        if not p.is_file():
            raise ConfigError(
                f"project file '{p}' does not exist. Fix: pass --project PATH to an insight.yaml "
                "(the example is examples/retail/insight.yaml)."
            )
        raw = read_yaml(p)
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{p}: the top level must be a mapping with keys such as 'name', 'sources', "
                f"'entities', 'label'; got {type(raw).__name__}."
            )
        raw["base_dir"] = str(p.resolve().parent)
        if "forecast" in raw and "label" not in raw:
            raise ConfigError(
                f"{p} is a forecasting project ('forecast:' and no 'label:'): this command "
                "needs a churn label. Fix: use `insight forecast train` / `insight forecast` "
                "with this file, or add a 'label:' block for the churn task."
            )
        if "target" in raw and "label" not in raw:
            raise ConfigError(
                f"{p} is a targeting project ('target:' and no 'label:'): this command "
                "needs a churn label. Fix: use `insight target train` / `insight target "
                "decide` with this file, or add a 'label:' block for the churn task."
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(p, exc)) from None

    # ---- paths -----------------------------------------------------------------------

    def workspace_root(self, override: str | Path | None = None) -> Path:
        """Workspace root: an explicit override, else ``workspace`` relative to the cwd."""
        return Path(override if override is not None else self.workspace).resolve()

    def resolve_path(self, path: str, workspace: Path) -> Path:
        """Expand ``{workspace}`` and make a source path absolute (relative to the file)."""
        return resolve_source_path(self.base_dir, path, workspace)

    def entity_key(self, entity: str) -> str:
        return self.entities[entity].key


def _check_refs(cfg: ProjectConfig) -> None:
    """Sources, entities, the label and the treatment name what exists."""
    for name, src in cfg.sources.items():
        if src.entity is not None and src.entity not in cfg.entities:
            raise _ref_error(f"sources.{name}.entity", src.entity, "entity", cfg.entities)
    if cfg.label.source not in cfg.sources:
        raise _ref_error("label.source", cfg.label.source, "source", cfg.sources)
    if cfg.treatment is not None and cfg.treatment.source not in cfg.sources:
        raise _ref_error("treatment.source", cfg.treatment.source, "source", cfg.sources)
    consent = cfg.governance.consent
    if consent is not None:
        if consent.source not in cfg.sources:
            raise _ref_error("governance.consent.source", consent.source, "source", cfg.sources)
        for what in ("subject", "purpose", "status", "time"):
            _check_declared(
                cfg, f"governance.consent.{what}", consent.source, getattr(consent, what)
            )
    _check_declared(cfg, "label.column", cfg.label.source, cfg.label.column)
    if cfg.label.horizon is not None and cfg.label.event_time is None:
        raise ValueError(
            "label.horizon: only for labels with a time (label.event_time): a snapshot "
            "table's labels share one time and are split at random. Fix: remove "
            "label.horizon, or set label.event_time."
        )
    if cfg.label.event_time is not None:
        _check_declared(cfg, "label.event_time", cfg.label.source, cfg.label.event_time)
        if cfg.label.as_of is not None:
            raise ValueError(
                "label.as_of: only for labels without event_time (each label row has its "
                "own time here). Fix: remove label.as_of."
            )


def _check_treatment(cfg: ProjectConfig) -> None:
    """What the campaign join needs, checked when the file loads (so by `insight validate`
    and before any search), not after the churn search has run."""
    tr = cfg.treatment
    assert tr is not None
    _check_declared(cfg, "treatment.column", tr.source, tr.column)
    _check_declared(cfg, "treatment.outcome", tr.source, tr.outcome)
    if not cfg.train.uplift_learners:
        return
    src = cfg.sources[tr.source]
    if src.entity is None:
        raise ValueError(
            f"treatment.source '{tr.source}' names no entity; the join to the customers' "
            f"features needs their key. Fix: add sources.{tr.source}.entity, or set "
            "train.uplift_learners: [] to skip uplift."
        )
    if src.event_time is None:
        raise ValueError(
            f"treatment.source '{tr.source}' has no event_time: each assignment joins the "
            "customer's features as of its send time, and this table says none. Fix: set "
            f"sources.{tr.source}.event_time to the send-time column; for a randomised "
            "table without times, make it a targeting project (insight init --from TABLE "
            "--treatment COLUMN --control VALUE --outcome COLUMN)."
        )
    if cfg.label.event_time is None:
        raise ValueError(
            "treatment: uplift joins each assignment to the features as of its send time, "
            "and the labels have no time. Fix: set label.event_time, or "
            "train.uplift_learners: [], or make the campaign a targeting project (insight "
            "init --from TABLE --treatment COLUMN --control VALUE --outcome COLUMN)."
        )


def _view_names(cfg: ProjectConfig) -> dict[str, str]:
    """Every view's source and columns exist; feature name -> its view (names unique)."""
    names: dict[str, str] = {}
    for i, view in enumerate(cfg.features.views):
        if view.source not in cfg.sources:
            raise _ref_error(f"features.views.{i}.source", view.source, "source", cfg.sources)
        if cfg.sources[view.source].entity is None:
            raise ValueError(
                f"features.views.{i}.source: source '{view.source}' declares no entity. "
                "Fix: add 'entity:' to the source so its rows can be keyed."
            )
        static = cfg.sources[view.source].event_time is None
        if not static and cfg.label.event_time is None and cfg.label.as_of is None:
            raise ValueError(
                f"features.views.{i} ('{view.name}') reads source '{view.source}', which "
                "has event times, but the labels have no time to take features as of. "
                "Fix: set label.event_time, or label.as_of to when the labels were "
                "observed (features then use only events before it)."
            )
        if static and (view.aggregates or view.latest or view.recency or view.ttl):
            raise ValueError(
                f"features.views.{i} ('{view.name}'): aggregates/latest/recency/ttl need an "
                f"event-time column, and source '{view.source}' has none. Fix: set "
                f"sources.{view.source}.event_time or keep only 'columns'."
            )
        for col in view.columns + list(view.latest):
            _check_declared(cfg, f"features.views.{i}.columns", view.source, col)
        for feat in view.feature_names():
            if feat in names:
                raise ValueError(
                    f"features.views.{i}: feature '{feat}' is also produced by view "
                    f"'{names[feat]}'. Fix: rename one of them."
                )
            names[feat] = view.name
    for reserved, what in ((cfg.label.column, "the label column"),):
        if reserved in names:
            raise ValueError(
                f"features: '{reserved}' is {what}; a model must not take it as an input. "
                f"Fix: remove it from view '{names[reserved]}'."
            )
    return names


def _check_roles(cfg: ProjectConfig, names: dict[str, str]) -> None:
    """Rules, sensitive attributes and PII name features and columns that exist."""
    for rule in cfg.monitor.rules:
        unknown = [f for f in rule.features or [] if f not in names]
        if unknown:
            raise ValueError(
                f"monitor.rules '{rule.name}': unknown feature(s) {unknown} (features: "
                f"{', '.join(names)}). Fix: name features the views produce."
            )
        if rule.attribute is not None and rule.attribute not in cfg.sensitive:
            raise ValueError(
                f"monitor.rules '{rule.name}': attribute '{rule.attribute}' is not a "
                f"sensitive attribute (sensitive: {cfg.sensitive or 'none'}). Fix: add it "
                "to 'sensitive:' or name one of them."
            )
    for col in cfg.sensitive:
        if col not in names:
            raise ValueError(
                f"sensitive: '{col}' is not a feature of any view (features: "
                f"{', '.join(names)}). Fix: add it to a view's columns."
            )
    for entry in cfg.pii:
        src_name, _, col = entry.partition(".")
        if src_name not in cfg.sources or not col:
            raise ValueError(
                f"pii: '{entry}' must be 'source.column' with a declared source "
                f"(sources: {', '.join(cfg.sources)})."
            )
        _check_declared(cfg, "pii", src_name, col)


def _ref_error(where: str, value: str, kind: str, known: dict[str, Any]) -> ValueError:
    choices = ", ".join(sorted(known)) or "(none declared)"
    return ValueError(
        f"{where}: unknown {kind} '{value}' (declared: {choices}). "
        f"Fix: declare it under '{kind}s:' or use one of the declared names."
    )


def _check_declared(cfg: ProjectConfig, where: str, source: str, column: str) -> None:
    src = cfg.sources[source]
    cols = src.columns
    if cols and column not in cols and column != src.row_id:
        raise ValueError(
            f"{where}: '{column}' is not a declared column of source '{source}' "
            f"(columns: {', '.join(cols)}). Fix: use one of them or declare it."
        )
