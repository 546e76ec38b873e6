"""A user's ~/.ray/auth_token (Ray 2.60 writes one on any plain `ray.init()`) must not break
the engine's local Ray. Ray reads RAY_AUTH_MODE when it is imported; the engine used to set
it later, so the GCS it started demanded a token its own client did not send
("InvalidAuthToken ... RAY_AUTH_MODE is currently 'disabled'"). Regression test, both import
orders, each in a fresh process with a home folder of its own."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray]
ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
if sys.argv[1] == "ray-first":
    import ray  # a user's script that imports Ray before the engine
from engine.raycluster import start_ray, stop_ray
from engine.workspace import Workspace
import ray
start_ray(Workspace(__import__("pathlib").Path(sys.argv[2])).ensure(), num_cpus=1,
          object_store_mb=100)
print("answer", ray.get(ray.put(41)) + 1)
stop_ray()
"""


def _run(
    env: dict[str, str], cwd: Path, script: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh Python process (its own environment and working folder)."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.parametrize("order", ["engine-first", "ray-first"])
def test_a_token_file_in_home_does_not_break_the_local_ray(order: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
    r = _run(env, tmp_path, SCRIPT, order, str(tmp_path / ".insight"))
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "answer 42" in r.stdout, out[-3000:]
    assert "InvalidAuthToken" not in out


SLOW_START = """
import sys
import psutil
from engine.raycluster import start_ray, stop_ray
from engine.workspace import Workspace
import ray
import ray._private.node as node

real = node.Node.__init__
calls = []


def slow_first(self, *a, **k):  # the first node starts, then misses Ray's 30 s limit
    real(self, *a, **k)
    if not calls:
        calls.append(self._session_dir)
        raise Exception("The current node timed out during startup. This could happen "
                        "because some of the raylet failed to startup or the GCS has "
                        "become overloaded.")


node.Node.__init__ = slow_first
start_ray(Workspace(__import__("pathlib").Path(sys.argv[1])).ensure(), num_cpus=1,
          object_store_mb=100)
print("answer", ray.get(ray.put(41)) + 1)
left = [p for p in psutil.Process().children(recursive=True)
        if calls[0] in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE]
print("first node's processes left", len(left))
stop_ray()
"""


def test_a_node_that_misses_rays_start_limit_is_ended_and_started_again(tmp_path: Path) -> None:
    """Ray gives a new node a fixed 30 s to register; on a loaded 2-core machine it once
    missed it ("The current node timed out during startup"). The engine ends the half-started
    node's processes and starts once more."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
    r = _run(env, tmp_path, SLOW_START, str(tmp_path / ".insight"))
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "answer 42" in r.stdout, out[-3000:]
    assert "first node's processes left 0" in r.stdout, out[-3000:]
    assert "starting it again (attempt 2 of 2)" in out, out[-3000:]
