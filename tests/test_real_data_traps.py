"""Wrong answers that real tables caused, caught without Spark (issue 20): keys that repeat,
leaking columns, label horizons, a CSV without its format, and the smaller traps. Each test
uses a generated table shaped like the case and fails on the old code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.config import ProjectConfig
from engine.data.init import plan
from engine.data.project_file import render
from engine.data.sources import check_sources
from engine.errors import DataError
from tests.tables import write_csv


def _accounts(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "account": [f"A{i:05d}" for i in range(n)],
            "plan": rng.choice(["basic", "pro"], n),
            "usage": np.round(rng.gamma(2.0, 3.0, n), 2),
            "churned": rng.choice(["yes", "no"], n),
        }
    )


def _load(tmp: Path, df: pd.DataFrame, label: str, **kw: str) -> tuple[ProjectConfig, Path]:
    table = write_csv(df, tmp / "table.csv")
    (tmp / "insight.yaml").write_text(render(plan(table, label, **kw)))
    return ProjectConfig.load(tmp / "insight.yaml"), table


def test_validate_names_a_repeated_key_and_its_largest_group(tmp_path: Path) -> None:
    df = _accounts()
    cfg, table = _load(tmp_path, df, "churned", key="account")
    check_sources(cfg, tmp_path)  # unique: fine
    # The file changes after init: account A00007 now appears three times, A00009 twice.
    worse = pd.concat([df, df.iloc[[7, 7, 9]]])
    worse.to_csv(table, index=False)
    with pytest.raises(DataError) as e:
        check_sources(cfg, tmp_path)
    msg = str(e.value)
    assert "'account' must be unique in the label rows" in msg
    assert (
        "3 rows repeat one already seen (2 repeated key(s); the largest group: account=A00007, 3 rows)"
        in msg
    )
    assert "Fix:" in msg and "row_id" in msg


def test_a_number_key_that_reads_the_same_is_a_repeat(tmp_path: Path) -> None:
    """'01' and '1' are one key once the build reads the column as a number."""
    df = _accounts(50)
    df["account"] = [str(i) for i in range(50)]
    cfg, table = _load(tmp_path, df, "churned", key="account")
    assert cfg.sources["table"].columns["account"] == "int"
    text = table.read_text().splitlines()
    text.append(text[8].replace("7,", "07,", 1))  # account 7 again, written '07'
    table.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"largest group: account=7\.0, 2 rows|account=7, 2 rows"):
        check_sources(cfg, tmp_path)


def test_label_rows_that_repeat_a_key_and_time(tmp_path: Path) -> None:
    rows = []
    for c in range(40):
        for m in range(3):
            rows.append(
                {
                    "cust_id": f"c{c}",
                    "month": f"2025-0{m + 1}-01",
                    "spend": c + m,
                    "y": "no" if c % 3 else "yes",
                }
            )
    df = pd.DataFrame(rows)
    cfg, table = _load(tmp_path, df, "y", key="cust_id", time="month")
    pd.concat([df, df.iloc[[4]]]).to_csv(table, index=False)
    with pytest.raises(DataError, match=r"'cust_id' and 'month' must be unique per label time"):
        check_sources(cfg, tmp_path)


def test_init_counts_identical_rows_of_a_table_without_id(tmp_path: Path) -> None:
    df = _accounts(200).drop(columns=["account"])
    df = pd.concat([df, df.iloc[[1, 1, 2]]])
    p = plan(write_csv(df, tmp_path / "t.csv"), "churned")
    assert p.row_id and p.key == "row_id"
    sizes = df.astype(str).groupby(list(df.columns)).size()  # pandas as the oracle
    rep = sizes[sizes > 1]
    assert rep.max() == 3 and len(rep) >= 2
    want = f"{rep.sum()} rows fall in {len(rep)} groups of identical rows (the largest: 3 rows)"
    assert want in p.key_note


def _without_format(cfg_path: Path, new_path: str | None = None) -> None:
    import yaml

    raw = yaml.safe_load(cfg_path.read_text())
    src = raw["sources"]["table"]
    src.pop("format", None)
    if new_path:
        src["path"] = new_path
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_a_csv_source_without_format_is_read_as_csv(tmp_path: Path) -> None:
    """Regression: a .csv path without `format: csv` was read as Parquet, and validate
    crashed with 'Parquet magic bytes not found ... a bug in Insight Engine'."""
    _, table = _load(tmp_path, _accounts(), "churned", key="account")
    _without_format(tmp_path / "insight.yaml")
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    assert cfg.sources["table"].format == "csv"
    check_sources(cfg, tmp_path)
    # No telling extension: the first bytes decide.
    table.rename(tmp_path / "export.dat")
    _without_format(tmp_path / "insight.yaml", "export.dat")
    cfg = ProjectConfig.load(tmp_path / "insight.yaml")
    assert cfg.sources["table"].format == "csv"
    check_sources(cfg, tmp_path)


def test_a_file_that_is_not_its_format_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from tests.test_init import _insight

    _load(tmp_path, _accounts(), "churned", key="account")
    raw = yaml.safe_load((tmp_path / "insight.yaml").read_text())
    raw["sources"]["table"]["format"] = "parquet"
    (tmp_path / "insight.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    project, ws = str(tmp_path / "insight.yaml"), str(tmp_path / "ws")
    code, text = _insight(capsys, "validate", "--project", project, "--workspace", ws)
    assert code != 0
    assert "not a Parquet file" in text and "format: csv" in text and "bug" not in text


def test_predict_names_how_many_fields_are_missing_and_hints_at_entities(
    example_cfg: ProjectConfig,
) -> None:
    """Regression: the missing-field list stopped at five names without saying how many
    more, and a raw transaction sent to /predict got no word about `entities`."""
    from fastapi import HTTPException

    from engine.train.schema import FeatureSpec, InputSchema
    from serve.deploy import row_fields
    from serve.inputs import rows_frame

    feats = [f for f in example_cfg.feature_names() if f != "gender"]
    cats = {"region", "plan"}
    schema = InputSchema(
        tuple(FeatureSpec(f, "categorical" if f in cats else "numeric") for f in feats)
    )
    fields = row_fields(example_cfg)
    event = {"customer_id": 17, "txn_time": "2025-09-01T10:00:00", "amount": 12.5, "channel": "app"}
    with pytest.raises(HTTPException) as e:
        rows_frame([event], schema, fields)
    msg = str(e.value.detail)
    assert e.value.status_code == 422
    assert f"and {len(feats) - 5} more ({len(feats)} in all)" in msg
    assert "['amount', 'channel', 'txn_time']" in msg and '{"entities"' in msg
    assert "insight features materialize" in msg
    # A row of features with one missing: no event hint, the one name.
    row = dict.fromkeys(feats[1:], 1.0) | {"region": "north", "plan": "basic"}
    with pytest.raises(HTTPException) as e:
        rows_frame([row], schema, fields)
    assert str(e.value.detail).startswith(f"rows[0]: missing field(s) ['{feats[0]}']")
    assert "event table" not in str(e.value.detail)
