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
    with pytest.raises(ConfigError, match="not one of viewer, operator, admin"):
        add_token(tmp_path, "cy", "root")
    with pytest.raises(ConfigError, match="letters, digits"):
        add_token(tmp_path, "a b", "viewer")
    revoke_token(tmp_path, "ana")
    assert holder(load_tokens(tmp_path), a) is None
    with pytest.raises(StateError, match="no token named 'ana'"):
        revoke_token(tmp_path, "ana")
    assert [v["name"] for v in json.loads(p.read_text()).values()] == ["ben"]
