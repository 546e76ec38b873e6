"""Finding processes a run left behind (Ray daemons, Spark JVMs), by what they were given."""

from __future__ import annotations

import psutil


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes (other than this one) whose command line contains ``text``."""
    me = psutil.Process().pid
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if p.pid != me and text in cmd and p.status() != psutil.STATUS_ZOMBIE:
            out.append(p)
    return out


def children_alive() -> list[psutil.Process]:
    """Descendants of this process that are still running (zombies excluded)."""
    out = []
    for c in psutil.Process().children(recursive=True):
        try:
            if c.status() != psutil.STATUS_ZOMBIE:
                out.append(c)
        except psutil.NoSuchProcess:
            continue
    return out
