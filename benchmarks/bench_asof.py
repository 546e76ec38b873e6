"""Point-in-time join: our Spark as-of join vs DuckDB ASOF JOIN vs pandas merge_asof.

Full: 1M labels x 5M feature rows over 100k entities, plus the windowed-aggregate build
(count/sum/mean over 7d/30d/90d) on 10M transactions. Smoke: 1k x 5k over 100 entities.
All engines run in this process on the same Parquet files; results are compared row for
row. Spark time is execution only (``noop`` write), after the session is up.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from benchmarks._harness import case, measure, parser, write
from engine.features.asof import asof_join
from engine.features.build import build_view
from engine.features.spark import get_spark
from engine.features.views import Aggregate, FeatureView

T0 = np.datetime64("2025-01-01T00:00:00", "us")


def _tables(
    n_ent: int, n_feat: int, n_lab: int, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    span = 365 * 86_400
    feats = pd.DataFrame(
        {
            "eid": rng.integers(0, n_ent, n_feat),
            "ft": (T0 + rng.integers(0, span, n_feat).astype("timedelta64[s]")).astype(
                "datetime64[us]"
            ),
            "x": rng.normal(size=n_feat),
        }
    ).drop_duplicates(["eid", "ft"])
    labels = pd.DataFrame(
        {
            "eid": rng.integers(0, n_ent, n_lab),
            "lt": (T0 + rng.integers(0, span, n_lab).astype("timedelta64[s]")).astype(
                "datetime64[us]"
            ),
        }
    )
    labels["row"] = np.arange(n_lab)
    return labels, feats


def _spark_range_maxby(spark: Any, labels: Any, feats: Any) -> Any:
    """The alternative we measured: range join + max_by (quadratic per entity)."""
    from pyspark.sql import functions as F

    f = feats.withColumnRenamed("eid", "feid")
    j = labels.join(f, (labels.eid == f.feid) & (f.ft <= labels.lt), "left")
    return j.groupBy("row").agg(F.max_by(F.struct("ft", "x"), "ft").alias("m"))


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    n_ent, n_feat, n_lab, n_tx = (
        (100, 5_000, 1_000, 10_000) if args.smoke else (100_000, 5_000_000, 1_000_000, 10_000_000)
    )
    labels, feats = _tables(n_ent, n_feat, n_lab)
    tmp = Path(tempfile.mkdtemp(prefix="bench-asof-"))
    labels.to_parquet(tmp / "labels.parquet", index=False)
    feats.to_parquet(tmp / "feats.parquet", index=False)
    spark = get_spark(
        "local[2]",
        driver_memory="4g" if args.smoke else "8g",
        shuffle_partitions=4 if args.smoke else 16,
        local_dir=tmp / "spark",
    )
    lab_s = spark.read.parquet(str(tmp / "labels.parquet"))
    feat_s = spark.read.parquet(str(tmp / "feats.parquet"))
    repeat = 3

    def spark_asof() -> None:
        asof_join(lab_s, feat_s, "eid", "lt", "ft").write.format("noop").mode("overwrite").save()

    t_spark = measure(spark_asof, repeat)  # the warm-up pays the JIT and first-job costs
    ours = asof_join(lab_s, feat_s, "eid", "lt", "ft", feature_time_alias="mft").toPandas()
    ours = ours.sort_values("row").reset_index(drop=True)

    con = duckdb.connect()
    con.execute("SET threads TO 2")
    sql = (
        f"SELECT l.row, f.x, f.ft AS mft FROM read_parquet('{tmp}/labels.parquet') l "
        f"ASOF LEFT JOIN read_parquet('{tmp}/feats.parquet') f ON l.eid = f.eid AND l.lt >= f.ft "
        "ORDER BY l.row"
    )
    t_ddb = measure(lambda: con.execute(sql).df(), repeat)
    ddb = t_ddb.result

    def pandas_asof() -> pd.DataFrame:
        out = pd.merge_asof(
            labels.sort_values("lt"),
            feats.assign(mft=feats["ft"]).sort_values("ft"),
            left_on="lt",
            right_on="ft",
            by="eid",
        )
        return out.sort_values("row").reset_index(drop=True)

    t_pd = measure(pandas_asof, repeat)
    pdm = t_pd.result

    def same(ref: pd.DataFrame) -> bool:
        a, b = ours["x"].to_numpy(float), ref["x"].to_numpy(float)
        return bool(np.array_equal(a, b, equal_nan=True)) and len(ours) == len(ref) == n_lab

    size = f"{n_lab:,} labels x {len(feats):,} feature rows, {n_ent:,} entities"
    cases: list[dict[str, Any]] = [
        case(f"as-of join {size}", t_spark, "DuckDB ASOF JOIN", t_ddb, same(ddb)),
        case(f"as-of join {size}", t_spark, "pandas merge_asof", t_pd, same(pdm)),
    ]

    def maxby() -> None:
        _spark_range_maxby(spark, lab_s, feat_s).write.format("noop").mode("overwrite").save()

    t_mb = measure(maxby, 2)
    cases.append(
        case(
            f"as-of join {size}",
            t_spark,
            "Spark range join + max_by (alternative)",
            t_mb,
            True,
            note="both Spark; equality covered by tests/test_asof_spark.py",
        )
    )

    # Windowed aggregates on transactions: our build_view (range join + conditional aggs).
    rng = np.random.default_rng(1)
    tx = pd.DataFrame(
        {
            "eid": rng.integers(0, n_ent, n_tx),
            "t": (T0 + rng.integers(0, 365 * 86_400, n_tx).astype("timedelta64[s]")).astype(
                "datetime64[us]"
            ),
            "amount": rng.gamma(2.0, 20.0, n_tx),
        }
    )
    tx.to_parquet(tmp / "tx.parquet", index=False)
    keys_pd = labels.drop_duplicates("eid")[["eid", "lt"]]
    keys_pd.to_parquet(tmp / "keys.parquet", index=False)
    view = FeatureView(
        name="tx",
        source="tx",
        aggregates=[
            Aggregate(name="n_{w}", function="count", windows=["7d", "30d", "90d"]),
            Aggregate(name="s_{w}", function="sum", column="amount", windows=["7d", "30d", "90d"]),
            Aggregate(name="m_{w}", function="mean", column="amount", windows=["30d"]),
        ],
    )
    tx_s = spark.read.parquet(str(tmp / "tx.parquet"))
    keys_s = spark.read.parquet(str(tmp / "keys.parquet"))

    def agg_build() -> None:
        build_view(view, keys_s, tx_s, "eid", "lt", "t").write.format("noop").mode(
            "overwrite"
        ).save()

    t_agg = measure(agg_build, repeat)
    sql_agg = (
        f"SELECT k.eid, count(t.t) FILTER (WHERE t.t > k.lt - INTERVAL 30 DAY) AS n30, "
        f"coalesce(sum(t.amount) FILTER (WHERE t.t > k.lt - INTERVAL 30 DAY), 0) AS s30 "
        f"FROM read_parquet('{tmp}/keys.parquet') k LEFT JOIN read_parquet('{tmp}/tx.parquet') t "
        f"ON k.eid = t.eid AND t.t <= k.lt AND t.t > k.lt - INTERVAL 90 DAY GROUP BY k.eid ORDER BY k.eid"
    )
    t_ddb_agg = measure(lambda: con.execute(sql_agg).df(), repeat)
    ddb_agg = t_ddb_agg.result
    got = (
        build_view(view, keys_s, tx_s, "eid", "lt", "t").select("eid", "n_30d", "s_30d").toPandas()
    )
    got = got.sort_values("eid").reset_index(drop=True)
    agg_equal = bool(
        np.array_equal(got["n_30d"].to_numpy(), ddb_agg["n30"].to_numpy(float))
        and np.allclose(got["s_30d"].to_numpy(), ddb_agg["s30"].to_numpy(float), rtol=1e-9)
    )
    cases.append(
        case(
            f"windowed aggregates, {n_tx:,} transactions, {len(keys_pd):,} label rows",
            t_agg,
            "DuckDB range join + FILTER aggregates",
            t_ddb_agg,
            agg_equal,
            spark_rows_per_s=n_tx / t_agg.median,
        )
    )
    spark.stop()
    shutil.rmtree(tmp, ignore_errors=True)  # the inputs and Spark's scratch
    write("bench_asof", args.smoke, cases, args.out)


if __name__ == "__main__":
    main()
