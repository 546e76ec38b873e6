"""The CLI: stages listed, clear errors with non-zero exits and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import EXAMPLE

INSIGHT = [sys.executable, "-m", "engine.cli"]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INSIGHT, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def test_help_lists_the_stages() -> None:
    r = _run("--help")
    assert r.returncode == 0
    for stage in ("demo", "features", "train", "serve", "drift", "clean", "data", "validate"):
        assert stage in r.stdout


def test_bad_project_file_exits_2_with_message(tmp_path: Path) -> None:
    d = yaml.safe_load(EXAMPLE.read_text())
    d["label"]["source"] = "label"
    p = tmp_path / "insight.yaml"
    p.write_text(yaml.safe_dump(d))
    r = _run("validate", "--project", str(p))
    out = r.stdout + r.stderr
    assert r.returncode == 2
    assert "label.source" in out and "unknown source 'label'" in out and "Fix" in out
    assert "Traceback" not in out


def test_missing_data_and_missing_snapshot_are_clear(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    r = _run("validate", "--workspace", str(ws))
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "does not exist" in out and "insight data generate" in out
    assert "Traceback" not in out
    r = _run("drift", "--workspace", str(ws))
    out = r.stdout + r.stderr
    assert r.returncode == 3 and "no feature snapshot" in out and "Traceback" not in out


def test_generate_then_clean(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    r = _run("data", "generate", "--size", "tiny", "--workspace", str(ws))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (ws / "data" / "retail" / "ground_truth.json").is_file()
    r = _run("data", "generate", "--size", "huge", "--workspace", str(ws))
    assert r.returncode == 2 and "--size 'huge' is unknown" in r.stdout + r.stderr
    r = _run("clean", "--yes", "--workspace", str(ws))
    assert r.returncode == 0 and not ws.exists()


def test_clean_refuses_a_folder_that_is_not_a_workspace(tmp_path: Path) -> None:
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "thesis.tex").write_text("do not delete")
    r = _run("clean", "--yes", "--workspace", str(victim))
    assert r.returncode == 2 and "refusing to delete" in r.stdout + r.stderr
    assert (victim / "thesis.tex").exists()


def test_serve_up_without_a_model_fails_fast_with_the_fix(tmp_path: Path) -> None:
    r = _run("serve", "up", "--workspace", str(tmp_path / "ws"))
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0
    assert "no model 'retail-churn' with alias 'champion'" in out and "insight train" in out
    assert "Traceback" not in out
    assert not (tmp_path / "ws" / "serve" / "state.json").exists()


def test_serve_status_and_down_when_not_up(tmp_path: Path) -> None:
    s = _run("serve", "status", "--workspace", str(tmp_path / "ws"))
    assert s.returncode == 1 and "not up" in s.stdout
    d = _run("serve", "down", "--workspace", str(tmp_path / "ws"))
    assert d.returncode == 0 and "was not up" in d.stdout


def test_audit_verify_without_a_log(tmp_path: Path) -> None:
    r = _run("audit", "verify", "--path", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "no audit folder" in r.stdout
