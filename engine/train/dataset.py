"""Training sets from a feature snapshot: which features, which split, the model inputs.

Split (``train.split``):

- ``time``: oldest label times train, then ``valid_fraction`` of the label times (the
  search), then the latest ``test_fraction`` (model card and gate only, never searched on);
- ``random``: rows shuffled with ``train.seed``, stratified by label, into the same
  fractions: for snapshot tables (no label time) or too few label times;
- ``auto`` (default): ``time`` when the labels have at least 3 distinct times, else
  ``random``. The choice is printed and written into the model card.

With ``label.horizon`` (a label that looks ahead of its time) a split by time purges the
training rows whose outcome window reaches the validation period, and the validation rows
whose window reaches the test period from the final refit (``TrainingSet.purged``); without
one, a regular cadence of label times is a warning. A feature that leaks the label stops the
load unless ``train.allow_leaky`` lists it (engine.data.leaks).

Features: every view feature in the snapshot except the sensitive attributes and
``train.exclude``. Numeric and boolean columns are numeric inputs; text columns are
categorical (engine.train.schema). Left out, with the reason recorded: timestamp columns
(derive a number, e.g. ``datediff(label_time, signup_time)``), identifier-like text columns
(more than half the rows distinct, and over 100 values), and columns with no value at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from engine.config.project import ProjectConfig
from engine.errors import DataError
from engine.features.snapshot import Snapshot
from engine.features.views import parse_duration
from engine.train.schema import InputSchema

if TYPE_CHECKING:
    from engine.workspace import Workspace

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
    horizon: str | None = None  # label.horizon (+ train.embargo) the time split purged by
    purged: dict[str, int] = field(default_factory=dict)  # part -> rows purged by the horizon
    # validation rows the final refit may use (None: all of them); with a horizon, those
    # whose outcome window ends before the test period starts
    valid_fit: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)  # said when training, kept in the card
    # the consent check's exclusion manifest (engine.governance.enforce); None: no check
    consent: dict[str, Any] | None = None

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
        """Label times of every part together (train, valid and test)."""
        return self.range_of(*PARTS)

    def range_of(self, *parts: str) -> tuple[str, str] | None:
        """The exact label-time range of these parts' rows, None without label times."""
        if self.time_col is None:
            return None
        t = pd.concat([self.part(p)[self.time_col] for p in parts])
        return (str(t.min()), str(t.max())) if len(t) else None

    def fit_rows(self, refit: bool) -> pd.DataFrame:
        """The rows the registered model is fitted on: train, plus validation when refitted
        (less the validation rows a label horizon purges before the test period)."""
        if not refit:
            return self.train
        return pd.concat([self.train, self.valid if self.valid_fit is None else self.valid_fit])

    def fitted_range(self, refit: bool) -> tuple[str, str] | None:
        if self.time_col is None:
            return None
        t = self.fit_rows(refit)[self.time_col]
        return (str(t.min()), str(t.max())) if len(t) else None

    def ranges(self) -> dict[str, tuple[str, str] | None]:
        """Each part's exact label-time range (what the card says each part holds)."""
        return {p: self.range_of(p) for p in PARTS}

    def describe_split(self) -> str:
        rows = ", ".join(f"{p} {len(self.part(p)):,}" for p in PARTS)
        if self.split == "time":
            purge = ""
            if self.horizon:
                purge = (
                    f"; label horizon {self.horizon}: purged {self.purged.get('train', 0):,} "
                    "train rows whose outcome window reaches the validation period, and "
                    f"{self.purged.get('refit', 0):,} validation rows whose window reaches "
                    "the test period from the final refit"
                )
            return (
                f"by label time: valid from {self.split_time}, test from {self.test_time} "
                f"({rows} rows{purge})"
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


def _consented(
    cfg: ProjectConfig,
    snap: Snapshot,
    df: pd.DataFrame,
    ws: Workspace | None,
    consent: dict[str, Any] | None,
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    if consent is not None:  # the caller applied it
        return df, consent
    if ws is None:
        if cfg.governance.consent is not None:
            raise ValueError("load_training_set: a project with consent needs ws= to check it")
        return df, None
    from engine.governance.enforce import consented_training_rows

    return consented_training_rows(cfg, ws, snap, df)


def load_training_set(
    cfg: ProjectConfig,
    snap: Snapshot,
    frame: pd.DataFrame | None = None,
    *,
    ws: Workspace | None = None,
    consent: dict[str, Any] | None = None,
) -> TrainingSet:
    """The labeled rows of a snapshot (up to ``train.until`` when the labels have times),
    split into train / valid / test as ``train.split`` says.

    With ``ws``, only rows whose subject consented to the training purpose as of the label
    time are used, where the governance policy asks for consent (engine.governance.enforce);
    ``consent`` is that check's manifest when the caller has applied it to ``frame`` (``{}``:
    applied, no consent obligation)."""
    df = snap.read_pandas() if frame is None else frame  # ``frame``: already read
    df, consent = _consented(cfg, snap, df, ws, consent)
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
    _refuse_leaks(cfg, df, feats)
    split_t = test_t = None
    valid_fit: pd.DataFrame | None = None
    purged: dict[str, int] = {}
    warnings: list[str] = []
    key = snap.manifest.get("entity")
    horizon = None
    if cfg.label.horizon is not None:
        horizon = parse_duration(cfg.label.horizon)
        if cfg.train.embargo is not None:
            horizon += parse_duration(cfg.train.embargo)
    elif mode == "time" and lt is not None and key is not None and key in df:
        warnings += _likely_horizon(df, lt, key, times)
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
        if horizon is not None and lt is not None:
            # Purge: no row a model is fitted on has an outcome window that reaches the
            # period it is judged on. The search fits on train and is judged on validation;
            # the final refit fits on train + validation and is judged on test. Validation
            # rows are only scored in the search, so they are kept there.
            train, purged["train"] = _purge(train, lt, horizon, split_t)
            valid_fit, purged["refit"] = _purge(valid, lt, horizon, test_t)
            if train.empty:
                raise DataError(
                    f"label.horizon {cfg.label.horizon} purges every training row: each "
                    f"outcome window reaches into the validation period (from {split_t}). "
                    "Fix: lower train.valid_fraction and train.test_fraction, add older "
                    "labels, or check label.horizon."
                )
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
    span = cfg.label.horizon and (
        cfg.label.horizon + (f" + embargo {cfg.train.embargo}" if cfg.train.embargo else "")
    )
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
        horizon=span if mode == "time" else None,
        purged=purged,
        warnings=warnings,
        valid_fit=valid_fit,
        consent=consent or None,
    )


def _refuse_leaks(cfg: ProjectConfig, df: pd.DataFrame, feats: list[str]) -> None:
    """Stop when a feature leaks the label (engine.data.leaks) and is not allowed: a model
    would learn it, look perfect, and fail where the value is not yet known."""
    from engine.data.leaks import leak_reason

    y = df[cfg.label.column].to_numpy(dtype=np.float64)
    found = {
        f: why
        for f in feats
        if f not in cfg.train.allow_leaky and (why := leak_reason(df[f], y)) is not None
    }
    if found:
        views = {f: v.name for v in cfg.features.views for f in v.feature_names()}
        lines = "; ".join(f"'{f}' (view '{views.get(f, '?')}') {why}" for f, why in found.items())
        raise DataError(
            f"{len(found)} feature(s) leak the label '{cfg.label.column}': {lines}. Fix: remove "
            "them from their views or list them under train.exclude; if a value is known when "
            f"predictions are made, list it under train.allow_leaky: {sorted(found)}."
        )


def _purge(
    part: pd.DataFrame, lt: str, horizon: dt.timedelta, boundary: pd.Timestamp
) -> tuple[pd.DataFrame, int]:
    """The rows whose outcome window (label time, label time + horizon] ends at or before
    ``boundary``, and how many were dropped (their outcome was still being observed when
    the next period began: training on them leaks that period's outcomes)."""
    keep = part[pd.to_datetime(part[lt]) + horizon <= boundary]
    return keep, len(part) - len(keep)


def _likely_horizon(df: pd.DataFrame, lt: str, key: str, times: np.ndarray) -> list[str]:
    """A warning when the labels look like looking-ahead cutoffs with no horizon declared:
    label times at a regular cadence (each gap within 10% of the median, or monthly) with
    most entities labelled at several of them."""
    gaps = np.diff(times).astype("timedelta64[s]").astype(np.float64) / 86_400
    med = float(np.median(gaps))
    monthly = bool(((gaps >= 28) & (gaps <= 31)).all())
    if med <= 0 or not (monthly or bool((np.abs(gaps - med) <= 0.1 * med).all())):
        return []
    if float(df[key].duplicated().mean()) < 0.5:
        return []
    every = "month" if monthly else f"{med:g} days"
    return [
        f"label times come every {every} ({times.size} cutoffs) and most entities are "
        "labelled at several of them: if a label looks ahead of its time (e.g. 'no purchase "
        "in the 180 days after the cutoff'), declare label.horizon (e.g. 180d); otherwise "
        "training rows whose outcome window reaches the validation and test periods make "
        "the test metrics optimistic"
    ]
