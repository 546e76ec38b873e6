"""Training sets from a feature snapshot: which features, which split, the model inputs.

Split (``train.split``):

- ``time``: oldest label times train, then ``valid_fraction`` of the label times (the
  search), then the latest ``test_fraction`` (model card and gate only, never searched on);
- ``random``: rows shuffled with ``train.seed``, stratified by label, into the same
  fractions: for snapshot tables (no label time) or too few label times;
- ``auto`` (default): ``time`` when the labels have at least 3 distinct times, else
  ``random``. The choice is printed and written into the model card.

Features: every view feature in the snapshot except the sensitive attributes and
``train.exclude``. Numeric and boolean columns are numeric inputs; text columns are
categorical (engine.train.schema). Left out, with the reason recorded: timestamp columns
(derive a number, e.g. ``datediff(label_time, signup_time)``), identifier-like text columns
(more than half the rows distinct, and over 100 values), and columns with no value at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.config import ProjectConfig
from engine.errors import DataError
from engine.features.snapshot import Snapshot
from engine.train.schema import InputSchema

PARTS = ("train", "valid", "test")


@dataclass(frozen=True)
class TrainingSet:
    snapshot_id: str
    features: list[str]
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    label: str
    time_col: str | None
    split: str  # "time" or "random"
    split_time: pd.Timestamp | None  # first validation label time (time split)
    test_time: pd.Timestamp | None  # first test label time (time split)
    schema: InputSchema
    seed: int = 0
    excluded: dict[str, str] = field(default_factory=dict)  # feature -> why it is not used

    def part(self, name: str) -> pd.DataFrame:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]

    def x(self, part: str | pd.DataFrame) -> pd.DataFrame:
        """The model inputs of a part (or of any frame with the feature columns)."""
        df = self.part(part) if isinstance(part, str) else part
        return self.schema.frame(df[self.features])

    def xy(self, part: str) -> tuple[pd.DataFrame, np.ndarray]:
        df = self.part(part)
        return self.x(df), df[self.label].to_numpy(dtype=np.float64)

    @property
    def time_range(self) -> tuple[str, str] | None:
        if self.time_col is None:
            return None
        t = pd.concat([self.part(p)[self.time_col] for p in PARTS])
        return str(t.min()), str(t.max())

    def describe_split(self) -> str:
        rows = ", ".join(f"{p} {len(self.part(p)):,}" for p in PARTS)
        if self.split == "time":
            return (
                f"by label time: valid from {self.split_time}, test from {self.test_time} "
                f"({rows} rows)"
            )
        why = "the labels have no time" if self.time_col is None else "train.split: random"
        return f"random, stratified by label, seed {self.seed} ({why}; {rows} rows)"


def model_features(cfg: ProjectConfig, df: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """Features the model may use, and the ones left out with the reason."""
    banned = set(cfg.sensitive) | set(cfg.train.exclude)
    use: list[str] = []
    out: dict[str, str] = {}
    for c in cfg.feature_names():
        if c in banned or c not in df:
            continue
        col = df[c]
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            out[c] = "a timestamp: derive a number from it (e.g. datediff(label_time, col))"
        elif col.notna().sum() == 0:
            out[c] = "no value in any row"
        elif not (
            pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)
        ):
            distinct = col.nunique(dropna=True)
            if distinct > 100 and distinct > 0.5 * len(col):
                out[c] = f"identifier-like text ({distinct:,} distinct values in {len(col):,} rows)"
            else:
                use.append(c)
        else:
            use.append(c)
    return use, out


def _random_parts(
    y: np.ndarray, valid_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of train/valid/test, stratified by label, seeded."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for value in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == value))
        n_test = round(idx.size * test_fraction)
        n_valid = round(idx.size * valid_fraction)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_valid])
        parts[0].append(idx[n_test + n_valid :])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def load_training_set(
    cfg: ProjectConfig, snap: Snapshot, frame: pd.DataFrame | None = None
) -> TrainingSet:
    """The labeled rows of a snapshot (up to ``train.until`` when the labels have times),
    split into train / valid / test as ``train.split`` says."""
    df = snap.read_pandas() if frame is None else frame  # ``frame``: already read
    lt = snap.manifest.get("label_time")
    y = cfg.label.column
    df = df[df[y].notna()]
    if lt is not None and cfg.train.until is not None:
        df = df[df[lt] < pd.Timestamp(cfg.train.until + dt.timedelta(days=1))]
    times = np.sort(df[lt].unique()) if lt is not None else np.array([])
    mode = cfg.train.split
    if mode == "auto":
        mode = "time" if times.size >= 3 else "random"
    if mode == "time" and times.size < 3:
        raise DataError(
            f"train.split is 'time', but the training set has {times.size} distinct label "
            f"time(s) (rows: {len(df)}); a split by time needs at least 3. Fix: set "
            "train.split: random, widen train.until or add labels."
        )
    feats, excluded = model_features(cfg, df)
    if not feats:
        raise DataError(
            f"snapshot {snap.id} has no usable feature (left out: {excluded or 'none'}). "
            "Fix: add columns to the feature views."
        )
    split_t = test_t = None
    if mode == "time":
        n_test = max(1, round(times.size * cfg.train.test_fraction))
        n_valid = max(1, round(times.size * cfg.train.valid_fraction))
        if n_test + n_valid >= times.size:
            raise DataError(
                f"{times.size} label times cannot give {n_valid} validation and {n_test} test "
                "times and leave any for training. Fix: lower train.valid_fraction or "
                "train.test_fraction, or set train.split: random."
            )
        test_t = pd.Timestamp(times[times.size - n_test])
        split_t = pd.Timestamp(times[times.size - n_test - n_valid])
        train = df[df[lt] < split_t]
        valid = df[(df[lt] >= split_t) & (df[lt] < test_t)]
        test = df[df[lt] >= test_t]
    else:
        tr, va, te = _random_parts(
            df[y].to_numpy(), cfg.train.valid_fraction, cfg.train.test_fraction, cfg.train.seed
        )
        train, valid, test = df.iloc[tr], df.iloc[va], df.iloc[te]
    for part, name in ((train, "train"), (valid, "validation"), (test, "test")):
        if part[y].nunique() < 2:
            raise DataError(
                f"the {name} split has a single label value ({part[y].unique().tolist()}) "
                f"({len(part)} rows). Fix: more data or different train.valid_fraction / "
                "test_fraction."
            )
    schema = InputSchema.infer(pd.concat([train, valid]), feats)
    return TrainingSet(
        snap.id,
        feats,
        train,
        valid,
        test,
        y,
        lt,
        mode,
        split_t,
        test_t,
        schema,
        cfg.train.seed,
        excluded,
    )
