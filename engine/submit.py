"""Submitting the engine's jobs to a Ray cluster (Ray Jobs API) and following them.

``submit`` uploads the engine's code (this checkout, less ``profile.excludes``) and the
project file as the job's working directory, and runs ``<python> jobs/<job>.py --project
... --profile ...`` there with the interpreter the cluster's nodes have on their PATH
(``profile.python``). Credentials are not shipped: the cluster's nodes hold their own
(``RAY_AUTH_TOKEN``, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``) in their environment.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from engine.config.cluster import Resolved
from engine.errors import ConfigError, ServiceError

ROOT = Path(__file__).resolve().parent.parent

#: job name -> (script relative to the checkout, what it does)
JOBS: dict[str, tuple[str, str]] = {
    "train": ("jobs/train.py", "search, register @challenger, model card (--gate: the gate)"),
    "features": ("jobs/features.py", "build (or reuse) the feature snapshot on Spark"),
    "monitor": ("jobs/monitor.py", "one monitor run over the audit log (--every: a loop)"),
    "score": ("jobs/score.py", "batch scoring with Ray Data into Parquet"),
    "bench": ("benchmarks/run.py", "the benchmarks, results written under the workspace"),
}
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class JobError(ServiceError):
    """A submitted job failed or the cluster refused it."""


@dataclass
class Submitted:
    job_id: str
    address: str
    entrypoint: str
    status: str = "PENDING"
    seconds: float = 0.0


def _client(prof: Resolved) -> Any:
    from engine.raycluster import ray_env

    ray_env()
    if not prof.profile.jobs:
        raise ConfigError(
            f"profile '{prof.name}' names no Ray Jobs address. Fix: add `jobs: "
            "http://HEAD:8265` to the profile (the head's dashboard address)."
        )
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(prof.profile.jobs)
    except Exception as exc:  # connection refused, auth, version: say where and why
        raise JobError(
            f"cannot reach the Ray Jobs API at {prof.profile.jobs} (profile '{prof.name}'): "
            f"{str(exc).splitlines()[0][:300]}. Fix: check the head is up and the address; "
            "with token auth export RAY_AUTH_TOKEN."
        ) from None


def _ignore(excludes: list[str]) -> Callable[[str, list[str]], set[str]]:
    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).relative_to(ROOT)
        out = set()
        for n in names:
            path = str(rel / n) if str(rel) != "." else n
            if any(fnmatch(path, e) or fnmatch(n, e.split("/")[-1]) for e in excludes):
                out.add(n)
        return out

    return ignore


@contextmanager
def staged(project: Path, prof: Resolved) -> Iterator[tuple[Path, str]]:
    """The working directory to upload and the project path inside it.

    A project file inside the checkout keeps its place (its relative paths still hold);
    one outside is copied to ``.submit/`` in a staged copy of the checkout (relative source
    paths then resolve against the job's folder: give sources on shared storage)."""
    project = project.resolve()
    if project.is_relative_to(ROOT):
        yield ROOT, str(project.relative_to(ROOT))
        return
    with tempfile.TemporaryDirectory(prefix="insight-submit-") as d:
        stage = Path(d) / "code"
        shutil.copytree(ROOT, stage, ignore=_ignore(prof.profile.excludes), symlinks=True)
        (stage / ".submit").mkdir()
        shutil.copy2(project, stage / ".submit" / project.name)
        yield stage, f".submit/{project.name}"


def submit(
    prof: Resolved,
    project: Path,
    job: str,
    args: list[str] | None = None,
    *,
    submission_id: str | None = None,
) -> Submitted:
    if job not in JOBS:
        raise ConfigError(
            f"unknown job '{job}'. Fix: one of {', '.join(JOBS)} (insight submit --help)."
        )
    script = JOBS[job][0]
    client = _client(prof)
    with staged(project, prof) as (wd, rel):
        cmd = [prof.profile.python, script, "--project", rel, "--profile", prof.name]
        entrypoint = shlex.join([*cmd, *(args or [])])
        runtime_env: dict[str, Any] = {
            "working_dir": str(wd),
            "excludes": prof.profile.excludes,
            "env_vars": {"INSIGHT_PROFILE": prof.name, "PYTHONUNBUFFERED": "1"},
        }
        if prof.profile.pip:
            runtime_env["pip"] = list(prof.profile.pip)
        try:
            job_id = client.submit_job(
                entrypoint=entrypoint,
                runtime_env=runtime_env,
                submission_id=submission_id,
                metadata={"insight_job": job, "profile": prof.name},
            )
        except Exception as exc:
            raise JobError(
                f"the cluster at {prof.profile.jobs} refused job '{job}': "
                f"{str(exc).splitlines()[0][:400]}"
            ) from None
    return Submitted(str(job_id), str(prof.profile.jobs), entrypoint)


def follow(
    prof: Resolved,
    job_id: str,
    *,
    out: Callable[[str], None] = print,
    status_line: Callable[[str, float], None] | None = None,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
) -> str:
    """Print the job's log as it grows until it ends; return its final status."""
    client = _client(prof)
    t0 = time.monotonic()
    shown = 0
    status = "PENDING"
    while True:
        status = str(client.get_job_status(job_id).value)
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            for line in logs[shown:].splitlines():
                out(line)
            shown = len(logs)
        if status_line is not None:
            status_line(status, time.monotonic() - t0)
        if status in TERMINAL:
            return status
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            return status
        time.sleep(poll_s)


def list_jobs(prof: Resolved) -> list[dict[str, Any]]:
    client = _client(prof)
    rows = []
    for j in client.list_jobs():
        rows.append(
            {
                "id": j.submission_id or j.job_id,
                "status": str(j.status.value if hasattr(j.status, "value") else j.status),
                "job": (j.metadata or {}).get("insight_job", ""),
                "entrypoint": j.entrypoint,
                "start": j.start_time,
                "end": j.end_time,
                "message": j.message or "",
            }
        )
    return sorted(rows, key=lambda r: r["start"] or 0)


def job_info(prof: Resolved, job_id: str) -> dict[str, Any]:
    client = _client(prof)
    try:
        j = client.get_job_info(job_id)
    except Exception:
        raise JobError(
            f"no job '{job_id}' on {prof.profile.jobs}. Fix: `insight jobs list` shows the ids."
        ) from None
    return {
        "id": j.submission_id or j.job_id,
        "status": str(j.status.value if hasattr(j.status, "value") else j.status),
        "entrypoint": j.entrypoint,
        "message": j.message or "",
        "start": j.start_time,
        "end": j.end_time,
        "metadata": j.metadata or {},
    }


def job_logs(prof: Resolved, job_id: str) -> str:
    job_info(prof, job_id)
    return str(_client(prof).get_job_logs(job_id))


def stop_job(prof: Resolved, job_id: str) -> bool:
    job_info(prof, job_id)
    return bool(_client(prof).stop_job(job_id))
