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
    label: str
    time_col: str
    split_time: pd.Timestamp

    def xy(self, part: str) -> tuple[pd.DataFrame, np.ndarray]:
        df = self.train if part == "train" else self.valid
        # Models see float64 inputs only: one dtype for training, signature and serving.
        return df[self.features].astype("float64"), df[self.label].to_numpy(dtype=np.float64)

    @property
    def time_range(self) -> tuple[str, str]:
        t = pd.concat([self.train[self.time_col], self.valid[self.time_col]])
        return str(t.min()), str(t.max())


def model_features(cfg: ProjectConfig, df: pd.DataFrame) -> list[str]:
    """Numeric features the model may use: not sensitive, not excluded."""
    banned = set(cfg.sensitive) | set(cfg.train.exclude)
    return [
        c
        for c in cfg.feature_names()
        if c not in banned and c in df and pd.api.types.is_numeric_dtype(df[c])
    ]


def load_training_set(cfg: ProjectConfig, snap: Snapshot) -> TrainingSet:
    """Labeled rows up to ``train.until``, split by time: the latest label times validate."""
    df = snap.read_pandas()
    lt, y = cfg.label.event_time, cfg.label.column
    df = df[df[y].notna()]
    if cfg.train.until is not None:
        df = df[df[lt] < pd.Timestamp(cfg.train.until + dt.timedelta(days=1))]
    times = np.sort(df[lt].unique())
    if times.size < 2:
        raise DataError(
            f"the training set has {times.size} distinct label time(s) (rows: {len(df)}); a "
            "time split needs at least 2. Fix: widen train.until or add labels."
        )
    n_valid = max(1, round(times.size * cfg.train.valid_fraction))
    split = pd.Timestamp(times[times.size - n_valid])
    feats = model_features(cfg, df)
    train, valid = df[df[lt] < split], df[df[lt] >= split]
    for part, name in ((train, "train"), (valid, "validation")):
        if part[y].nunique() < 2:
            raise DataError(
                f"the {name} split has a single label value ({part[y].unique().tolist()}). "
                "Fix: more data or a different train.valid_fraction."
            )
    return TrainingSet(snap.id, feats, train, valid, y, lt, split)
