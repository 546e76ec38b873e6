"""Landing checks on Spark, set-based: each row check is a column of the pulled rows (an
``in_set`` is a join against the allowed values, not a list of literals; ``unique`` a
count over the key), so ten million allowed values cost one shuffle, not ten million
comparisons per row. Rows that fail any row check go to the quarantine, one line per
(row, failed check) with the value that failed (pandera's ``failure_cases``); the rest
land. Nulls fail only ``not_null`` (as in pandera: the other checks ignore missing values).
Dataset checks (row count against recent runs, freshness of the newest watermark) judge the
run as a whole.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config.ingest import ROW_CHECKS, CheckConfig
from engine.config.monitor import seconds
from engine.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

QUARANTINE_COLUMNS = ("check", "column", "failure_case", "row")


@dataclass
class CheckResult:
    name: str
    blocking: bool
    failed: int  # rows (row checks) or 1/0 (dataset checks)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.failed == 0


@dataclass
class Checked:
    good: DataFrame
    quarantine: DataFrame | None
    results: list[CheckResult] = field(default_factory=list)

    @property
    def blocked(self) -> list[CheckResult]:
        return [r for r in self.results if r.blocking and not r.ok]


def _allowed(
    spark: SparkSession, chk: CheckConfig, dtype: Any, base_dir: Path, source: str
) -> DataFrame:
    """The allowed values of an ``in_set`` as a one-column DataFrame of the column's type."""
    from pyspark.sql import functions as F

    if chk.values is not None:
        df = spark.createDataFrame([(str(v),) for v in chk.values], "v string")
    else:
        p = Path(str(chk.values_from))
        p = p if p.is_absolute() else base_dir / p
        if not p.exists():
            raise ConfigError(
                f"source '{source}': check in_set({chk.column}) reads its values from '{p}', "
                "which does not exist. Fix: correct values_from."
            )
        raw = (
            spark.read.option("header", True).csv(str(p))
            if p.suffix.lower() in (".csv", ".txt")
            else spark.read.parquet(str(p))
        )
        df = raw.select(F.col(f"`{raw.columns[0]}`").alias("v"))
    return df.select(F.col("v").cast(dtype).alias("v")).where("v IS NOT NULL").distinct()


def missing(df: DataFrame, column: str) -> Column:
    """True where a value is missing: null, or NaN in a floating-point column (pandas and
    pandera count NaN as missing; Spark orders NaN above every number, so a range check
    would otherwise fail it)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    c = F.col(f"`{column}`")
    if isinstance(df.schema[column].dataType, T.DoubleType | T.FloatType):
        return c.isNull() | F.isnan(c)
    return c.isNull()


def _row_fail(df: DataFrame, i: int, chk: CheckConfig) -> tuple[DataFrame, Column]:
    """``df`` with what the check needs joined on, and the column that is true where row
    fails check ``i``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    col = str(chk.column)
    c = F.col(f"`{col}`")
    absent = missing(df, col)
    if chk.check == "not_null":
        return df, absent
    if chk.check == "unique":
        n = F.count(F.lit(1)).over(Window.partitionBy(c))
        df = df.withColumn(f"__n{i}", n)
        return df, ~absent & (F.col(f"__n{i}") > 1)
    if chk.check == "regex":
        return df, ~absent & ~c.cast("string").rlike(f"^(?:{chk.pattern})")
    if chk.check == "range":
        out = F.lit(False)
        if chk.min is not None:
            out = out | (c < F.lit(chk.min))
        if chk.max is not None:
            out = out | (c > F.lit(chk.max))
        return df, ~absent & out
    raise AssertionError(chk.check)


