"""The cluster manifests validate offline, strictly:

- the launcher YAMLs (cluster/launcher/) against the schema Ray ships
  (ray/autoscaler/ray-schema.json);
- the KubeRay RayCluster, RayJob and RayService (cluster/kuberay/) against KubeRay v1.7's
  CRD schemas (../shared/kuberay-crds/), with ``additionalProperties: false`` added wherever
  a schema lists properties, so a misspelled field fails as the API server would prune it;
- the Serve config inside the RayService against Ray's Serve schema and the app's own
  settings model;

and negative fixtures (a misspelled field, an integer in rayStartParams, a missing
maxReplicas, a bad launcher key, a Serve app without import_path) fail."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT.parent / "shared" / "kuberay-crds"
KUBERAY = ROOT / "cluster" / "kuberay"
LAUNCHER = ROOT / "cluster" / "launcher"
KINDS = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayService": "rayservices"}


def _strict(node: Any) -> Any:
    """The CRD schema with unknown fields rejected (except where Kubernetes keeps them)."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(x) for x in node]
    return node


@cache
def crd_schema(kind: str) -> dict[str, Any]:
    path = CRDS / f"ray.io_{KINDS[kind]}.yaml"
    if not path.is_file():
        pytest.fail(f"KubeRay CRDs not found at {CRDS} (they live beside the repository)")
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    v1 = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(v1["schema"]["openAPIV3Schema"])
    # metadata is an ObjectMeta the CRD leaves open: the fields a manifest may set.
    schema["properties"]["metadata"] = {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "maxLength": 63},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    return schema


def errors(manifest: dict[str, Any]) -> list[str]:
    v = jsonschema.Draft7Validator(crd_schema(manifest["kind"]))
    return sorted(
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message[:200]}"
        for e in v.iter_errors(manifest)
    )


def load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((KUBERAY / name).read_text()))


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob-train.yaml", "rayservice.yaml"])
def test_kuberay_manifests_validate_strictly(name: str) -> None:
    m = load(name)
    assert m["apiVersion"] == "ray.io/v1"
    assert errors(m) == []


def _cluster_spec(m: dict[str, Any]) -> dict[str, Any]:
    return dict(
        {
            "RayCluster": m["spec"],
            "RayJob": m["spec"].get("rayClusterSpec"),
            "RayService": m["spec"].get("rayClusterConfig"),
        }[m["kind"]]
    )


def test_manifests_pin_the_projects_ray_and_agree() -> None:
    import ray

    specs = [_cluster_spec(load(n)) for n in KUBERAY.glob("*.yaml")]
    assert len(specs) == 3
    for s in specs:
        assert s["rayVersion"] == ray.__version__
        images = {
            c["image"]
            for g in [s["headGroupSpec"], *s["workerGroupSpecs"]]
            for c in g["template"]["spec"]["containers"]
        }
        assert images == {"REGISTRY/insight-engine:0.1.0"}
    assert all(s == specs[0] for s in specs), "one cluster spec in all three"
    job = load("rayjob-train.yaml")
    assert len(job["metadata"]["name"]) <= 47, "KubeRay: RayJob names at most 47 characters"
    assert job["spec"]["entrypoint"].startswith("python jobs/train.py ")
    dockerfile = (ROOT / "cluster" / "Dockerfile").read_text()
    assert f"rayproject/ray:{ray.__version__}-py311" in dockerfile


def _broken(name: str, how: str) -> dict[str, Any]:
    m = copy.deepcopy(load(name))
    spec = _cluster_spec(m)
    if how == "misspelled field":
        spec["workerGroupSpecs"][0]["maxReplica"] = spec["workerGroupSpecs"][0].pop("maxReplicas")
    elif how == "missing maxReplicas":
        del spec["workerGroupSpecs"][0]["maxReplicas"]
    elif how == "integer in rayStartParams":
        spec["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    if m["kind"] == "RayCluster":
        m["spec"] = spec
    elif m["kind"] == "RayJob":
        m["spec"]["rayClusterSpec"] = spec
    else:
        m["spec"]["rayClusterConfig"] = spec
    if how == "unknown top-level field":
        m["spec"]["serveConfig"] = "x"
    return m


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob-train.yaml", "rayservice.yaml"])
@pytest.mark.parametrize(
    ("how", "expect"),
    [
        ("misspelled field", "'maxReplica' was unexpected"),
        ("missing maxReplicas", "'maxReplicas' is a required property"),
        ("integer in rayStartParams", "0 is not of type 'string'"),
        ("unknown top-level field", "'serveConfig' was unexpected"),
    ],
)
def test_broken_manifests_fail(name: str, how: str, expect: str) -> None:
    errs = errors(_broken(name, how))
    assert any(expect in e for e in errs), errs


def test_the_serve_config_in_the_rayservice_is_valid() -> None:
    from ray.serve.schema import ServeDeploySchema

    from serve.settings import ServeSettings

    raw = yaml.safe_load(load("rayservice.yaml")["spec"]["serveConfigV2"])
    cfg = ServeDeploySchema.model_validate(raw)
    (app,) = cfg.applications
    assert app.import_path == "serve.app:build_app"
    s = ServeSettings.parse(app.args)
    assert s.tracking_uri.startswith("http") and s.audit_dir.startswith("/mnt/insight/")
    assert "admin_token" not in json.dumps(raw).replace("admin_token_sha256", "")
    bad = copy.deepcopy(raw)
    del bad["applications"][0]["import_path"]
    with pytest.raises(Exception, match="import_path"):
        ServeDeploySchema.model_validate(bad)
    bad = copy.deepcopy(raw)
    bad["applications"][0]["args"]["threshold"] = 2.0
    with pytest.raises(Exception, match="threshold"):
        ServeSettings.parse(bad["applications"][0]["args"])


@cache
def ray_schema() -> dict[str, Any]:
    import ray.autoscaler

    return dict(json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text()))


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_configs_validate_against_rays_schema(name: str) -> None:
    import ray

    cfg = yaml.safe_load((LAUNCHER / name).read_text())
    jsonschema.validate(cfg, ray_schema())
    assert cfg["provider"]["type"] == name.removesuffix(".yaml")
    assert cfg["file_mounts"] == {"~/insight": "."}, "code from the checkout, no machine path"
    assert ray.__version__ == "2.60.0"


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (lambda c: c.update(max_worker=3), "'max_worker' was unexpected"),
        (lambda c: c["provider"].pop("type"), "'type' is a required property"),
        (lambda c: c["available_node_types"]["head"].pop("resources"), "'resources' is a required"),
    ],
)
def test_broken_launcher_configs_fail(change: Any, expect: str) -> None:
    cfg = yaml.safe_load((LAUNCHER / "aws.yaml").read_text())
    change(cfg)
    with pytest.raises(jsonschema.ValidationError, match=expect):
        jsonschema.validate(cfg, ray_schema())
