"""The project file: loads, and every mistake names its YAML path, the value and a fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.config.project import ProjectConfig
from engine.errors import ConfigError
from tests.conftest import EXAMPLE


def _write(tmp_path: Path, data: Any) -> Path:
    p = tmp_path / "insight.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def _example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_loads() -> None:
    cfg = ProjectConfig.load(EXAMPLE)
    assert cfg.name == "retail"
    assert cfg.serve.host == "127.0.0.1"
    assert "gender" in cfg.feature_names() and cfg.sensitive == ["gender"]
    assert cfg.pii_columns("customers") == ["email"]
    assert "txn_count_7d" in cfg.feature_names() and "txn_count_90d" in cfg.feature_names()


def test_workspace_placeholder_and_relative_paths(tmp_path: Path) -> None:
    cfg = ProjectConfig.load(EXAMPLE)
    p = cfg.resolve_path(cfg.sources["labels"].path, tmp_path)
    assert p == tmp_path / "data" / "retail" / "labels.parquet"
    assert cfg.resolve_path("x.csv", tmp_path) == EXAMPLE.parent / "x.csv"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("label"), ["label", "required field is missing"]),
        (lambda d: d.update(colour="blue"), ["colour", "unknown field", "'blue'"]),
        (
            lambda d: d["label"].update(source="label"),
            ["label.source", "unknown source 'label'", "labels", "Fix"],
        ),
        (
            lambda d: d["label"].update(column="churn"),
            ["label.column", "'churn'", "churned", "Fix"],
        ),
        (
            lambda d: d["train"].update(num_samples="many"),
            ["train.num_samples", "'many'", "Fix"],
        ),
        (
            lambda d: d["features"]["views"][1]["aggregates"][0].update(windows=["7x"]),
            ["features.views.1.aggregates.0.windows", "'7x' is not a duration", "'7d'"],
        ),
        (
            lambda d: d["features"]["views"][1]["aggregates"][1].update(
                windows=["7d", "30d"], name="amount_sum"
            ),
            ["'amount_sum' is used for 2 windows", "{w}"],
        ),
        (
            lambda d: d["features"]["views"][0].update(source="shops"),
            ["features.views.0.source", "unknown source 'shops'"],
        ),
        (lambda d: d.update(sensitive=["sex"]), ["sensitive", "'sex'", "Fix"]),
        (lambda d: d.update(pii=["email"]), ["pii", "'email'", "source.column"]),
        (
            lambda d: d["features"]["views"][0].update(
                aggregates=[{"name": "n", "function": "count", "windows": ["7d"]}]
            ),
            ["need an event-time column", "customers"],
        ),
        (lambda d: d["serve"].update(port=70000), ["serve.port", "70000"]),
    ],
)
def test_errors_name_path_value_and_fix(tmp_path: Path, mutate: Any, expected: list[str]) -> None:
    d = _example()
    mutate(d)
    with pytest.raises(ConfigError) as err:
        ProjectConfig.load(_write(tmp_path, d))
    msg = str(err.value)
    assert str(tmp_path / "insight.yaml") in msg
    for piece in expected:
        assert piece in msg, f"{piece!r} not in:\n{msg}"


def test_not_yaml_and_not_mapping_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        ProjectConfig.load(_write(tmp_path, "name: [unclosed"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        ProjectConfig.load(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        ProjectConfig.load(tmp_path / "nope.yaml")
