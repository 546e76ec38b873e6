"""Keys that must be unique where the engine joins on them.

The training table has one row per label row. Two joins could multiply rows: a static
view's source joined on the key (``k`` rows of one key give each label row of that key
``k`` copies), and label rows that repeat one (key, label time). Both are caught before any
Spark session starts (:func:`duplicate_keys`, run by ``insight validate`` and by the build's
plan), naming the source, the key, the largest group and a fix; the build then asserts that
its table has exactly the label rows it was given (:func:`largest_group` names the culprit
where a cast made two keys one, e.g. ``"01"`` and ``"1"`` read as the number 1).

Event sources (with an event time) are not checked here: several events of one entity are
what they hold, and events at one time are the view's ``ties`` rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from engine.config.project import ProjectConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class Duplicates:
    source: str
    columns: list[str]
    rows: int  # rows that repeat a key already seen
    groups: int  # keys seen more than once
    largest: dict[str, str]  # the key of the largest group
    largest_rows: int

    def message(self, why: str) -> str:
        cols = " and ".join(f"'{c}'" for c in self.columns)
        at = ", ".join(f"{k}={v}" for k, v in self.largest.items())
        return (
            f"source '{self.source}': {cols} must be unique {why}, but {self.rows:,} rows repeat "
            f"one already seen ({self.groups:,} repeated key(s); the largest group: {at}, "
            f"{self.largest_rows:,} rows)."
        )


def _cast_like_build(cfg: ProjectConfig, source: str, col: str, values: pd.Series) -> pd.Series:
    """A CSV key declared as a number is compared as the build reads it (``"01"`` is 1)."""
    src = cfg.sources[source]
    if src.format == "csv" and src.columns.get(col) in ("int", "double"):
        return pd.to_numeric(values.astype("string").str.strip(), errors="coerce")
    return values


def find_duplicates(
    cfg: ProjectConfig, source: str, workspace: Path, columns: list[str]
) -> Duplicates | None:
    from engine.data.sources import read_columns

    arrays = read_columns(cfg, source, workspace, columns)
    df = pd.DataFrame({c: _cast_like_build(cfg, source, c, arrays[c].to_pandas()) for c in columns})
    sizes = df.groupby(columns, dropna=False, sort=False).size()
    repeated = sizes[sizes > 1]
    if repeated.empty:
        return None
    top = repeated.idxmax()
    values = top if isinstance(top, tuple) else (top,)
    return Duplicates(
        source=source,
        columns=columns,
        rows=int(repeated.sum() - len(repeated)),
        groups=len(repeated),
        largest={c: str(v) for c, v in zip(columns, values, strict=True)},
        largest_rows=int(repeated.max()),
    )


def duplicate_keys(cfg: ProjectConfig, workspace: Path, names: list[str]) -> list[str]:
    """Problems (one line each, with a fix) for keys that repeat where a join needs them
    unique: the label rows' (key, label time), and the key of every static view's source."""
    problems: list[str] = []
    lab = cfg.label
    lab_src = cfg.sources[lab.source]
    if lab.source in names and lab_src.entity is not None:
        key = cfg.entity_key(lab_src.entity)
        if key != lab_src.row_id:
            cols = [key] + ([lab.event_time] if lab.event_time else [])
            d = find_duplicates(cfg, lab.source, workspace, cols)
            if d is not None:
                per = "per label time" if lab.event_time else "in the label rows"
                problems.append(
                    d.message(per)
                    + " Each would be trained on, and counted, more than once. Fix: remove the "
                    f"repeated rows from the file, or name a key unique {per} (a table without "
                    f"one can drop the key and set sources.{lab.source}.row_id: row_id, which "
                    "gives every row its own id)."
                )
    static = {
        v.source
        for v in cfg.features.views
        if cfg.sources[v.source].event_time is None and v.source in names
    }
    for name in sorted(static):
        src = cfg.sources[name]
        if src.entity is None:
            continue
        key = cfg.entity_key(src.entity)
        if key == src.row_id or (name == lab.source and not lab.event_time):
            continue  # a generated id is unique; the label rows' own check covers this one
        d = find_duplicates(cfg, name, workspace, [key])
        if d is not None:
            problems.append(
                d.message("in a table without event time")
                + f" A view joins it on '{key}', so each label row of that key would be "
                f"copied {d.largest_rows} times. Fix: keep one row per '{key}' in the file, or "
                f"declare sources.{name}.event_time so the latest row at each label time is taken."
            )
    return problems


def largest_group(df: DataFrame, columns: list[str]) -> tuple[dict[str, str], int] | None:
    """The most repeated value of ``columns`` in a Spark frame and its count, or None."""
    from pyspark.sql import functions as F

    row = (
        df.groupBy(*columns)
        .count()
        .where(F.col("count") > 1)
        .orderBy(F.col("count").desc())
        .limit(1)
        .first()
    )
    if row is None:
        return None
    return {c: str(row[c]) for c in columns}, int(row["count"])
