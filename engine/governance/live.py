"""Consent as a serving replica sees it: the project's consent source plus the
workspace's own consent log (``insight consent grant`` and ``insight consent withdraw``),
re-read when either changes. Each request costs a few ``stat`` calls; a withdrawal written
to the log takes effect on the next request of every replica that reads the workspace.

The log is append-only JSON lines under ``<workspace>/governance/consents/``, one file per
writer process, each line one event: subject, purpose, status (granted or withdrawn), time,
actor, reason.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from engine.config.governance import ConsentConfig
from engine.governance.consent import ConsentCheck, ConsentLedger

CANON = ConsentConfig(
    source="log", subject="subject", purpose="purpose", status="status", time="time"
)


def log_dir(workspace_root: Path) -> Path:
    return workspace_root / "governance" / "consents"


def record_consent(
    workspace_root: Path,
    subject: str,
    purpose: str,
    granted: bool,
    *,
    actor: str,
    reason: str = "",
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Append one consent event to the workspace's log (written and flushed before it
    returns; one line, so a crash leaves the line whole or absent)."""
    when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    ev = {
        "subject": str(subject),
        "purpose": purpose,
        "status": "granted" if granted else "withdrawn",
        "time": when.isoformat(),
        "actor": actor,
        "reason": reason,
    }
    d = log_dir(workspace_root)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"consents-{os.getpid()}.jsonl"
    line = (json.dumps(ev, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return ev


def read_log(workspace_root: Path) -> pd.DataFrame:
    """Every event of the workspace's log, with the canonical columns."""
    rows: list[dict[str, Any]] = []
    for p in sorted(log_dir(workspace_root).glob("*.jsonl")):
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    cols = ["subject", "purpose", "status", "time"]
    return pd.DataFrame(rows, columns=[*cols, "actor", "reason"])[cols]


class LiveConsent:
    """The ledger, kept current: ``check`` re-reads the source and the log when a file
    among them changed (size, mtime or the set of files), else answers from memory."""

    def __init__(
        self,
        cfg: ConsentConfig | None,
        read_source: Callable[[], pd.DataFrame] | None,
        source_path: Path | None,
        workspace_root: Path,
    ) -> None:
        self.cfg = cfg
        self._read_source = read_source
        self._source_path = source_path
        self._root = workspace_root
        self._stamp: tuple[Any, ...] | None = None
        self._ledger: ConsentLedger | None = None
        self._lock = threading.Lock()
        self.reloads = 0

    def _files(self) -> tuple[Any, ...]:
        out: list[Any] = []
        paths: list[Path] = []
        if self._source_path is not None:
            sp = self._source_path
            paths += sorted(sp.rglob("*")) if sp.is_dir() else [sp]
        d = log_dir(self._root)
        if d.is_dir():
            paths += sorted(d.glob("*.jsonl"))
        for p in paths:
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            out.append((str(p), st.st_size, st.st_mtime_ns))
        return tuple(out)

    def ledger(self) -> ConsentLedger:
        stamp = self._files()
        if stamp == self._stamp and self._ledger is not None:
            return self._ledger
        with self._lock:
            if stamp != self._stamp or self._ledger is None:
                self._ledger = self._load()
                self._stamp = stamp
                self.reloads += 1
            return self._ledger

    def _load(self) -> ConsentLedger:
        frames = []
        granted, withdrawn = "granted", "withdrawn"
        if self.cfg is not None and self._read_source is not None:
            c = self.cfg
            src = self._read_source()[[c.subject, c.purpose, c.status, c.time]]
            src.columns = ["subject", "purpose", "status", "time"]
            frames.append(src.astype({"status": "string"}))
            granted, withdrawn = c.granted[0], c.withdrawn[0]
        log = read_log(self._root)
        if not log.empty:  # the log's words in the source's vocabulary
            log["status"] = log["status"].map({"granted": granted, "withdrawn": withdrawn})
            frames.append(log)
        both = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=["subject", "purpose", "status", "time"])
        )
        canon = CANON
        if self.cfg is not None:
            canon = CANON.model_copy(
                update={"granted": self.cfg.granted, "withdrawn": self.cfg.withdrawn}
            )
        both["time"] = pd.to_datetime(both["time"], utc=True, errors="coerce", format="mixed")
        return ConsentLedger.from_frame(both, canon)

    def check(self, subjects: list[Any], purpose: str) -> ConsentCheck:
        """Consent now, for each subject."""
        return self.ledger().current(subjects, purpose)
