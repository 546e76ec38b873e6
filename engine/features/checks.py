"""Checks on a built table before its snapshot commits: leakage guard and expectations.

Both run as one Spark aggregation over the (persisted) table; examples of failing rows
are fetched only for the expectations that failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.config.project import ProjectConfig
from engine.errors import DataError
from engine.features.build import FT_PREFIX

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_US_PER_DAY = 86_400_000_000.0


def leakage_report(table: DataFrame, label_time: str) -> dict[str, dict[str, Any]]:
    """Per time-based feature: rows with a source event, and min/max lag in days.

    Raises DataError if any feature was computed from an event after its label time
    (min lag < 0): that would be leakage, and it means a bug in a view's execution.
    """
    from pyspark.sql import functions as F

    fts = [c for c in table.columns if c.startswith(FT_PREFIX)]
    if not fts:
        return {}
    lt_us = F.unix_micros(F.col(label_time).cast("timestamp"))
    aggs = []
    for c in fts:
        lag = (lt_us - F.unix_micros(F.col(c).cast("timestamp"))) / F.lit(_US_PER_DAY)
        aggs += [
            F.min(lag).alias(f"min|{c}"),
            F.max(lag).alias(f"max|{c}"),
            F.count(c).alias(f"n|{c}"),
        ]
    row = table.agg(*aggs).first()
    assert row is not None
    out: dict[str, dict[str, Any]] = {}
    for c in fts:
        name = c[len(FT_PREFIX) :]
        out[name] = {
            "rows_with_event": int(row[f"n|{c}"]),
            "min_lag_days": None if row[f"min|{c}"] is None else float(row[f"min|{c}"]),
            "max_lag_days": None if row[f"max|{c}"] is None else float(row[f"max|{c}"]),
        }
    future = {
        k: v for k, v in out.items() if v["min_lag_days"] is not None and v["min_lag_days"] < 0
    }
    if future:
        raise DataError(
            f"leakage: features computed from events after their label time: {future}. "
            "The snapshot was not committed."
        )
    return out


@dataclass
class ExpectationResult:
    view: str
    column: str
    check: str
    passed: bool
    detail: str
    failing_rows: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


def run_expectations(
    cfg: ProjectConfig, table: DataFrame, key: str, label_time: str | None, n_examples: int = 5
) -> list[ExpectationResult]:
    """Evaluate every view's ``expect`` list on the built table (Spark-native)."""
    from pyspark.sql import functions as F

    exps = [(v.name, e) for v in cfg.features.views for e in v.expect]
    if not exps:
        return []
    aggs = [F.count(F.lit(1)).alias("__n")]
    for i, (_, e) in enumerate(exps):
        c = F.col(e.column)
        aggs.append(F.sum(F.when(c.isNull(), 1).otherwise(0)).alias(f"null{i}"))
        if e.min is not None:
            aggs.append(F.sum(F.when(c < F.lit(e.min), 1).otherwise(0)).alias(f"lo{i}"))
        if e.max is not None:
            aggs.append(F.sum(F.when(c > F.lit(e.max), 1).otherwise(0)).alias(f"hi{i}"))
    row = table.agg(*aggs).first()
    assert row is not None
    n = int(row["__n"])
    dtypes = dict(table.dtypes)
    results: list[ExpectationResult] = []
    for i, (view, e) in enumerate(exps):
        c = F.col(e.column)
        if e.dtype is not None:
            got = dtypes[e.column]
            results.append(
                ExpectationResult(
                    view, e.column, f"dtype == {e.dtype}", got == e.dtype, f"dtype is {got}"
                )
            )
        if e.max_null_rate is not None:
            nulls = int(row[f"null{i}"] or 0)
            rate = nulls / n if n else 0.0
            ok = rate <= e.max_null_rate
            results.append(
                ExpectationResult(
                    view,
                    e.column,
                    f"null rate <= {e.max_null_rate}",
                    ok,
                    f"null rate {rate:.4f} ({nulls} of {n} rows)",
                    0 if ok else nulls,
                    []
                    if ok
                    else _examples(table, c.isNull(), key, label_time, e.column, n_examples),
                )
            )
        for tag, bound, word in (("lo", e.min, ">="), ("hi", e.max, "<=")):
            if bound is None:
                continue
            outside = c < F.lit(bound) if tag == "lo" else c > F.lit(bound)
            bad = int(row[f"{tag}{i}"] or 0)
            results.append(
                ExpectationResult(
                    view,
                    e.column,
                    f"value {word} {bound}",
                    bad == 0,
                    f"{bad} of {n} rows outside",
                    bad,
                    _examples(table, outside, key, label_time, e.column, n_examples) if bad else [],
                )
            )
    return results


def _examples(
    table: DataFrame, cond: Any, key: str, lt: str | None, col: str, n: int
) -> list[dict[str, Any]]:
    cols = [key, *([lt] if lt else []), col]
    return [
        {k: (str(v) if k == lt else v) for k, v in r.asDict().items()}
        for r in table.where(cond).select(*cols).limit(n).collect()
    ]


def raise_on_failures(results: list[ExpectationResult], report_path: str) -> None:
    failed = [r for r in results if not r.passed]
    if not failed:
        return
    lines = [f"{len(failed)} expectation(s) failed; the snapshot was not committed:"]
    for r in failed:
        lines.append(f"  view '{r.view}', column '{r.column}': expected {r.check}; {r.detail}")
        for ex in r.examples:
            lines.append(f"      e.g. {ex}")
    lines.append(f"Full report: {report_path}. Fix the source data or relax the expectation.")
    raise DataError("\n".join(lines))
