"""Labels as users have them: "Yes"/"No", true/false, 1/0, "churned"/"stayed".

The label column is read once (pyarrow, no Spark) before a build: its distinct values are
counted, the positive value is resolved (``label.positive``, else the usual spellings), and
anything that is not a binary label is a clear error naming the values. The build then maps
the positive value to 1, the other to 0, and drops (and counts) rows without a label.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.config.project import ProjectConfig
from engine.errors import ConfigError, DataError

# Positive spellings recognised without label.positive, by the pair of values present.
_KNOWN_PAIRS: list[tuple[set[str], str]] = [
    ({"yes", "no"}, "yes"),
    ({"y", "n"}, "y"),
    ({"true", "false"}, "true"),
    ({"t", "f"}, "t"),
    ({"1", "0"}, "1"),
    ({"1.0", "0.0"}, "1.0"),
    # as spreadsheets in other languages write them
    ({"ja", "nein"}, "ja"),
    ({"j", "n"}, "j"),
    ({"ja", "nee"}, "ja"),
    ({"oui", "non"}, "oui"),
    ({"si", "no"}, "si"),
    ({"sí", "no"}, "sí"),
    ({"sim", "não"}, "sim"),
    ({"wahr", "falsch"}, "wahr"),
    ({"vrai", "faux"}, "vrai"),
]


def normalize(value: Any) -> str:
    """How label values are compared: text, trimmed, lower case ("Yes " == "yes")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


@dataclass(frozen=True)
class LabelValues:
    column: str
    positive: str  # normalized
    negative: str | None  # normalized; None if only one value is present
    counts: dict[str, int]  # normalized value -> rows
    missing: int

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    @property
    def positive_rate(self) -> float:
        return self.counts.get(self.positive, 0) / self.rows if self.rows else float("nan")


def resolve(
    column: str,
    values: Counter[str],
    missing: int,
    declared: Any,
    option: str = "label.positive",
    what: str = "label column",
) -> LabelValues:
    """The positive and negative value of a binary label, or a DataError / ConfigError.
    ``option``: where the user sets the positive value (the project file's field, or
    ``insight init``'s ``--positive``), named by the fix."""
    shown = ", ".join(f"{v!r} ({n:,})" for v, n in values.most_common(8))
    if not values:
        raise DataError(
            f"{what} '{column}' has no values ({missing:,} rows are empty). "
            "Fix: point label.column at the column that holds the outcome."
        )
    if len(values) > 2:
        raise DataError(
            f"{what} '{column}' has {len(values)} distinct values ({shown}); a binary "
            "label has two. Fix: map it to two values in the source, or pick another column."
        )
    if declared is not None:
        pos = normalize(declared)
        if pos not in values:
            raise ConfigError(
                f"{option} is {declared!r}, which is not a value of '{column}' "
                f"(values: {shown}). Fix: set {option} to one of them."
            )
    else:
        present = set(values)
        pos = next((p for pair, p in _KNOWN_PAIRS if present <= pair and p in pair), "")
        if not pos or (len(present) == 1 and pos not in present):
            rare = values.most_common()[-1][0]
            fix = (
                f"pass {option} {rare!r}, or the other value"
                if option.startswith("--")
                else f"set {option} to it (e.g. {option}: {rare!r})"
            )
            raise ConfigError(
                f"{what} '{column}' holds {shown}: which one is the positive outcome? Fix: {fix}."
            )
    neg = next((v for v in values if v != pos), None)
    return LabelValues(column, pos, neg, dict(values), missing)


def read_label_values(cfg: ProjectConfig, workspace: Path) -> LabelValues:
    """Count the label column's values straight from the file (no Spark)."""
    from engine.data.sources import read_columns

    col = read_columns(cfg, cfg.label.source, workspace, [cfg.label.column])[cfg.label.column]
    return count_values(cfg.label.column, col, cfg.label.positive)


def count_values(column: str, col: pa.ChunkedArray, declared: Any) -> LabelValues:
    missing = col.null_count
    counts: Counter[str] = Counter()
    for v in col.drop_null().to_pylist():
        s = normalize(v)
        if s == "":
            missing += 1
        else:
            counts[s] += 1
    return resolve(column, counts, missing, declared)
