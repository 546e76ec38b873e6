"""Cluster profiles (engine.config.cluster): the local default, a profile applied to the project
(Spark master, workspace on the storage, MLflow server, Ray address), a cluster file the
project includes, ${VAR} expansion, and clear errors for what cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.config.project import DEFAULT_PROJECT
from engine.errors import ConfigError
from engine.project import open_project


def _project(tmp_path: Path, cluster: object) -> Path:
    raw = yaml.safe_load(Path(DEFAULT_PROJECT).read_text())
    raw["cluster"] = cluster
    p = tmp_path / "insight.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


def test_local_is_the_default_and_a_profile_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INSIGHT_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg, ws, prof = open_project(DEFAULT_PROJECT)
    assert prof.name == "local" and prof.is_local
    assert ws.tracking_uri.startswith("sqlite:///") and ws.ray_address is None
    assert cfg.features.spark_master == "local[2]"
    monkeypatch.setenv("HEAD", "10.1.2.3")
    p = _project(
        tmp_path,
        {
            "profiles": {
                "lab": {
                    "ray": "${HEAD}:6379",
                    "jobs": "http://${HEAD}:8265",
                    "spark": "spark://${HEAD}:7077",
                    "mlflow": "http://${HEAD}:5000",
                    "storage": str(tmp_path / "shared"),
                }
            }
        },
    )
    cfg, ws, prof = open_project(p, profile="lab")
    assert cfg.features.spark_master == "spark://10.1.2.3:7077"
    assert ws.root == tmp_path / "shared" / cfg.name and ws.root.is_dir()
    assert ws.tracking_uri == "http://10.1.2.3:5000" and ws.shared_tracking
    assert ws.ray_address == "10.1.2.3:6379" and prof.profile.jobs == "http://10.1.2.3:8265"
    monkeypatch.setenv("INSIGHT_PROFILE", "lab")
    assert open_project(p)[2].name == "lab"


def test_a_cluster_file_beside_the_project(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(
        yaml.safe_dump({"default": "lab", "profiles": {"lab": {"jobs": "http://h:8265"}}})
    )
    _, _, prof = open_project(_project(tmp_path, "cluster.yaml"), workspace=tmp_path / "w")
    assert prof.name == "lab" and prof.profile.jobs == "http://h:8265"


@pytest.mark.parametrize(
    ("cluster", "profile", "match"),
    [
        ({"profiles": {}}, "nope", "profile 'nope' is not defined .*local"),
        (
            {"profiles": {"x": {"spark": "sc://h:15002/;token=abc"}}},
            "x",
            "SPARK_CONNECT_AUTHENTICATE_TOKEN",
        ),
        ({"profiles": {"x": {"spark": "yarn"}}}, "x", "not a Spark master"),
        ({"profiles": {"x": {"storage": "s3://b/p"}}}, "x", "mount the bucket"),
        ({"profiles": {"x": {"storage": "rel/dir"}}}, "x", "absolute path"),
        ({"profiles": {"x": {"mlflow": "file:///x"}}}, "x", "MLflow server"),
        ({"profiles": {"x": {"ray": "${UNSET_VAR_FOR_TEST}:1"}}}, "x", "UNSET_VAR_FOR_TEST"),
        ({"profiles": {"x": {"rays": "h:1"}}}, "x", "rays"),
        ("missing.yaml", None, "cluster: file 'missing.yaml' does not exist"),
    ],
)
def test_clear_errors(tmp_path: Path, cluster: object, profile: str | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        open_project(_project(tmp_path, cluster), workspace=tmp_path / "w", profile=profile)
