"""Hierarchies: the summing structure against hierarchicalforecast's own ``aggregate``,
the reconciliation against the MinTrace projection written out in numpy, coherence after
it, on random nested panels for many seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.config.forecast import ForecastConfig
from engine.forecast import hierarchy as hy

SEEDS = range(8)


def _nested(seed: int) -> tuple[pd.DataFrame, ForecastConfig]:
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(int(rng.integers(2, 4))):
        for s in range(int(rng.integers(1, 4))):
            for k in range(int(rng.integers(1, 4))):
                uid = f"S{r}{s}/p{k}"
                for t in range(6):
                    rows.append(
                        (
                            uid,
                            pd.Timestamp("2024-01-01") + pd.Timedelta(weeks=t),
                            f"R{r}",
                            f"S{r}{s}",
                            f"p{k}",
                            float(rng.uniform(1, 50)),
                            True,
                        )
                    )
    fr = pd.DataFrame(rows, columns=["unique_id", "ds", "region", "store", "sku", "y", "observed"])
    fc = ForecastConfig(
        source="x",
        series=["store", "sku"],
        time="t",
        target="y",
        freq="W-MON",
        horizon=2,
        static=["region"],
        hierarchy=["region", "store"],
    )
    return fr, fc


@pytest.mark.parametrize("seed", SEEDS)
def test_structure_equals_hierarchicalforecasts_aggregate(seed: int) -> None:
    from hierarchicalforecast.utils import aggregate

    fr, fc = _nested(seed)
    bottom = sorted(fr["unique_id"].unique())
    st = hy.structure(fr, fc, bottom)
    assert st.levels == ["total", "region", "region/store", "store/sku"]
    y, s_ref, tags = aggregate(
        fr.assign(total="total")[["total", "region", "store", "sku", "ds", "y"]],
        [
            ["total"],
            ["total", "region"],
            ["total", "region", "store"],
            ["total", "region", "store", "sku"],
        ],
    )
    # the same number of series per level, and the same sums per period
    sizes = [len(v) for v in tags.values()]
    assert [len(st.tags[lv]) for lv in st.levels] == sizes
    ours = st.S.set_index("unique_id").to_numpy()
    ref = s_ref.set_index("unique_id").to_numpy()
    assert ours.shape == ref.shape
    assert sorted(ours.sum(axis=1).tolist()) == sorted(ref.sum(axis=1).tolist())
    up = hy.upper_frame(fr, st)
    tot_ours = up[up["unique_id"] == "total"].set_index("ds")["y"]
    tot_ref = y[y["unique_id"] == "total"].set_index("ds")["y"]
    np.testing.assert_allclose(tot_ours.to_numpy(), tot_ref.loc[tot_ours.index].to_numpy())


@pytest.mark.parametrize("seed", SEEDS)
def test_reconciliation_is_the_mintrace_projection_and_adds_up(seed: int) -> None:
    """wls_var: y~ = S (S' W^-1 S)^-1 S' W^-1 y^, W = diag(mean squared past error)."""
    rng = np.random.default_rng(1000 + seed)
    fr, fc = _nested(seed)
    bottom = sorted(fr["unique_id"].unique())
    st = hy.structure(fr, fc, bottom)
    rows = pd.concat(
        [hy.upper_frame(fr, st), fr[["unique_id", "ds", "y", "observed"]]], ignore_index=True
    )
    rows["base"] = rows["y"] * rng.uniform(0.6, 1.4, len(rows))
    ids = list(st.S["unique_id"])
    errors = rows[rows["ds"] < rows["ds"].max()]
    base = rows[rows["ds"] == rows["ds"].max()].reset_index(drop=True)
    got = hy.reconcile(base, st, errors)
    s = st.S.set_index("unique_id").to_numpy()
    msq = (errors["y"] - errors["base"]).pow(2).groupby(errors["unique_id"]).mean()
    w_inv = np.diag(1.0 / msq.loc[ids].to_numpy())
    proj = s @ np.linalg.solve(s.T @ w_inv @ s, s.T @ w_inv)
    yhat = base.set_index("unique_id").loc[ids, "base"].to_numpy()
    want = pd.Series(proj @ yhat, index=ids)
    np.testing.assert_allclose(got.to_numpy(), want.loc[base["unique_id"]].to_numpy(), rtol=1e-8)
    # the levels add up: each upper series is the sum of its bottom series
    rec = pd.Series(got.to_numpy(), index=base["unique_id"])
    np.testing.assert_allclose(rec.loc[ids].to_numpy(), s @ rec.loc[bottom].to_numpy(), rtol=1e-8)
    # bottom-up: the bottom forecasts unchanged, the upper ones their sums
    bu = pd.Series(hy.reconcile(base, st, method="bottom_up").to_numpy(), index=base["unique_id"])
    np.testing.assert_allclose(
        bu.loc[bottom].to_numpy(), base.set_index("unique_id").loc[bottom, "base"].to_numpy()
    )


def test_a_hierarchy_column_that_is_neither_key_nor_static_is_refused() -> None:
    with pytest.raises(ValueError, match=r"hierarchy \['category'\]"):
        ForecastConfig(
            source="x",
            series=["store", "sku"],
            time="t",
            target="y",
            freq="W-MON",
            horizon=2,
            hierarchy=["category"],
        )
