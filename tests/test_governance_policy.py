"""Policy as code (Rego through regopy): default deny, the engine's obligations, a project's
own rules, a malformed file named with its line, decisions cached per input."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.governance.policy import PolicySet

DATA = {
    "purposes": {"training": "model_training", "serving": "profiling", "targeting": "marketing"},
    "consent_declared": True,
}


def test_the_engines_policy_allows_declared_uses_with_their_obligations() -> None:
    ps = PolicySet.load(data=DATA)
    d = ps.decide("train", "model_training", pii=["email"])
    assert d.allow and d.deny == ()
    assert d.consent_purposes() == ["model_training"] and d.columns("hash") == ["email"]
    assert ps.decide("serve", "profiling", pii=[]).consent_purposes() == ["profiling"]
    no_consent = PolicySet.load(data={**DATA, "consent_declared": False})
    assert no_consent.decide("serve", "profiling").consent_purposes() == []


@pytest.mark.parametrize(
    ("action", "purpose", "why"),
    [
        ("train", "spam", "purpose spam is not one the project declares"),
        ("sell", "marketing", "action sell is not a use"),
    ],
)
def test_undeclared_purposes_and_unknown_actions_are_denied(
    action: str, purpose: str, why: str
) -> None:
    d = PolicySet.load(data=DATA).decide(action, purpose)
    assert d.allow is False and why in d.reason()


def test_a_policy_that_decides_nothing_denies(tmp_path: Path) -> None:
    """Default deny: a policy with no rule for the query (undefined) is a denial, never an
    allowance (the STACK note: regopy can return undefined where OPA gives false)."""
    ps = PolicySet({"x.rego": "package somewhere.else\n\nimport rego.v1\n\nx := 1\n"}, {})
    ps._compile()
    d = ps.decide("train", "model_training")
    assert d.allow is False and "no decision" in d.reason()


def test_a_projects_rules_add_denials_and_obligations(tmp_path: Path) -> None:
    (tmp_path / "ours.rego").write_text(
        """package insight.governance

import rego.v1

deny contains "exports need the admin role" if {
	input.action == "export"
	input.role != "admin"
}

obligations contains {"kind": "drop", "column": "date_of_birth"} if input.action == "train"
"""
    )
    ps = PolicySet.load(tmp_path, DATA)
    assert not ps.decide("export", "profiling", role="viewer").allow
    assert ps.decide("export", "profiling", role="admin").allow
    assert ps.decide("train", "model_training").columns("drop") == ["date_of_birth"]
    assert ps.version != PolicySet.load(data=DATA).version  # a change is a new version


def test_a_malformed_policy_is_named_with_its_line_before_anything_runs(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.rego").write_text(
        "package insight.governance\n\nimport rego.v1\n\ndeny contains 1 if {\n  input.a == \n}\n"
    )
    with pytest.raises(ConfigError, match=r"bad.rego, line 6: Invalid boolean operator"):
        PolicySet.load(tmp_path, DATA)
    assert "Errors" not in capfd.readouterr().out  # rego-cpp's own print is kept quiet
    with pytest.raises(ConfigError, match=r"no \.rego file"):
        PolicySet.load(tmp_path / "nothing-here", DATA)


def test_decisions_are_cached_per_input_and_equal_an_evaluation() -> None:
    ps = PolicySet.load(data=DATA)
    a = ps.decide("serve", "profiling", pii=["email"], role=None)
    assert ps.decide("serve", "profiling", pii=["email"], role=None) is a
    assert ps.evaluate_uncached("serve", "profiling", pii=["email"], role=None) == a
    assert ps.decide("serve", "profiling", pii=[], role=None) != a


def _project(tmp_path: Path, rego: str | None) -> tuple[object, object]:
    from engine.config.governance import GovernanceConfig
    from engine.config.project import ProjectConfig
    from engine.workspace import Workspace

    ex = Path(__file__).resolve().parent.parent / "examples" / "retail" / "insight.yaml"
    cfg = ProjectConfig.load(ex)
    pol = None
    if rego is not None:
        pol = tmp_path / "ours.rego"
        pol.write_text("package insight.governance\n\nimport rego.v1\n\n" + rego)
    ws = Workspace(tmp_path / ".insight").ensure()
    cfg = cfg.model_copy(
        update={
            "workspace": str(ws.root),
            "governance": GovernanceConfig(policy=str(pol) if pol else None),
        }
    )
    return cfg, ws


@pytest.mark.parametrize(
    ("rego", "message"),
    [
        ('deny contains "no snapshots this week" if input.action == "snapshot"\n',
         "no snapshots this week"),
        ('obligations contains {"kind": "hash", "column": "age"} if true\n',
         r"says to hash \['age'\], which the project does not mark as PII"),
        ('obligations contains {"kind": "drop", "column": "amount"} if true\n',
         r"says to drop \['amount \(view txn\)'\]"),
    ],
)  # fmt: skip
def test_a_snapshot_build_the_policy_forbids_reads_nothing(
    tmp_path: Path, rego: str, message: str
) -> None:
    from engine.errors import PolicyError
    from engine.stages.features import stage_features

    cfg, ws = _project(tmp_path, rego)
    with pytest.raises(PolicyError, match=message):
        stage_features(cfg, ws)  # type: ignore[arg-type]
    assert not list((ws.root / "features").glob("*/*")), "nothing built"  # type: ignore[attr-defined]


def test_a_policy_change_is_an_audit_record_once(tmp_path: Path) -> None:
    from engine.audit.verify import read_records, verify
    from engine.governance.enforce import decide, policy_of

    cfg, ws = _project(tmp_path, None)
    root = ws.root  # type: ignore[attr-defined]
    for _ in range(3):
        decide(cfg, "train", "model_training", root=root)  # type: ignore[arg-type]
    v1 = policy_of(cfg).version  # type: ignore[arg-type]
    cfg2, _ = _project(tmp_path, 'deny contains "x" if input.action == "export"\n')
    decide(cfg2, "train", "model_training", root=root)  # type: ignore[arg-type]
    decide(cfg2, "train", "model_training", root=root)  # type: ignore[arg-type]
    ctl = root / "audit" / "control"
    recs = list(read_records(ctl, kind="policy"))
    assert [(r["event"], r["from"]) for r in recs] == [("in force", None), ("changed", v1)]
    assert recs[1]["to"] == policy_of(cfg2).version != v1  # type: ignore[arg-type]
    assert "project/ours.rego" in recs[1]["files"] and verify(ctl).ok
