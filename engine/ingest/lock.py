"""One run of a job at a time: an exclusive ``flock`` on ``<workspace>/locks/JOB.lock``.
The kernel releases a lock when its process ends, however it ends (a SIGKILL included), so
a killed scheduler never holds a job forever; the file keeps the holder's PID and start
time for the message the next one sees."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from engine.errors import DataError


class JobBusy(DataError):
    """Another process holds the job's lock."""


@contextlib.contextmanager
def job_lock(root: Path, job: str) -> Iterator[None]:
    locks = root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{job}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            raise JobBusy(
                f"job '{job}' is already running{holder}; this run was skipped (never two "
                "at once). Fix: wait for it to finish, or stop that process."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "since": time.time()}).encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 200, 0) or b"{}")
        return f" (process {info['pid']}, since {time.strftime('%H:%M:%S', time.localtime(info['since']))})"
    except (ValueError, KeyError, OSError):
        return ""
