"""Feature views: the spec (data), separate from the Spark code that executes it.

A view reads one source of one entity and yields, for each (entity, label_time):

- ``columns``: plain columns. From a static source (no event time) they are joined on the
  key; from an event source they are the latest values at or before the label time.
- ``latest``: ``{column: feature_name}``: latest value of an event source under a new name.
- ``aggregates``: count/sum/mean/min/max/count_distinct over trailing windows
  ``(label_time - w, label_time]``, optionally over a SQL expression and with a filter.
- ``recency``: name of a feature holding days since the latest event.
- ``derived``: ``{name: SQL expression}`` evaluated on the label row after the joins
  (``label_time`` and the view's columns are in scope).
- ``ttl``: latest values older than this at the label time count as missing.
- ``ties``: which row's values are the latest when an entity has several events at one time
  (``last_row`` in the source by default; ``max``, ``min`` or ``error``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from engine.config.base import Model

_DURATION = re.compile(r"^(\d+)([dhm])$")
_NAME = r"^[A-Za-z_][A-Za-z0-9_{}]*$"


def parse_duration(text: str) -> dt.timedelta:
    """'30d' -> 30 days; also 'h' (hours) and 'm' (minutes)."""
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(
            f"'{text}' is not a duration. Fix: write a positive count and a unit, e.g. '7d', "
            "'12h' or '90m'."
        )
    n, unit = int(m.group(1)), m.group(2)
    return {"d": dt.timedelta(days=n), "h": dt.timedelta(hours=n), "m": dt.timedelta(minutes=n)}[
        unit
    ]


class Aggregate(Model):
    name: str = Field(pattern=_NAME, description="Feature name; '{w}' becomes the window.")
    function: Literal["count", "sum", "mean", "min", "max", "count_distinct"]
    column: str | None = None
    expr: str | None = Field(default=None, description="Spark SQL expression instead of column.")
    filter: str | None = Field(default=None, description="Spark SQL predicate on source rows.")
    windows: list[str] = Field(min_length=1)

    @field_validator("windows")
    @classmethod
    def _durations(cls, v: list[str]) -> list[str]:
        for w in v:
            parse_duration(w)
        return v

    @model_validator(mode="after")
    def _input(self) -> Aggregate:
        if self.column and self.expr:
            raise ValueError("give either 'column' or 'expr', not both")
        if self.function != "count" and not (self.column or self.expr):
            raise ValueError(f"function '{self.function}' needs 'column' or 'expr'")
        if len(self.windows) > 1 and "{w}" not in self.name:
            raise ValueError(
                f"name '{self.name}' is used for {len(self.windows)} windows. "
                "Fix: put '{w}' in the name, e.g. 'amount_sum_{w}'."
            )
        return self

    def feature_names(self) -> list[tuple[str, str]]:
        return [(self.name.replace("{w}", w), w) for w in self.windows]


class Expectation(Model):
    """A check on one feature column of the built table, run before the snapshot commits."""

    column: str
    max_null_rate: float | None = Field(default=None, ge=0, le=1)
    min: float | None = None
    max: float | None = None
    dtype: Literal["double", "int", "bigint", "string", "timestamp_ntz", "boolean"] | None = None

    @model_validator(mode="after")
    def _something(self) -> Expectation:
        if self.max_null_rate is None and self.min is None and self.max is None and not self.dtype:
            raise ValueError(
                f"expectation on '{self.column}' checks nothing. Fix: set max_null_rate, "
                "min, max or dtype."
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max} for '{self.column}'")
        return self


class FeatureView(Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    source: str
    columns: list[str] = Field(default_factory=list)
    latest: dict[str, str] = Field(default_factory=dict)
    aggregates: list[Aggregate] = Field(default_factory=list)
    recency: str | None = None
    derived: dict[str, str] = Field(default_factory=dict)
    ttl: str | None = None
    ties: Literal["last_row", "max", "min", "error"] = Field(
        default="last_row",
        description="Latest values when an entity has several events at one time: the row "
        "that comes last in the source (last_row), the row whose values sort last (max) or "
        "first (min), or stop the build naming them (error). The snapshot, the online table "
        "and /predict's entity lookup use the same rule.",
    )
    expect: list[Expectation] = Field(default_factory=list)

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @model_validator(mode="after")
    def _expect_known(self) -> FeatureView:
        names = self.feature_names()
        for e in self.expect:
            if e.column not in names:
                raise ValueError(
                    f"view '{self.name}': expectation on '{e.column}', which the view does not "
                    f"produce (features: {', '.join(names)}). Fix: use one of them."
                )
        return self

    def source_columns(self) -> dict[str, str]:
        """Source columns the view reads, with the role that constrains their type."""
        need: dict[str, str] = {c: "any" for c in self.columns}
        need |= {c: "any" for c in self.latest}
        for a in self.aggregates:
            if a.column and a.function in {"sum", "mean"}:
                need[a.column] = "numeric"
            elif a.column and a.function in {"min", "max"}:
                need.setdefault(a.column, "orderable")
            elif a.column:
                need.setdefault(a.column, "any")
        return need

    def feature_names(self) -> list[str]:
        names = list(self.columns) + list(self.latest.values())
        names += [n for a in self.aggregates for n, _ in a.feature_names()]
        names += [self.recency] if self.recency else []
        names += list(self.derived)
        return names

    def spec_hash(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
