"""The CLI: stages listed, clear errors with non-zero exits and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLE

INSIGHT = [sys.executable, "-m", "engine.cli"]
pytestmark = pytest.mark.process


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


def test_usage_errors_are_the_users_not_internal_errors() -> None:
    """Regression: typer vendors click, so an unknown command escaped the ClickException
    handler and was reported as 'internal error ... a bug in Insight Engine'."""
    for args, words in (
        (["init"], "No such command 'init'"),
        (["train", "--bogus"], "No such option: --bogus"),
        (["data", "generate", "--size"], "requires an argument"),
    ):
        r = _run(*args)
        out = r.stdout + r.stderr
        assert r.returncode == 2, (args, out)
        assert (words in out and "Usage:" in out) or "Error:" in out, (args, out)
        assert "internal error" not in out and "Traceback" not in out, (args, out)


def _texts() -> dict[Path, str]:
    """Everything a user reads a hint or a command in: code strings and docs."""
    root = Path(__file__).resolve().parent.parent
    files = [
        *sorted(root.glob("engine/**/*.py")),
        *sorted(root.glob("serve/**/*.py")),
        *sorted(root.glob("jobs/**/*.py")),
        *sorted(root.glob("benchmarks/*.py")),
        root / "README.md",
        *sorted((root / "cluster").glob("*.md")),
        *sorted((root / "examples").glob("**/*.yaml")),
    ]
    return {f: f.read_text() for f in files if f.is_file()}


def _check_command(words: list[str]) -> str | None:
    """None if ``insight WORDS`` names an existing command with existing options."""
    import typer.main

    from engine.cli import app

    cmd = typer.main.get_command(app)
    expect_value = False
    for w in words:
        if expect_value:
            expect_value = False
            continue
        if w in ("...", "|") or w.isupper() or w.startswith(("<", "[", "{", "$")):
            continue
        if w.startswith("-"):
            name = w.split("=", 1)[0]
            opts = {o: p for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
            if name not in opts and name != "--help":
                return f"'{' '.join(words)}': {cmd.name} has no option {name}"
            p = opts.get(name)
            expect_value = p is not None and not getattr(p, "is_flag", False) and "=" not in w
            continue
        sub = getattr(cmd, "commands", None)
        if sub is not None:
            if w not in sub:
                return f"'{' '.join(words)}': no command '{w}' under '{cmd.name}'"
            cmd = sub[w]
        # else: a positional argument's value
    return None


def test_every_insight_command_named_in_hints_and_docs_exists() -> None:
    """A fix hint is tested like code: every `insight ...` in backticks (code strings and
    docs) resolves to a real command with real options, and every repo path a text names
    exists. (Regression: hints named `insight features --list` and serve/config.yaml.)"""
    import re
    import shlex

    root = Path(__file__).resolve().parent.parent
    seen, problems = 0, []
    for f, text in _texts().items():
        for m in re.finditer(r"`(insight(?: [^`\n]*)?)`", text):
            cmdline = m.group(1).split(";")[0].split("&&")[0]
            for part in cmdline.split(" | "):
                if part.strip() != "insight" and not part.strip().startswith("insight "):
                    continue  # prose between two commands
                words = shlex.split(part.strip().removeprefix("insight").strip() or "--help")
                seen += 1
                if (err := _check_command(words)) is not None:
                    problems.append(f"{f.relative_to(root)}: {err}")
        for m in re.finditer(
            r"(?<![\w/.])((?:engine|serve|jobs|examples|cluster|benchmarks|tests)/[\w./-]*\w)",
            text,
        ):
            rel = m.group(1)
            if text[m.end() : m.end() + 1] in ("*", "{", "<"):
                continue  # a pattern such as benchmarks/bench_*.py
            if not (root / rel).exists():
                problems.append(f"{f.relative_to(root)}: names {rel}, which does not exist")
    assert seen > 20, "the scan found the hints"
    assert not problems, "\n".join(problems)


def test_empty_drift_window_is_a_user_error(tmp_path: Path) -> None:
    """Regression: an empty reference window raised a plain ValueError (internal error)."""
    import json

    import pandas as pd

    from engine.config.project import ProjectConfig
    from engine.errors import DataError
    from engine.stages.drift import stage_drift
    from engine.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    snap_dir = ws.features / "retail" / "abc123"
    snap_dir.mkdir(parents=True)
    pd.DataFrame(
        {
            "customer_id": [1, 2],
            "label_time": pd.to_datetime(["2025-12-01", "2025-12-02"]),
            "churned": [0, 1],
            "age": [30.0, 40.0],
        }
    ).to_parquet(snap_dir / "part-0.parquet")
    (snap_dir / "manifest.json").write_text(
        json.dumps(
            {
                "snapshot_id": "abc123",
                "created_at": "2026-01-01",
                "event_time_range": ["2025-12-01", "2025-12-02"],
                "label_time": "label_time",
            }
        )
    )
    cfg = ProjectConfig.load(EXAMPLE)
    with pytest.raises(DataError, match=r"reference window .* is empty") as e:
        stage_drift(cfg, ws)
    assert "Fix:" in str(e.value) and "2025-12-01" in str(e.value)


def test_demo_command_reaches_the_demo_stage(tmp_path: Path) -> None:
    """`insight demo` (what `make demo` runs) and jobs/demo.py run one stage
    (engine.demo.run); the full run is tests/test_demo_e2e.py. Here: the CLI wiring, up to
    the stage's first check."""
    r = _run("demo", "--size", "bogus", "--workspace", str(tmp_path / "ws"))
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "--size 'bogus' is unknown" in out, out
    assert "1/9 sample data" in out and "Traceback" not in out
