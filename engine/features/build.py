"""Spark execution of feature views into a point-in-time-correct training table.

For every label row (entity, label_time) each view contributes features computed only from
source rows at or before label_time:

- windowed aggregates: one range join ``source.t in (label_time - max_window, label_time]``
  on the entity key (a sort-merge join on the key, no cross join), then conditional
  aggregates per window;
- latest values and recency: :func:`engine.features.asof.asof_join`;
- static columns: an equi-join on the key.

Labels without a time (a snapshot table) join static views on the key alone; with
``label.as_of`` set, every label row takes that time, so event views stay point-in-time.
Labels and features may come from the same source: a source column that shares a name with
the label rows' columns (the label time, say) is dropped from the view's side of the join.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.config.project import ProjectConfig
from engine.errors import DataError
from engine.features.asof import ROW_ORDER, asof_join
from engine.features.views import Aggregate, FeatureView, parse_duration

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

EV_T = "__ev_t"
FT_PREFIX = "__ft__"  # hidden column: the event time a feature was computed from
AS_OF_T = "__as_of"  # the label time of snapshot labels taken as of label.as_of


def ft_col(feature: str) -> str:
    return f"{FT_PREFIX}{feature}"


def _interval(text: str) -> Column:
    from pyspark.sql import functions as F

    return F.expr(f"INTERVAL {int(parse_duration(text).total_seconds())} SECONDS")


def _agg_columns(agg: Aggregate, label_time: str) -> list[Column]:
    from pyspark.sql import functions as F

    value = F.expr(agg.expr) if agg.expr else (F.col(agg.column) if agg.column else F.lit(1))
    out = []
    for name, w in agg.feature_names():
        cond = F.col(EV_T) > F.col(label_time) - _interval(w)
        if agg.filter:
            cond = cond & F.expr(agg.filter)
        v = F.when(cond, value)
        col = {
            "count": lambda v=v: F.count(v),
            "sum": lambda v=v: F.coalesce(F.sum(v), F.lit(0)),
            "mean": lambda v=v: F.avg(v),
            "min": lambda v=v: F.min(v),
            "max": lambda v=v: F.max(v),
            "count_distinct": lambda v=v: F.count_distinct(v),
        }[agg.function]()
        out.append(col.cast("double").alias(name))
        # Leakage guard: the latest event time that fed this feature (null if none did).
        out.append(F.max(F.when(cond, F.col(EV_T))).alias(ft_col(name)))
    return out


def _without_clashes(source: DataFrame, keys: DataFrame, key: str, keep: str | None) -> DataFrame:
    """The source without columns that the label rows also carry (except the key and
    ``keep``), so a join of labels and features from one table is unambiguous."""
    clash = [c for c in keys.columns if c not in (key, keep) and c in source.columns]
    return source.drop(*clash) if clash else source


def build_view(
    view: FeatureView,
    keys: DataFrame,
    source: DataFrame,
    key: str,
    label_time: str | None,
    event_time: str | None,
) -> DataFrame:
    """Features of one view for each distinct (key, label_time) in ``keys``.

    Besides the features, time-based features come with a hidden ``__ft__<name>`` column
    holding the event time they were computed from (for the leakage guard).
    """
    from pyspark.sql import functions as F

    on = [key] if label_time is None else [key, label_time]
    if event_time is None:  # static table: plain join on the key
        joined = keys.join(_without_clashes(source, keys, key, None), on=key, how="left")
        for name, expr in view.derived.items():
            joined = joined.withColumn(name, F.expr(expr))
        return joined.select(*on, *view.columns, *view.derived)
    if label_time is None:
        raise ValueError(f"view '{view.name}' reads event times; the labels need a time")

    src = _without_clashes(source, keys, key, event_time).withColumnRenamed(event_time, EV_T)
    out = keys
    if view.aggregates:
        max_w = max((w for a in view.aggregates for w in a.windows), key=parse_duration)
        src_k = src.withColumnRenamed(key, "__k")
        cond = (
            (keys[key] == src_k["__k"])
            & (src_k[EV_T] <= keys[label_time])
            & (src_k[EV_T] > keys[label_time] - _interval(max_w))
        )
        aggs = [c for a in view.aggregates for c in _agg_columns(a, label_time)]
        agg_df = keys.join(src_k, cond, "left").groupBy(key, label_time).agg(*aggs)
        out = out.join(agg_df, on=[key, label_time], how="left")
    latest = {c: c for c in view.columns} | dict(view.latest)
    if latest or view.recency:
        order = [ROW_ORDER] if ROW_ORDER in src.columns else []
        feats = src.select(key, EV_T, *[F.col(c).alias(n) for c, n in latest.items()], *order)
        if view.ties == "error" and latest:
            _no_ties(view, feats, key, list(latest.values()))
        ttl = parse_duration(view.ttl) if view.ttl else None
        last = asof_join(
            keys,
            feats,
            key,
            label_time,
            EV_T,
            ttl,
            feature_time_alias="__last_t",
            ties=view.ties,
            order=order[0] if order else None,
        )
        if view.recency:
            secs = F.unix_micros(F.col(label_time).cast("timestamp")) - F.unix_micros(
                F.col("__last_t").cast("timestamp")
            )
            last = last.withColumn(view.recency, (secs / F.lit(86_400_000_000.0)).cast("double"))
        for name in [*latest.values(), *([view.recency] if view.recency else [])]:
            last = last.withColumn(ft_col(name), F.col("__last_t"))
        last = last.drop("__last_t")
        out = out.join(last, on=[key, label_time], how="left")
    for name, expr in view.derived.items():
        out = out.withColumn(name, F.expr(expr))
    hidden = [c for c in out.columns if c.startswith(FT_PREFIX)]
    return out.select(key, label_time, *view.feature_names(), *hidden)


def _no_ties(view: FeatureView, feats: DataFrame, key: str, cols: list[str]) -> None:
    """``ties: error``: stop when one entity has events at one time with different values."""
    from pyspark.sql import functions as F

    row = (
        feats.groupBy(key, EV_T)
        .agg(F.count_distinct(F.struct(*cols)).alias("n"), F.count(F.lit(1)).alias("rows"))
        .where(F.col("n") > 1)
        .agg(F.count(F.lit(1)).alias("groups"), F.max_by(F.struct(key, EV_T, "rows"), "rows"))
        .first()
    )
    if row is None or not row["groups"]:
        return
    top = row[1]
    raise DataError(
        f"feature view '{view.name}' (ties: error): {row['groups']:,} entities have several "
        f"events at one time with different values of {cols} (e.g. {key}={top[key]} at "
        f"{top[EV_T]}: {top['rows']} rows). Fix: set ties on the view to last_row (the row "
        "last in the source), max or min, or remove the duplicate events from the source."
    )


def label_time_column(cfg: ProjectConfig) -> str | None:
    """The label rows' time column in the built table: ``label.event_time``, the internal
    ``AS_OF_T`` for snapshot labels with ``label.as_of``, or None (no time at all)."""
    if cfg.label.event_time is not None:
        return cfg.label.event_time
    return AS_OF_T if cfg.label.as_of is not None else None


def label_as_int(df: DataFrame, column: str, positive: str, negative: str | None) -> Column:
    """The label as 1 (positive) / 0 (the other value) / null (missing), whatever its type:
    text is compared trimmed and lower-cased, numbers and booleans by value."""
    from pyspark.sql import functions as F

    kind = dict(df.dtypes)[column]
    c = F.col(column)
    if kind == "boolean":
        return F.when(c.isNull(), None).when(c == F.lit(positive == "true"), 1).otherwise(0)
    if kind in ("tinyint", "smallint", "int", "bigint", "float", "double") or kind.startswith(
        "decimal"
    ):
        return F.when(c.isNull(), None).when(c == F.lit(float(positive)), 1).otherwise(0)
    t = F.lower(F.trim(c.cast("string")))
    out = F.when(t == F.lit(positive), 1)
    if negative is not None:
        out = out.when(t == F.lit(negative), 0)
    return out


def label_rows(
    cfg: ProjectConfig,
    sources: dict[str, DataFrame],
    positive: str = "1",
    negative: str | None = "0",
    sample_labels: int | None = None,
) -> DataFrame:
    """The label rows the training table is built for: key, label time and the label as
    0/1; rows without a label, or whose time could not be read, dropped."""
    from pyspark.sql import functions as F

    lab_src = cfg.sources[cfg.label.source]
    assert lab_src.entity is not None  # validated by ProjectConfig
    key = cfg.entity_key(lab_src.entity)
    y = cfg.label.column
    raw = sources[cfg.label.source]
    labels = raw.select(
        key,
        *([cfg.label.event_time] if cfg.label.event_time else []),
        label_as_int(raw, y, positive, negative).cast("int").alias(y),
    ).where(F.col(y).isNotNull())
    if cfg.label.event_time:  # a label whose time could not be read is no label (counted)
        labels = labels.where(F.col(cfg.label.event_time).isNotNull())
    if sample_labels is not None:
        labels = labels.limit(sample_labels)
    if label_time_column(cfg) == AS_OF_T:
        assert cfg.label.as_of is not None
        labels = labels.withColumn(AS_OF_T, F.lit(cfg.label.as_of).cast("timestamp_ntz"))
    return labels


def build_training_table(
    cfg: ProjectConfig,
    sources: dict[str, DataFrame],
    positive: str = "1",
    negative: str | None = "0",
    sample_labels: int | None = None,
    labels: DataFrame | None = None,
) -> DataFrame:
    """Labels (as 0/1, rows without one dropped) with every view's features attached,
    point-in-time correct: one row per label row (the build asserts it). ``sample_labels``:
    only the first N label rows (a smoke run); ``labels``: :func:`label_rows`, when the
    caller already has them."""
    lab_src = cfg.sources[cfg.label.source]
    assert lab_src.entity is not None  # validated by ProjectConfig
    key = cfg.entity_key(lab_src.entity)
    lt = label_time_column(cfg)
    if labels is None:
        labels = label_rows(cfg, sources, positive, negative, sample_labels)
    on = [key] if lt is None else [key, lt]
    keys = labels.select(*on).distinct()
    table = labels
    for view in cfg.features.views:
        vsrc = cfg.sources[view.source]
        part = build_view(view, keys, sources[view.source], key, lt, vsrc.event_time)
        table = table.join(part, on=on, how="left")
    return table
