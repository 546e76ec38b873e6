"""Spark as-of join against DuckDB's ASOF JOIN and pandas merge_asof, row for row."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from engine.features.asof import asof_join

pytestmark = pytest.mark.spark

SPARK_SEEDS = range(8)


def _random_tables(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_ent = int(rng.integers(5, 40))
    base = np.datetime64("2025-01-01T00:00:00", "us")
    # Feature times on a coarse grid (whole hours) so labels hit exact ties often.
    n_f = int(rng.integers(50, 400))
    f_ent = rng.integers(0, n_ent, n_f)
    f_t = base + rng.integers(0, 200, n_f).astype("timedelta64[h]")
    feats = pd.DataFrame({"eid": f_ent, "ft": f_t.astype("datetime64[us]")})
    feats = feats.drop_duplicates(["eid", "ft"]).reset_index(drop=True)  # no same-time dupes
    feats["x"] = rng.normal(size=len(feats))
    feats.loc[rng.random(len(feats)) < 0.1, "x"] = np.nan  # nulls in feature values
    feats["s"] = rng.choice(["a", "b", "c"], len(feats))
    n_l = int(rng.integers(30, 300))
    # Entities up to n_ent + 5: some have no feature history at all.
    labels = pd.DataFrame(
        {
            "eid": rng.integers(0, n_ent + 5, n_l),
            "lt": (base + rng.integers(-10, 210, n_l).astype("timedelta64[h]")).astype(
                "datetime64[us]"
            ),
            "y": rng.integers(0, 2, n_l),
        }
    )
    labels["row"] = np.arange(n_l)
    return labels, feats


def _spark_result(
    spark: Any, labels: pd.DataFrame, feats: pd.DataFrame, ttl: dt.timedelta | None
) -> pd.DataFrame:
    out = asof_join(
        spark.createDataFrame(labels),
        spark.createDataFrame(feats),
        "eid",
        "lt",
        "ft",
        ttl,
        feature_time_alias="matched_ft",
    ).toPandas()
    return out.sort_values("row").reset_index(drop=True)


@pytest.mark.parametrize("seed", SPARK_SEEDS, ids=lambda s: f"seed-{s}")
def test_matches_duckdb_and_pandas(spark: Any, seed: int) -> None:
    labels, feats = _random_tables(seed)
    ours = _spark_result(spark, labels, feats, None)
    assert len(ours) == len(labels)

    con = duckdb.connect()
    con.register("labels", labels)
    con.register("feats", feats)
    ddb = con.execute(
        "SELECT l.row, f.x, f.s, f.ft AS matched_ft FROM labels l "
        "ASOF LEFT JOIN feats f ON l.eid = f.eid AND l.lt >= f.ft ORDER BY l.row"
    ).df()
    pdm = (
        pd.merge_asof(
            labels.sort_values("lt"),
            feats.assign(matched_ft=feats["ft"]).sort_values("ft"),
            left_on="lt",
            right_on="ft",
            by="eid",
            direction="backward",
            allow_exact_matches=True,
        )
        .sort_values("row")
        .reset_index(drop=True)
    )

    for ref in (ddb, pdm):
        np.testing.assert_array_equal(ours["matched_ft"].isna(), ref["matched_ft"].isna())
        both = ours["matched_ft"].notna().to_numpy()
        np.testing.assert_array_equal(
            ours["matched_ft"].to_numpy()[both].astype("datetime64[us]"),
            ref["matched_ft"].to_numpy()[both].astype("datetime64[us]"),
        )
        np.testing.assert_allclose(
            ours["x"].to_numpy(float), ref["x"].to_numpy(float), equal_nan=True
        )
        assert ours["s"].fillna("<none>").tolist() == ref["s"].fillna("<none>").tolist()
    # Never a future row.
    hit = ours["matched_ft"].notna()
    assert (ours.loc[hit, "matched_ft"] <= labels.loc[hit, "lt"]).all()


@pytest.mark.parametrize("seed", SPARK_SEEDS[:3], ids=lambda s: f"seed-{s}")
def test_ttl_hides_stale_rows(spark: Any, seed: int) -> None:
    labels, feats = _random_tables(seed)
    ttl = dt.timedelta(hours=24)
    ours = _spark_result(spark, labels, feats, ttl)
    pdm = (
        pd.merge_asof(
            labels.sort_values("lt"),
            feats.assign(matched_ft=feats["ft"]).sort_values("ft"),
            left_on="lt",
            right_on="ft",
            by="eid",
            tolerance=pd.Timedelta(ttl),
        )
        .sort_values("row")
        .reset_index(drop=True)
    )
    np.testing.assert_array_equal(ours["matched_ft"].isna(), pdm["matched_ft"].isna())
    np.testing.assert_allclose(ours["x"].to_numpy(float), pdm["x"].to_numpy(float), equal_nan=True)


def test_same_time_duplicates_resolve_deterministically(spark: Any) -> None:
    t = pd.Timestamp("2025-01-02")
    labels = pd.DataFrame({"eid": [1], "lt": [t], "row": [0]})
    feats = pd.DataFrame(
        {"eid": [1, 1, 1], "ft": [t, t, t - pd.Timedelta(hours=1)], "x": [2.0, 5.0, 9.0]}
    )
    results = set()
    for parts in (1, 2, 3):
        df = spark.createDataFrame(feats.sample(frac=1, random_state=parts)).repartition(parts)
        out = asof_join(spark.createDataFrame(labels), df, "eid", "lt", "ft").toPandas()
        results.add(float(out["x"].iloc[0]))
    assert results == {5.0}  # the values that sort last win, whatever the partitioning


def test_bad_arguments_are_named(spark: Any) -> None:
    labels = spark.createDataFrame(
        pd.DataFrame({"eid": [1], "lt": [pd.Timestamp("2025-01-01")], "x": [1]})
    )
    feats = spark.createDataFrame(
        pd.DataFrame({"eid": [1], "ft": [pd.Timestamp("2025-01-01")], "x": [2]})
    )
    with pytest.raises(ValueError, match=r"feature columns \['x'\] also exist in labels"):
        asof_join(labels, feats, "eid", "lt", "ft")
    with pytest.raises(ValueError, match="'when' is not in labels"):
        asof_join(labels, feats.drop("x"), "eid", "when", "ft")
