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
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Aggregate(_Model):
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


class FeatureView(_Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    source: str
    columns: list[str] = Field(default_factory=list)
    latest: dict[str, str] = Field(default_factory=dict)
    aggregates: list[Aggregate] = Field(default_factory=list)
    recency: str | None = None
    derived: dict[str, str] = Field(default_factory=dict)
    ttl: str | None = None

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    def feature_names(self) -> list[str]:
        names = list(self.columns) + list(self.latest.values())
        names += [n for a in self.aggregates for n, _ in a.feature_names()]
        names += [self.recency] if self.recency else []
        names += list(self.derived)
        return names

    def spec_hash(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
