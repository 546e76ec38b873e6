"""Stage: feature drift, written as one JSON report: KS + PSI per numeric feature,
chi-square + Jensen-Shannon per categorical feature (Numba kernels).

What is compared: the current window (label times from ``drift.current_from``) against the
training window of one snapshot; or, with a reference snapshot, the whole newer snapshot
against the whole older one (the way to compare snapshot tables, which have no label
times)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engine.config.project import ProjectConfig
from engine.errors import ConfigError, DataError
from engine.features import snapshot as snap
from engine.monitor.drift import ColumnDrift, drift_check
from engine.workspace import Workspace, atomic_write_text


@dataclass
class DriftResult:
    snapshot_id: str
    reference: str  # what the reference is: a window of the snapshot, or another snapshot
    reference_rows: int
    current_rows: int
    columns: list[ColumnDrift]
    report_path: Path

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]


def windows(cfg: ProjectConfig, s: snap.Snapshot) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference = label times up to train.until; current = from drift.current_from. The
    windows never overlap: a reference that would reach into the current window ends where
    it starts (:func:`split_windows` says by how many rows)."""
    ref, cur, _ = split_windows(cfg, s)
    return ref, cur


def split_windows(cfg: ProjectConfig, s: snap.Snapshot) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The two windows, and a note when the training window was cut so they do not overlap
    (train.until at or after drift.current_from: the reference once held the current rows,
    and a comparison of a window with itself finds no drift)."""
    if cfg.drift.current_from is None:
        raise ConfigError(
            "drift.current_from is not set, so there is no current window to compare. "
            "Fix: set drift.current_from to the first date of the current window."
        )
    df = s.read_pandas()
    lt = s.manifest["label_time"]
    start = pd.Timestamp(cfg.drift.current_from)
    cur = df[df[lt] >= start]
    note = ""
    if cfg.train.until is not None:
        end = pd.Timestamp(cfg.train.until) + pd.Timedelta(days=1)
        ref = df[df[lt] < min(end, start)]
        shared = int(((df[lt] >= start) & (df[lt] < end)).sum())
        if shared:
            note = (
                f"train.until ({cfg.train.until}) is after drift.current_from "
                f"({cfg.drift.current_from}): the training window holds {shared:,} rows of "
                "the current window; the reference ends where the current window starts so "
                "the two do not overlap"
            )
    else:
        ref = df[df[lt] < start]
    return ref, cur, note


def stage_drift(
    cfg: ProjectConfig,
    ws: Workspace,
    snapshot_id: str | None = None,
    reference_id: str | None = None,
) -> DriftResult:
    s = snap.find(ws, cfg.name, snapshot_id)
    cols = [c for c in cfg.feature_names() if c not in cfg.sensitive]
    if reference_id is not None:
        r = snap.find(ws, cfg.name, reference_id)
        if r.id == s.id:
            raise DataError(
                f"the reference and the current snapshot are both {s.id}. Fix: pass an older "
                "snapshot as --reference (`insight features list`)."
            )
        ref, cur = r.read_pandas(), s.read_pandas()
        result = drift_check(ref, cur, cols, cfg.drift)
        return _write(ws, s.id, f"snapshot {r.id}", ref, cur, cfg, result)
    if s.manifest.get("label_time") is None:
        raise DataError(
            f"snapshot {s.id} has labels without time, so it has no current window to compare "
            "with its training window. Fix: build a snapshot from newer data and compare the "
            "two: `insight drift --reference OLDER_ID` (ids: `insight features list`)."
        )
    ref, cur, note = split_windows(cfg, s)
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
    result = drift_check(ref, cur, cols, cfg.drift)
    lt = s.manifest["label_time"]
    what = f"training window, label times {ref[lt].min()} .. {ref[lt].max()}"
    if note:
        what += f"; {note}"
    return _write(ws, s.id, what, ref, cur, cfg, result, note)


def _write(
    ws: Workspace,
    sid: str,
    reference: str,
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    cfg: ProjectConfig,
    result: list[ColumnDrift],
    overlap: str = "",
) -> DriftResult:
    path = ws.reports / f"drift-{sid}.json"
    atomic_write_text(
        path,
        json.dumps(
            {
                "snapshot_id": sid,
                "reference": reference,
                "reference_rows": len(ref),
                "current_rows": len(cur),
                "windows_overlap": False,
                "reference_cut": overlap or None,
                "rule": cfg.drift.model_dump(mode="json"),
                "columns": [c.as_dict() for c in result],
            },
            indent=2,
        ),
    )
    return DriftResult(sid, reference, len(ref), len(cur), result, path)