def run_checks(
    spark: SparkSession,
    df: DataFrame,
    checks: list[CheckConfig],
    *,
    source: str,
    base_dir: Path,
    history: list[int],
    newest: dt.datetime | None,
    now: dt.datetime,
) -> Checked:
    """Run the source's checks on the pulled rows ``df`` (persisted by the caller).
    ``history``: rows read by recent runs; ``newest``: the newest watermark after this run
    (naive UTC)."""
    from pyspark.sql import functions as F

    row_checks = [(i, c) for i, c in enumerate(checks) if c.check in ROW_CHECKS]
    columns = list(df.columns)
    for _, c in row_checks:
        if c.column not in columns:
            raise ConfigError(
                f"source '{source}': check {c.name} names column '{c.column}', which the "
                f"pulled rows do not have (columns: {', '.join(columns)}). Fix: correct the check."
            )
    flagged = df
    fails: list[tuple[int, CheckConfig, Column]] = []
    for i, chk in row_checks:
        if chk.check == "in_set":
            dtype = df.schema[str(chk.column)].dataType
            allowed = _allowed(spark, chk, dtype, base_dir, source).withColumn(
                f"__ok{i}", F.lit(True)
            )
            flagged = flagged.join(
                allowed, flagged[f"`{chk.column}`"].eqNullSafe(allowed["v"]), "left"
            ).drop("v")
            cond = ~missing(df, str(chk.column)) & F.col(f"__ok{i}").isNull()
        else:
            flagged, cond = _row_fail(flagged, i, chk)
        flagged = flagged.withColumn(f"__f{i}", cond)
        fails.append((i, chk, F.col(f"__f{i}")))
    results: list[CheckResult] = []
    quarantine = None
    good = df
    if fails:
        flagged = flagged.persist()
        counts = flagged.agg(
            *[F.sum(F.col(f"__f{i}").cast("long")).alias(f"n{i}") for i, _, _ in fails]
        ).first()
        assert counts is not None
        for i, chk, _ in fails:
            results.append(CheckResult(chk.name, chk.blocking, int(counts[f"n{i}"] or 0)))
        row_json = F.to_json(F.struct(*[F.col(f"`{c}`") for c in columns]))
        parts = [
            flagged.where(f"__f{i}").select(
                F.lit(chk.check).alias("check"),
                F.lit(chk.column).alias("column"),
                F.col(f"`{chk.column}`").cast("string").alias("failure_case"),
                row_json.alias("row"),
            )
            for i, chk, _ in fails
        ]
        quarantine = parts[0]
        for p in parts[1:]:
            quarantine = quarantine.unionByName(p)
        any_fail = F.lit(False)
        for _, _, f in fails:
            any_fail = any_fail | f
        good = flagged.where(~any_fail).select(*[F.col(f"`{c}`") for c in columns])
    n_read = int(df.count())
    results += _dataset_checks(checks, n_read, history, newest, now)
    return Checked(good, quarantine, results)


def _dataset_checks(
    checks: list[CheckConfig],
    n_read: int,
    history: list[int],
    newest: dt.datetime | None,
    now: dt.datetime,
) -> list[CheckResult]:
    out = []
    for chk in checks:
        if chk.check == "row_count":
            recent = history[-chk.runs :]
            if not recent:
                out.append(CheckResult(chk.name, chk.blocking, 0, "no earlier run to compare"))
                continue
            med = statistics.median(recent)
            ratio = n_read / med if med else float("inf") if n_read else 1.0
            bad = (chk.min_ratio is not None and ratio < chk.min_ratio) or (
                chk.max_ratio is not None and ratio > chk.max_ratio
            )
            out.append(
                CheckResult(
                    chk.name,
                    chk.blocking,
                    int(bad),
                    f"{n_read:,} rows read, {ratio:.2f}x the median of the last "
                    f"{len(recent)} runs ({med:,.0f}); allowed "
                    f"{chk.min_ratio if chk.min_ratio is not None else 0}x.."
                    f"{chk.max_ratio if chk.max_ratio is not None else 'inf'}x",
                )
            )
        elif chk.check == "freshness":
            limit = seconds(str(chk.max_age))
            if newest is None:
                out.append(CheckResult(chk.name, chk.blocking, 1, "no watermark yet"))
                continue
            age = (now - newest).total_seconds()
            out.append(
                CheckResult(
                    chk.name,
                    chk.blocking,
                    int(age > limit),
                    f"newest row {age / 3600:.1f} h old (allowed {chk.max_age})",
                )
            )
    return out
