"""Jobs on a cadence: ``insight schedule run`` (and ``insight ingest --every``) keeps the
project file's ``schedule:`` until Ctrl-C; ``insight schedule export`` writes the same jobs
as an Airflow DAG and a cron table for users who already run an orchestrator.

Each job is the same ``insight`` command a person would type, run as a child process (a
Spark or Ray session per run, released when it ends): ``ingest`` -> ``insight ingest``,
``features`` -> ``insight features build``, ``train`` -> ``insight train`` (or ``insight
forecast train`` / ``insight target train``). A job ``after`` another runs when that one
changed something (rows landed; a new snapshot). A failed run is retried after a backoff
that doubles up to the job's period; the loop goes on. Never two runs of one job at once:
each holds ``<workspace>/locks/JOB.lock`` (engine.ingest.lock) while it runs.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.ingest import JobSchedule, ScheduleConfig
from engine.config.monitor import seconds
from engine.errors import ConfigError
from engine.ingest.lock import JobBusy, job_lock
from engine.workspace import Workspace

JOBS = ("ingest", "features", "train")
UNCHANGED_EXIT = 99  # `insight ingest --unchanged-exit 99`: nothing landed (Airflow skips on it)


def job_command(job: str, task: str) -> list[str]:
    """The insight command of a job (arguments after ``insight``)."""
    if job == "ingest":
        return ["ingest"]
    if job == "features":
        if task != "churn":
            raise ConfigError(
                f"schedule.features: a {task} project builds its features inside its train "
                "job. Fix: schedule train after ingest instead."
            )
        return ["features", "build"]
    return {"churn": ["train"], "forecast": ["forecast", "train"], "target": ["target", "train"]}[
        task
    ]


@dataclass
class JobState:
    name: str
    spec: JobSchedule
    next_due: float | None
    failures: int = 0
    runs: int = 0
    last: str = ""


@dataclass
class Scheduler:
    """The loop. ``run_job(job) -> changed`` runs one job (raises on failure); injected so
    the loop is testable and the CLI runs real commands."""

    schedule: ScheduleConfig
    run_job: Callable[[str], bool]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    log: Callable[[str], None] = print
    history: list[dict[str, Any]] = field(default_factory=list)
    _stop: bool = False

    def jobs(self) -> dict[str, JobState]:
        now = self.clock()
        out = {}
        for name in JOBS:
            spec = getattr(self.schedule, name)
            if spec is not None:
                out[name] = JobState(name, spec, now if spec.every else None)
        return out

    def stop(self, *_: Any) -> None:
        self._stop = True

    def _run(self, st: JobState, states: dict[str, JobState]) -> None:
        now = self.clock()
        t0 = now
        try:
            changed = self.run_job(st.name)
        except JobBusy as exc:
            st.last = f"skipped: {exc}"
            self.log(f"{st.name}: {st.last}")
            self.history.append({"job": st.name, "status": "skipped"})
            self._plan(st, ok=True)
            return
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a failed run: back off, keep the loop
            st.failures += 1
            st.runs += 1
            wait = self._plan(st, ok=False)
            st.last = (
                f"failed ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})"
            )
            self.log(f"{st.name}: {st.last}; next try in {wait:.0f} s")
            self.history.append({"job": st.name, "status": "failed", "wait_s": wait})
            return
        st.failures = 0
        st.runs += 1
        st.last = f"ok, {'changed' if changed else 'nothing new'} ({self.clock() - t0:.1f} s)"
        self.log(f"{st.name}: {st.last}")
        self.history.append({"job": st.name, "status": "ok", "changed": changed})
        self._plan(st, ok=True)
        if changed:
            for nxt in states.values():
                if nxt.spec.after == st.name and not self._stop:
                    self._run(nxt, states)

    def _plan(self, st: JobState, ok: bool) -> float:
        """When the job runs next: its period after a success, a doubling backoff (at most
        the period) after a failure. A job that only runs `after` another, when it fails,
        is retried on the backoff too."""
        period = seconds(st.spec.every) if st.spec.every else None
        if ok:
            st.next_due = self.clock() + period if period else None
            return period or 0.0
        wait = self.schedule.backoff_s * 2 ** (st.failures - 1)
        wait = min(wait, period) if period else wait
        st.next_due = self.clock() + wait
        return wait

    def loop(self, *, max_ticks: int | None = None, once: bool = False) -> dict[str, JobState]:
        """Run until stopped (SIGINT/SIGTERM), ``max_ticks`` job runs, or one pass
        (``once``: every job with a cadence runs now, then its followers)."""
        states = self.jobs()
        if not states:
            raise ConfigError(
                "no jobs to run: the project file has no schedule: block. Fix: add e.g. "
                "schedule: {ingest: {every: 1h}, features: {after: ingest}, train: {after: features}}."
            )
        ticks = 0
        while not self._stop:
            due = [
                s for s in states.values() if s.next_due is not None and s.next_due <= self.clock()
            ]
            for st in due:
                if self._stop:
                    break
                self._run(st, states)
                ticks += 1
            if once or (max_ticks is not None and ticks >= max_ticks):
                break
            pending = [s.next_due for s in states.values() if s.next_due is not None]
            if not pending:
                break
            wait = max(0.0, min(pending) - self.clock())
            end = self.clock() + wait
            while not self._stop and self.clock() < end:  # wake for Ctrl-C within a second
                self.sleep(min(1.0, end - self.clock()))
        return states


def command_runner(
    project: Path, ws: Workspace, task: str, ingest_args: list[str]
) -> Callable[[str], bool]:
    """Run a job as ``insight ...`` in a child process; changed = the ledger has new landed
    rows (ingest) or a new snapshot exists (features) or the child succeeded (train)."""

    def run(job: str) -> bool:
        before = _state(ws, job)
        cmd = [
            sys.executable,
            "-m",
            "engine.cli",
            *job_command(job, task),
            "--project",
            str(project),
        ]
        cmd += ["--workspace", str(ws.root), *(ingest_args if job == "ingest" else [])]
        with job_lock(ws.root, f"schedule-{job}"):
            r = subprocess.run(cmd, check=False)
        if r.returncode != 0:
            shown = " ".join(["insight", *job_command(job, task)])
            raise RuntimeError(f"{shown} exited {r.returncode}")
        return job == "train" or _state(ws, job) != before

    return run


def _state(ws: Workspace, job: str) -> Any:
    if job == "ingest":
        from engine.ingest import ledger

        return sum(int(r.get("rows_landed") or 0) for r in ledger.runs(ws))
    if job == "features":
        return sorted(p.name for p in ws.features.glob("*") if p.is_dir())
    return None


def install_signals(s: Scheduler) -> None:
    def handler(signum: int, _frame: Any) -> None:
        s.log("stopping after the current job (Ctrl-C again to stop now)")
        s.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


# ---------------------------------------------------------------- export


def cron_spec(every: str) -> str:
    """A cron expression for a period that cron can express (minutes dividing an hour,
    hours dividing a day, one day)."""
    s = int(seconds(every))
    if s % 60 == 0 and s < 3600 and 3600 % s == 0:
        return f"*/{s // 60} * * * *" if s > 60 else "* * * * *"
    if s % 3600 == 0 and s < 86400 and 86400 % s == 0:
        return f"0 */{s // 3600} * * *" if s > 3600 else "0 * * * *"
    if s == 86400:
        return "0 0 * * *"
    if s % 86400 == 0 and s // 86400 == 7:
        return "0 0 * * 0"
    raise ConfigError(
        f"every: {every} cannot be written as a cron schedule. Fix: a period that divides an "
        "hour or a day (15m, 1h, 6h, 1d, 7d), or run `insight schedule run`."
    )


def chain(sched: ScheduleConfig, job: str) -> list[str]:
    """The jobs that run after ``job`` when it changed something, in order."""
    out: list[str] = []
    frontier = job
    while True:
        nxt = [j for j in JOBS if (s := getattr(sched, j)) is not None and s.after == frontier]
        if not nxt:
            return out
        out.append(nxt[0])
        frontier = nxt[0]


def export_cron(sched: ScheduleConfig, project: Path, workdir: Path) -> str:
    lines = [
        "# insight schedule export --cron: the project's schedule as a crontab.",
        "# Each line runs one job and the jobs after it (insight schedule run --once --job).",
    ]
    for job in JOBS:
        spec = getattr(sched, job)
        if spec is None or not spec.every:
            continue
        cmd = f"cd {shlex.quote(str(workdir))} && insight schedule run --once --job {job} --project {shlex.quote(str(project))}"
        lines.append(f"{cron_spec(spec.every)} {cmd}")
    return "\n".join(lines) + "\n"


def export_airflow(
    sched: ScheduleConfig, project: Path, workdir: Path, task: str, dag_id: str
) -> str:
    """An Airflow DAG file: one DAG per job with a cadence, its followers as downstream
    tasks. A follower runs only when its upstream changed something: ``insight ingest
    --unchanged-exit 99`` exits 99 when nothing landed, and BashOperator's
    ``skip_on_exit_code`` turns that into a skip of what follows."""
    dags = []
    for job in JOBS:
        spec = getattr(sched, job)
        if spec is None or not spec.every:
            continue
        jobs = [job, *chain(sched, job)]
        tasks = []
        for j in jobs:
            args = job_command(j, task)
            if j == "ingest" and len(jobs) > 1:
                args = [*args, "--unchanged-exit", str(UNCHANGED_EXIT)]
            cmd = f"insight {' '.join(args)} --project {shlex.quote(str(project))}"
            tasks.append((j, cmd))
        dags.append((job, seconds(spec.every), tasks))
    body = [
        '"""Generated by `insight schedule export --airflow`: the project\'s schedule as Airflow',
        "DAGs. Each task runs the same insight command `insight schedule run` runs; a task",
        'after ingest is skipped when the ingest landed nothing (exit code 99)."""',
        "",
        "import datetime",
        "",
        "from airflow import DAG",
        "",
        "try:  # Airflow 3",
        "    from airflow.providers.standard.operators.bash import BashOperator",
        "except ImportError:  # Airflow 2",
        "    from airflow.operators.bash import BashOperator",
        "",
        f"WORKDIR = {str(workdir)!r}",
        "",
    ]
    for job, period, tasks in dags:
        var = f"dag_{job}"
        body += [
            "with DAG(",
            f"    dag_id={f'{dag_id}-{job}'!r},",
            f"    schedule=datetime.timedelta(seconds={int(period)}),",
            "    start_date=datetime.datetime(2026, 1, 1),",
            "    catchup=False,",
            "    max_active_runs=1,",
            "    tags=['insight'],",
            f") as {var}:",
        ]
        names = []
        for j, cmd in tasks:
            names.append(j)
            body += [
                f"    {j} = BashOperator(",
                f"        task_id={j!r},",
                f"        bash_command={cmd!r},",
                "        cwd=WORKDIR,",
                f"        skip_on_exit_code={UNCHANGED_EXIT},",
                "        retries=3,",
                "        retry_delay=datetime.timedelta(seconds=30),",
                "        retry_exponential_backoff=True,",
                "    )",
            ]
        if len(names) > 1:
            body.append("    " + " >> ".join(names))
        body.append("")
    return "\n".join(body)
