"""Source and view checks run on file metadata, before any Spark session starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.config.project import ProjectConfig
from engine.data.sources import check_sources
from engine.errors import DataError
from engine.features.views import Aggregate
from engine.workspace import Workspace


def _with_agg(cfg: ProjectConfig, agg: Aggregate) -> ProjectConfig:
    views = list(cfg.features.views)
    views[1] = views[1].model_copy(update={"aggregates": [*views[1].aggregates, agg]})
    return cfg.model_copy(update={"features": cfg.features.model_copy(update={"views": views})})


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        (
            Aggregate(name="ch_sum", function="sum", column="channel", windows=["7d"]),
            ["feature view 'txn'", "'channel' is string", "sum/mean need a number", "Fix"],
        ),
        (
            Aggregate(name="x_max", function="max", column="amout", windows=["7d"]),
            ["column 'amout' is not in source 'transactions'", "amount", "Fix"],
        ),
    ],
)
def test_view_columns_checked_against_files(
    example_cfg: ProjectConfig, tiny_ws: Workspace, agg: Aggregate, expected: list[str]
) -> None:
    with pytest.raises(DataError) as err:
        check_sources(_with_agg(example_cfg, agg), tiny_ws.root)
    for piece in expected:
        assert piece in str(err.value)


def test_declared_type_mismatch(example_cfg: ProjectConfig, tiny_ws: Workspace) -> None:
    src = example_cfg.sources["transactions"]
    cols: dict[str, Any] = dict(src.columns) | {"amount": "string"}
    bad = example_cfg.model_copy(
        update={
            "sources": {
                **example_cfg.sources,
                "transactions": src.model_copy(update={"columns": cols}),
            }
        }
    )
    with pytest.raises(
        DataError, match=r"'amount' is double .* expected string.*declare `amount: double`"
    ):
        check_sources(bad, tiny_ws.root)


def test_missing_file_points_at_generate(example_cfg: ProjectConfig, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="insight data generate"):
        check_sources(example_cfg, tmp_path)


def test_pandas_parquet_types_pass_the_checks(
    example_cfg: ProjectConfig, tiny_ws: Workspace, tmp_path: Path
) -> None:
    """What pandas writes by default: nanosecond timestamps, ``category`` columns
    (dictionary-encoded), nullable integers. All are read as declared (they once failed
    the checks, with a fix that asked the user to rewrite the file)."""
    import shutil

    import pandas as pd

    ws = Workspace(tmp_path / ".insight").ensure()
    shutil.copytree(tiny_ws.data, ws.data, dirs_exist_ok=True)
    p = ws.data / "retail" / "labels.parquet"
    df = pd.read_parquet(p)
    df["label_time"] = df["label_time"].astype("datetime64[ns]")
    df["customer_id"] = df["customer_id"].astype("Int64")
    df.to_parquet(p, index=False)
    c = ws.data / "retail" / "customers.parquet"
    cust = pd.read_parquet(c)
    cust["region"] = cust["region"].astype("category")
    cust.to_parquet(c, index=False)
    check_sources(example_cfg, ws.root)


def test_an_unusable_type_names_a_fix_that_exists(
    example_cfg: ProjectConfig, tiny_ws: Workspace, tmp_path: Path
) -> None:
    import shutil

    import pandas as pd

    ws = Workspace(tmp_path / ".insight").ensure()
    shutil.copytree(tiny_ws.data, ws.data, dirs_exist_ok=True)
    c = ws.data / "retail" / "customers.parquet"
    cust = pd.read_parquet(c)
    cust["region"] = [[1, 2]] * len(cust)  # a list per row: no declared type reads it
    cust.to_parquet(c, index=False)
    with pytest.raises(DataError) as err:
        check_sources(example_cfg, ws.root)
    text = str(err.value)
    assert "'region' is list<element: int64>" in text and "cast it in the source to" in text
    assert "declare `region: list" not in text, "no fix that names a type the file cannot have"
