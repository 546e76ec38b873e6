"""Point-in-time (as-of) join on Spark DataFrames.

For each label row: the latest feature row of the same entity with
``feature_time <= label_time`` (and ``label_time - feature_time <= ttl`` when a TTL is
given), never a later one. Implemented as a union of labels and features followed by one
window per entity ordered by time, taking ``last(struct, ignorenulls=True)``: a sort by
(entity, time) and one pass, no cross join and no Python UDF. ``DataFrame._joinAsOf`` is
not used: its plan ignores the entity key (broadcast nested loop, see STACK.md).

Ties: on equal timestamps features sort before labels (a feature at exactly the label time
is visible). Among feature rows with the same (entity, time), ``ties`` decides, and the
result never depends on partitioning:

- ``last_row`` (default): the row that comes last in the source (files in path order, rows
  in file order; the ``order`` column :func:`engine.data.sources.read_source` adds), as
  pandas' ``drop_duplicates(keep="last")`` on the file reads it;
- ``max`` / ``min``: the row whose values sort last / first (compared column by column in
  the view's order);
- ``error``: the build stops, naming the entity and the time (checked by the caller,
  :func:`engine.features.build.build_view`).

tests/test_real_data_traps_spark.py pins each rule against pandas.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Literal

Ties = Literal["last_row", "max", "min", "error"]
ROW_ORDER = "__row_order"  # hidden source column: (file path, position in the file)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def asof_join(
    labels: DataFrame,
    features: DataFrame,
    entity: str,
    label_time: str,
    feature_time: str,
    ttl: dt.timedelta | None = None,
    *,
    feature_time_alias: str | None = None,
    ties: Ties = "max",
    order: str | None = None,
) -> DataFrame:
    """Attach to each label row the latest feature row at or before its time.

    Parameters
    ----------
    labels, features
        Spark DataFrames, both holding ``entity``; ``labels`` holds ``label_time`` and
        ``features`` holds ``feature_time`` (timestamps). Feature columns other than the
        entity and time are attached; their names must not clash with label columns.
    ttl
        Feature rows older than this at the label time are treated as missing.
    feature_time_alias
        If given, the matched feature time is kept under this name (else dropped).
    ties, order
        Which of several feature rows at one (entity, time) is taken (see the module's
        docstring); ``order``: the features' column of source positions, for ``last_row``
        (without it, ``last_row`` falls back to ``max``). ``error`` is checked by the caller.

    Returns
    -------
    DataFrame
        Exactly the label rows (same count), with the feature columns (null when no
        feature row qualifies).

    Examples
    --------
    >>> out = asof_join(labels, txns, "customer_id", "label_time", "txn_time")  # doctest: +SKIP
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    feat_cols = [c for c in features.columns if c not in (entity, feature_time, order)]
    clash = sorted(set(feat_cols) & set(labels.columns))
    if clash:
        raise ValueError(
            f"asof_join: feature columns {clash} also exist in labels. "
            "Fix: rename or drop them on one side before the join."
        )
    if entity not in labels.columns or entity not in features.columns:
        raise ValueError(f"asof_join: entity column '{entity}' must exist in both inputs.")
    if label_time not in labels.columns:
        raise ValueError(f"asof_join: label time column '{label_time}' is not in labels.")
    if feature_time not in features.columns:
        raise ValueError(f"asof_join: feature time column '{feature_time}' is not in features.")

    ft = "__asof_ft"
    payload = F.struct(F.col(feature_time).alias(ft), *[F.col(c) for c in feat_cols])
    lab_cols = [c for c in labels.columns if c != entity]
    # One schema for both sides: label columns null on feature rows and vice versa.
    feat_struct_type = features.select(payload.alias("p")).schema["p"].dataType
    lab_struct_type = (
        labels.select(F.struct(*[F.col(c) for c in lab_cols]).alias("l")).schema["l"].dataType
    )
    lab_side = labels.select(
        F.col(entity),
        F.col(label_time).cast("timestamp_ntz").alias("__t"),
        F.lit(1).alias("__is_label"),
        F.struct(*[F.col(c) for c in lab_cols]).alias("__lab"),
        F.lit(None).cast(feat_struct_type).alias("__feat"),
    )
    use_order = ties == "last_row" and order is not None
    tie = F.col(order) if order is not None and use_order else F.lit(None)
    order_type = features.select(tie.alias("o")).schema["o"].dataType
    lab_side = lab_side.withColumn("__tie", F.lit(None).cast(order_type))
    feat_side = features.where(F.col(feature_time).isNotNull()).select(
        F.col(entity),
        F.col(feature_time).cast("timestamp_ntz").alias("__t"),
        F.lit(0).alias("__is_label"),
        F.lit(None).cast(lab_struct_type).alias("__lab"),
        payload.alias("__feat"),
        tie.alias("__tie"),
    )
    both = lab_side.unionByName(feat_side)
    # Order: time, then features before labels, then the ties rule (deterministic): the
    # last row of a window wins, so the rule's choice must sort last.
    by = {"min": F.col("__feat").desc_nulls_first()}.get(ties, F.col("__feat").asc())
    w = (
        Window.partitionBy(entity)
        .orderBy(F.col("__t"), F.col("__is_label"), *([F.col("__tie")] if use_order else []), by)
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    joined = both.withColumn("__m", F.last("__feat", ignorenulls=True).over(w)).where(
        F.col("__is_label") == 1
    )
    if ttl is not None:
        too_old = F.col("__m").getField(ft) < F.col("__t") - F.make_dt_interval(
            F.lit(ttl.days), F.lit(0), F.lit(0), F.lit(ttl.seconds + ttl.microseconds / 1e6)
        )
        joined = joined.withColumn("__m", F.when(too_old, F.lit(None)).otherwise(F.col("__m")))
    out_cols = [F.col(entity)] + [F.col("__lab").getField(c).alias(c) for c in lab_cols]
    out_cols += [F.col("__m").getField(c).alias(c) for c in feat_cols]
    if feature_time_alias:
        out_cols.append(F.col("__m").getField(ft).alias(feature_time_alias))
    return joined.select(*out_cols)
