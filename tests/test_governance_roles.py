"""Named tokens with roles: only hashes kept (file mode 0600), found by constant-time
comparison, bad names and roles named, revocation."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from engine.errors import ConfigError, StateError
from engine.governance.roles import Role, add_token, holder, load_tokens, revoke_token


def test_tokens_are_kept_as_hashes_and_found_with_their_role(tmp_path: Path) -> None:
    a = add_token(tmp_path, "ana", "operator")
    b = add_token(tmp_path, "ben", "Viewer")
    p = tmp_path / "secrets" / "tokens.json"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert a not in p.read_text() and b not in p.read_text()
    toks = load_tokens(tmp_path)
    assert holder(toks, a) == ("ana", Role.OPERATOR) and holder(toks, b) == ("ben", Role.VIEWER)
    assert holder(toks, a + "x") is None and holder(toks, "") is None
    assert holder(toks, "pässwörd-ünïcode") is None  # non-ASCII: no match, no error
    assert Role.ADMIN > Role.OPERATOR > Role.VIEWER
    with pytest.raises(ConfigError, match="exists"):
        add_token(tmp_path, "ana", "admin")
    with pytest.raises(ConfigError, match="not one of viewer, reviewer, operator, admin"):
        add_token(tmp_path, "cy", "root")
    with pytest.raises(ConfigError, match="letters, digits"):
        add_token(tmp_path, "a b", "viewer")
    revoke_token(tmp_path, "ana")
    assert holder(load_tokens(tmp_path), a) is None
    with pytest.raises(StateError, match="no token named 'ana'"):
        revoke_token(tmp_path, "ana")
    assert [v["name"] for v in json.loads(p.read_text()).values()] == ["ben"]


def test_once_tokens_exist_state_changing_commands_need_one_with_the_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from engine.audit.verify import read_records
    from engine.cli import app
    from engine.errors import PolicyError

    ex = str(Path(__file__).resolve().parent.parent / "examples" / "retail" / "insight.yaml")
    where = ["--project", ex, "--workspace", str(tmp_path / ".insight")]
    run = CliRunner().invoke
    grant = ["consent", "grant", "-s", "C1", "--purpose", "marketing", *where]
    monkeypatch.delenv("INSIGHT_TOKEN", raising=False)
    assert run(app, [*grant, "--by", "solo"]).exit_code == 0, "no tokens: one person's"
    r = run(app, ["tokens", "add", "--name", "root", "--role", "admin", *where])
    assert r.exit_code == 0, r.output
    admin = r.output.split("shown once:")[1].split()[0]
    r = run(app, grant)
    assert isinstance(r.exception, PolicyError) and "set INSIGHT_TOKEN" in str(r.exception)
    monkeypatch.setenv("INSIGHT_TOKEN", admin)
    r = run(app, ["tokens", "add", "--name", "vera", "--role", "viewer", *where])
    viewer = r.output.split("shown once:")[1].split()[0]
    r = run(app, ["tokens", "add", "--name", "otto", "--role", "operator", *where])
    operator = r.output.split("shown once:")[1].split()[0]
    monkeypatch.setenv("INSIGHT_TOKEN", viewer)
    r = run(app, grant)
    assert isinstance(r.exception, PolicyError) and "'vera' holds the role viewer" in str(
        r.exception
    )
    r = run(app, ["tokens", "revoke", "--name", "otto", *where])
    assert isinstance(r.exception, PolicyError), "revoking needs admin"
    monkeypatch.setenv("INSIGHT_TOKEN", operator)
    assert run(app, [*grant, "--by", "someone-else"]).exit_code == 0
    recs = list(read_records(tmp_path / ".insight" / "audit" / "control", kind="consent"))
    assert [x["by"] for x in recs] == ["solo", "otto"], "the token's holder, not --by"
