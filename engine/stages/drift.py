"""Stage: feature drift of the current window against the training window of a snapshot
(KS + PSI per numeric feature, Numba kernels), written as one JSON report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engine.config import ProjectConfig
from engine.errors import ConfigError, DataError
from engine.features import snapshot as snap
from engine.monitor.drift import ColumnDrift, drift_check
from engine.workspace import Workspace, atomic_write_text


@dataclass
class DriftResult:
    snapshot_id: str
    reference_rows: int
    current_rows: int
    columns: list[ColumnDrift]
    report_path: Path

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]


def windows(cfg: ProjectConfig, s: snap.Snapshot) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference = label times up to train.until; current = from drift.current_from."""
    if cfg.drift.current_from is None:
        raise ConfigError(
            "drift.current_from is not set, so there is no current window to compare. "
            "Fix: set drift.current_from to the first date of the current window."
        )
    df = s.read_pandas()
    lt = cfg.label.event_time
    cur = df[df[lt] >= pd.Timestamp(cfg.drift.current_from)]
    if cfg.train.until is not None:
        ref = df[df[lt] < pd.Timestamp(cfg.train.until) + pd.Timedelta(days=1)]
    else:
        ref = df[df[lt] < pd.Timestamp(cfg.drift.current_from)]
    return ref, cur


def stage_drift(cfg: ProjectConfig, ws: Workspace, snapshot_id: str | None = None) -> DriftResult:
    s = snap.find(ws, cfg.name, snapshot_id)
    ref, cur = windows(cfg, s)
    t0, t1 = s.manifest["event_time_range"]
    if ref.empty:
        until = cfg.train.until or cfg.drift.current_from
        raise DataError(
            f"the reference window (label times up to {until}) is empty in snapshot {s.id}, "
            f"whose label times run {t0} .. {t1}. Fix: set train.until (or "
            "drift.current_from) after the first label time."
        )
    if cur.empty:
        raise DataError(
            f"the current window (label times from {cfg.drift.current_from}) is empty in "
            f"snapshot {s.id}, whose label times run {t0} .. {t1}. Fix: move "
            "drift.current_from earlier, or rebuild features with newer data."
        )
    cols = [c for c in cfg.feature_names() if c not in cfg.sensitive]
    result = drift_check(ref, cur, cols, cfg.drift)
    path = ws.reports / f"drift-{s.id}.json"
    atomic_write_text(
        path,
        json.dumps(
            {
                "snapshot_id": s.id,
                "reference_rows": len(ref),
                "current_rows": len(cur),
                "rule": cfg.drift.model_dump(mode="json"),
                "columns": [c.as_dict() for c in result],
            },
            indent=2,
        ),
    )
    return DriftResult(s.id, len(ref), len(cur), result, path)
