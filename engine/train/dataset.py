"""Training sets from a feature snapshot: label filter, time split, model inputs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.config import ProjectConfig
from engine.errors import DataError
from engine.features.snapshot import Snapshot


@dataclass(frozen=True)
class TrainingSet:
    snapshot_id: str
    features: list[str]
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    label: str
    time_col: str
    split_time: pd.Timestamp  # first validation label time
    test_time: pd.Timestamp  # first test label time

    def part(self, name: str) -> pd.DataFrame:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]

    def xy(self, part: str) -> tuple[pd.DataFrame, np.ndarray]:
        df = self.part(part)
        # Models see float64 inputs only: one dtype for training, signature and serving.
        return df[self.features].astype("float64"), df[self.label].to_numpy(dtype=np.float64)

    @property
    def time_range(self) -> tuple[str, str]:
        t = pd.concat([self.part(p)[self.time_col] for p in ("train", "valid", "test")])
        return str(t.min()), str(t.max())


def model_features(cfg: ProjectConfig, df: pd.DataFrame) -> list[str]:
    """Numeric features the model may use: not sensitive, not excluded."""
    banned = set(cfg.sensitive) | set(cfg.train.exclude)
    return [
        c
        for c in cfg.feature_names()
        if c not in banned and c in df and pd.api.types.is_numeric_dtype(df[c])
    ]


def load_training_set(
    cfg: ProjectConfig, snap: Snapshot, frame: pd.DataFrame | None = None
) -> TrainingSet:
    """Labeled rows up to ``train.until``, split by label time, never at random:
    oldest -> train, then ``valid_fraction`` of label times -> valid (the search), the
    latest ``test_fraction`` -> test (model card and promotion gate, never searched on)."""
    df = snap.read_pandas() if frame is None else frame  # ``frame``: already read
    lt, y = cfg.label.event_time, cfg.label.column
    df = df[df[y].notna()]
    if cfg.train.until is not None:
        df = df[df[lt] < pd.Timestamp(cfg.train.until + dt.timedelta(days=1))]
    times = np.sort(df[lt].unique())
    if times.size < 3:
        raise DataError(
            f"the training set has {times.size} distinct label time(s) (rows: {len(df)}); a "
            "train/valid/test split by time needs at least 3. Fix: widen train.until or add "
            "labels."
        )
    n_test = max(1, round(times.size * cfg.train.test_fraction))
    n_valid = max(1, round(times.size * cfg.train.valid_fraction))
    if n_test + n_valid >= times.size:
        raise DataError(
            f"{times.size} label times cannot give {n_valid} validation and {n_test} test "
            "times and leave any for training. Fix: lower train.valid_fraction or "
            "train.test_fraction."
        )
    test_t = pd.Timestamp(times[times.size - n_test])
    split = pd.Timestamp(times[times.size - n_test - n_valid])
    feats = model_features(cfg, df)
    train = df[df[lt] < split]
    valid = df[(df[lt] >= split) & (df[lt] < test_t)]
    test = df[df[lt] >= test_t]
    for part, name in ((train, "train"), (valid, "validation"), (test, "test")):
        if part[y].nunique() < 2:
            raise DataError(
                f"the {name} split has a single label value ({part[y].unique().tolist()}). "
                "Fix: more data or different train.valid_fraction / test_fraction."
            )
    return TrainingSet(snap.id, feats, train, valid, test, y, lt, split, test_t)
