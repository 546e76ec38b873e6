"""The forecasting task of a project file (``forecast:``): a series table, its keys, time
and target, how gaps are read, which columns are known in advance or static, the
rolling-origin backtest and the model families.

A file with ``forecast:`` and no ``label:`` is a forecasting project
(:class:`ForecastProject`); a file with both holds both tasks, and each loader reads its
own part (the churn loader, :class:`engine.config.project.ProjectConfig`, accepts
``forecast:`` too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from engine.config.base import IDENT, Model, read_project_file, resolve_source_path
from engine.config.cluster import ClusterConfig, load_cluster
from engine.config.ingest import ScheduleConfig
from engine.config.monitor import MonitorConfig
from engine.config.source import SourceConfig, complete_sources
from engine.errors import ConfigError, format_validation_error

# statsforecast models, one local model per series (engine.forecast.models)
LOCAL_FAMILIES = ("seasonal_naive", "naive", "auto_ets", "auto_arima", "theta", "croston")


class BacktestConfig(Model):
    """Rolling-origin backtest: ``windows`` origins, ``step`` periods apart, the last
    ending at the end of the history; each forecasts ``horizon`` periods."""

    windows: int = Field(default=3, ge=2, le=52, description="Backtest origins per series.")
    step: int | None = Field(
        default=None, ge=1, description="Periods between origins (default: the horizon)."
    )
    holdout: int = Field(
        default=1,
        ge=1,
        description="The latest windows held out: the per-series choice and the intervals "
        "are made on the earlier windows and measured on these.",
    )


class InventoryConfig(Model):
    """``business.inventory``: the stock policy the forecast feeds (periodic review,
    order-up-to; engine.forecast.inventory)."""

    lead_time: int = Field(ge=0, description="Periods from order to arrival.")
    review_period: int = Field(default=1, ge=1, description="Periods between orders.")
    service_level: float | None = Field(
        default=None, gt=0.5, lt=1, description="Target cycle service level (e.g. 0.95)."
    )
    holding_cost: float | None = Field(default=None, gt=0, description="Per unit per period.")
    stockout_cost: float | None = Field(default=None, gt=0, description="Per unit short.")

    @model_validator(mode="after")
    def _target(self) -> InventoryConfig:
        costs = self.holding_cost is not None and self.stockout_cost is not None
        if (self.service_level is None) == (not costs):
            raise ValueError(
                "inventory needs service_level, or holding_cost and stockout_cost (their "
                "critical ratio sets it), not both."
            )
        return self

    @property
    def target(self) -> float:
        if self.service_level is not None:
            return self.service_level
        assert self.holding_cost is not None and self.stockout_cost is not None
        return self.stockout_cost / (self.stockout_cost + self.holding_cost)


class GlobalModelConfig(Model):
    """``forecast.global_model``: one gradient-boosted model over every series
    (mlforecast's recursive forecasts with LightGBM), on point-in-time features built by
    Spark (engine.forecast.features), its settings searched by Ray Tune on the backtest
    windows before the held-out one(s). It competes per series like any family."""

    enabled: bool = Field(default=True, description="Add the global model as a candidate.")
    lags: list[int] = Field(
        default_factory=list,
        description="Target lags (default: 1-4 and the season length where it is 5-104).",
    )
    windows: list[int] = Field(
        default_factory=lambda: [4],
        description="Rolling mean and standard deviation windows over the previous periods.",
    )
    trials: int = Field(
        default=4, ge=1, le=64, description="LightGBM settings tried by the Tune search."
    )
    seed: int = Field(default=0, description="Seed of the search and of LightGBM.")

    @field_validator("lags", "windows")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(k < 1 or k > 366 for k in v):
            raise ValueError(f"{v}: each between 1 and 366 periods.")
        return sorted(set(v))


class ForecastConfig(Model):
    """``forecast:`` of the project file."""

    source: str = Field(description="The series table (a source of this file).")
    series: list[str] = Field(min_length=1, description="Key columns naming one series.")
    time: str = Field(pattern=IDENT, description="The period column.")
    target: str = Field(pattern=IDENT, description="The quantity to forecast.")
    freq: str = Field(description="Pandas frequency of the periods (W-MON, D, MS...).")
    horizon: int = Field(ge=1, le=366, description="Periods ahead to forecast.")
    season_length: int = Field(default=1, ge=1, description="Periods in a season (52: weekly).")
    gaps: Literal["zero", "missing"] = Field(
        default="zero",
        description="A period absent from the table: zero demand (recorded as absent) or "
        "not recorded (missing: left out, not zero).",
    )
    known: list[str] = Field(
        default_factory=list, description="Columns known in advance (price, promotion...)."
    )
    static: list[str] = Field(
        default_factory=list, description="Per-series attributes (store size...)."
    )
    families: list[str] = Field(
        default_factory=lambda: ["seasonal_naive", "auto_ets", "auto_arima", "croston"],
        description=f"Local model families to compare per series: {', '.join(LOCAL_FAMILIES)}.",
    )
    exogenous: Literal["regression", "none"] = Field(
        default="regression",
        description="With known columns: each local family also runs on the residuals of a "
        "per-series regression on them (the '+x' variants), so every family can use them.",
    )
    ensemble: bool = Field(
        default=True, description="Also consider the mean of the families per series."
    )
    choice_margin: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="A series leaves the candidate best over all series only for one that "
        "beats it on that series by more than this share of MASE (0: pure per-series; "
        "unset: chosen by leave-one-window-out cross-validation).",
    )
    hierarchy: list[str] = Field(
        default_factory=list,
        description="Columns that group the series, top down (series keys or static "
        "columns, e.g. [category]): levels total, each prefix, the series; forecasts are "
        "reconciled across them (engine.forecast.hierarchy).",
    )
    global_model: GlobalModelConfig = Field(default_factory=GlobalModelConfig)
    monitor_by: list[str] | None = Field(
        default=None,
        description="Columns (series keys or static) whose values group the series in the "
        "monitor's accuracy report, beside 'all' (unset: the hierarchy's top column, else "
        "the first series key when there are several).",
    )
    levels: list[int] = Field(default_factory=lambda: [80, 95])
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    batch_series: int = Field(
        default=200, ge=1, description="Series per Ray task (bounds each task's memory)."
    )
    model_name: str = Field(default="demand", pattern=r"^[A-Za-z0-9_.-]+$")

    @field_validator("families")
    @classmethod
    def _families(cls, v: list[str]) -> list[str]:
        bad = [f for f in v if f not in LOCAL_FAMILIES]
        if bad or not v:
            raise ValueError(
                f"unknown model famil{'y' if len(bad) == 1 else 'ies'} {bad or v}. Fix: "
                f"choose from {', '.join(LOCAL_FAMILIES)}."
            )
        return v

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[int]) -> list[int]:
        if not v or any(not 50 <= x <= 99 for x in v):
            raise ValueError(f"interval levels {v}: each between 50 and 99 (e.g. [80, 95]).")
        return sorted(set(v))

    @field_validator("freq")
    @classmethod
    def _freq(cls, v: str) -> str:
        import pandas as pd

        try:
            pd.tseries.frequencies.to_offset(v)
        except ValueError:
            raise ValueError(
                f"'{v}' is not a pandas frequency. Fix: e.g. W-MON (weeks starting Monday), "
                "D (days), MS (month starts)."
            ) from None
        return v

    @model_validator(mode="after")
    def _roles(self) -> ForecastConfig:
        roles: dict[str, str] = {}
        for role, cols in (
            ("series", self.series),
            ("time", [self.time]),
            ("target", [self.target]),
            ("known", self.known),
            ("static", self.static),
        ):
            for c in cols:
                if c in roles:
                    raise ValueError(f"column '{c}' is both {roles[c]} and {role}: one role each.")
                roles[c] = role
        bad = [c for c in self.hierarchy if c not in self.series and c not in self.static]
        if bad or len(set(self.hierarchy)) != len(self.hierarchy):
            raise ValueError(
                f"hierarchy {self.hierarchy}: {bad or 'a column twice'}. Fix: list series "
                f"keys ({self.series}) or static columns ({self.static}), top down, once each."
            )
        bad = [c for c in self.monitor_by or [] if c not in self.series and c not in self.static]
        if bad:
            raise ValueError(
                f"monitor_by {self.monitor_by}: {bad} is not a column of the series. Fix: "
                f"series keys ({self.series}) or static columns ({self.static})."
            )
        if self.backtest.holdout >= self.backtest.windows:
            raise ValueError(
                f"backtest.holdout {self.backtest.holdout} must be below backtest.windows "
                f"{self.backtest.windows}: the earlier windows choose the models and "
                "calibrate the intervals."
            )
        return self

    @property
    def step(self) -> int:
        return self.backtest.step or self.horizon

    @property
    def groups_by(self) -> list[str]:
        """The columns the monitor groups series by (see ``monitor_by``)."""
        if self.monitor_by is not None:
            return self.monitor_by
        if self.hierarchy:
            return self.hierarchy[:1]
        return self.series[:1] if len(self.series) > 1 else []


# Keys of a project file that belong to the churn task (read by ProjectConfig, not here).
_OTHER_TASK = {
    "entities",
    "label",
    "treatment",
    "sensitive",
    "pii",
    "sample",
    "features",
    "train",
    "serve",
    "drift",
    "business",
}


class ForecastProject(Model):
    """The forecasting part of a project file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    workspace: str = ".insight"
    sources: dict[str, SourceConfig]
    forecast: ForecastConfig
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    spark_master: str = Field(
        default="local[2]",
        description="Spark master of the feature snapshot (a cluster profile's spark: sets it).",
    )
    monitor: MonitorConfig = Field(
        default_factory=MonitorConfig,
        description="Alert rules on forecast accuracy (forecast.* statistics), sinks, route.",
    )
    inventory: InventoryConfig | None = Field(
        default=None, description="From the file's business.inventory."
    )
    schedule: ScheduleConfig | None = None
    base_dir: str = Field(default=".", exclude=True)

    @model_validator(mode="after")
    def _source(self) -> ForecastProject:
        if self.forecast.source not in self.sources:
            raise ValueError(
                f"forecast.source '{self.forecast.source}' is not a source of this file "
                f"(sources: {', '.join(self.sources)})."
            )
        return self

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: Path | str = "project file") -> ForecastProject:
        if "forecast" not in raw:
            raise ConfigError(
                f"{where}: no 'forecast:' block. Fix: add one (insight init --from TABLE "
                "--target COLUMN --time COLUMN --series KEYS writes it)."
            )
        mine = complete_sources({k: v for k, v in raw.items() if k not in _OTHER_TASK})
        assert isinstance(mine, dict)
        business = raw.get("business")
        if isinstance(business, dict) and business.get("inventory") is not None:
            mine["inventory"] = business["inventory"]
        if isinstance(mine.get("cluster"), str):
            mine["cluster"] = load_cluster(mine["cluster"], str(raw.get("base_dir", ".")))
        try:
            return cls.model_validate(mine)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(where, exc)) from None

    @classmethod
    def load(cls, path: str | Path) -> ForecastProject:
        p, raw = read_project_file(path)
        return cls.from_dict(raw, p)

    def resolve_path(self, path: str, workspace: Path) -> Path:
        return resolve_source_path(self.base_dir, path, workspace)
