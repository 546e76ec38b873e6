"""Consent by purpose, at a point in time.

A consent table records events: a subject granted or withdrew consent for a purpose at a
time. A subject's consent for a purpose at time ``t`` is the status of their last event at
or before ``t``; a subject with no such event has not consented (no consent on record is
no consent). Two events of one subject and purpose at the same instant that disagree are
read as a withdrawal (the conservative reading).

The lookup is an as-of join (``pandas.merge_asof`` by subject); tests check it against
DuckDB's ``ASOF JOIN`` on random ledgers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.config.governance import ConsentConfig
from engine.errors import ConfigError, DataError

NO_RECORD = "no consent on record"
WITHDRAWN = "consent withdrawn"


def subject_keys(values: Any) -> pd.Series:
    """Subject keys as text, the same whichever type a table read them as: integers stored
    as floats (a column with blanks) lose their '.0', also when read as text ("233.0", as
    a Stata or pandas export writes them); blanks stay missing."""
    s = pd.Series(values)
    if pd.api.types.is_float_dtype(s) and s.dropna().eq(s.dropna().round()).all():
        s = s.astype("Int64")
    out = s.astype("string").str.strip().str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
    out = out.mask(out.eq(""))
    vals = out.astype(object).to_numpy()
    vals[out.isna().to_numpy(dtype=bool)] = None
    return pd.Series(vals, index=out.index, dtype=object)


def _utc_naive(values: Any, what: str) -> pd.Series:
    t = pd.to_datetime(pd.Series(values), utc=True, errors="coerce")
    return t.dt.tz_localize(None).astype("datetime64[ns]").rename(what)


@dataclass(frozen=True)
class ConsentCheck:
    """Which rows have consent for ``purpose`` at their time, and why the others not."""

    purpose: str
    allowed: np.ndarray  # bool per row
    reason: np.ndarray  # object per row: None where allowed, else NO_RECORD or WITHDRAWN

    @property
    def counts(self) -> dict[str, int]:
        return {
            "rows": int(self.allowed.size),
            "allowed": int(self.allowed.sum()),
            NO_RECORD: int((self.reason == NO_RECORD).sum()),
            WITHDRAWN: int((self.reason == WITHDRAWN).sum()),
        }


@dataclass(frozen=True)
class ConsentLedger:
    """Consent events, normalised: subject (text), purpose, granted (bool), time (UTC)."""

    events: pd.DataFrame
    source: str = ""
    fingerprint: str = field(default="")
    # per purpose: each subject's last status and the purpose's last event time (what
    # `current` answers from, a dictionary lookup per subject)
    _latest: dict[str, tuple[dict[str, bool], pd.Timestamp]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # per purpose: the subjects' index and the events by integer code (what `check` joins)
    _codes: dict[str, tuple[pd.Index, pd.DataFrame]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def from_frame(cls, df: pd.DataFrame, cfg: ConsentConfig) -> ConsentLedger:
        """Read a consent table; a value that is neither granted nor withdrawn, a time that
        does not parse or a blank subject or purpose is an error naming the column, how many
        rows and an example."""
        where = f"consent source '{cfg.source}'"
        missing = [c for c in (cfg.subject, cfg.purpose, cfg.status, cfg.time) if c not in df]
        if missing:
            raise ConfigError(
                f"{where} has no column {missing[0]!r} (its columns: {sorted(map(str, df))}). "
                "Fix: name the columns under governance.consent."
            )
        subj = subject_keys(df[cfg.subject])
        purpose = df[cfg.purpose].astype("string").str.strip().str.lower()
        status = df[cfg.status].astype("string").str.strip().str.lower()
        time = _utc_naive(df[cfg.time], "time")
        for col, bad in (
            (cfg.subject, subj.isna()),
            (cfg.purpose, purpose.isna() | purpose.eq("")),
            (cfg.time, time.isna()),
        ):
            if bad.any():
                ex = df.loc[bad.to_numpy(), col].head(1).tolist()
                raise DataError(
                    f"{where}: {int(bad.sum())} row(s) with a blank or unreadable "
                    f"{col!r} (e.g. {ex[0]!r} in row {int(np.flatnonzero(bad.to_numpy())[0])}). "
                    "Fix: every consent event needs a subject, a purpose and a time."
                )
        grant = {v.lower() for v in cfg.granted}
        withdraw = {v.lower() for v in cfg.withdrawn}
        known = status.isin(grant | withdraw).fillna(False).to_numpy(dtype=bool)
        if not known.all():
            odd = sorted({str(v) for v in df.loc[~known, cfg.status]})
            raise DataError(
                f"{where}: status {odd[0]!r} is neither granted {sorted(grant)} nor withdrawn "
                f"{sorted(withdraw)} ({int((~known).sum())} row(s); values seen: {odd[:5]}). "
                "Fix: list it under governance.consent.granted or .withdrawn."
            )
        ev = pd.DataFrame(
            {
                "subject": subj.to_numpy(dtype=object),
                "purpose": purpose.to_numpy(dtype=object),
                "granted": status.isin(grant).to_numpy(dtype=bool),
                "time": time.to_numpy(),
            }
        )
        # One event per subject, purpose and instant: disagreeing events read as withdrawn.
        ev = (
            ev.groupby(["subject", "purpose", "time"], sort=False)["granted"]
            .min()
            .reset_index()
            .sort_values(["time", "subject"], kind="stable")
            .reset_index(drop=True)
        )
        fp = hashlib.sha256(
            pd.util.hash_pandas_object(ev, index=False).to_numpy().tobytes()
        ).hexdigest()[:16]
        return cls(ev, cfg.source, fp)

    @property
    def purposes(self) -> list[str]:
        return sorted(self.events["purpose"].unique().tolist())

    def check(self, subjects: Any, times: Any, purpose: str) -> ConsentCheck:
        """Consent for ``purpose`` of each (subject, time) pair, as of that time."""
        subj = subject_keys(subjects).reset_index(drop=True)
        t = _utc_naive(times, "time").reset_index(drop=True)
        if t.isna().any():
            raise ValueError(
                f"{int(t.isna().sum())} row(s) have no time to check consent at: consent is "
                "checked as of each row's time (a label time, a request time)"
            )
        if len(t) == 0:
            return ConsentCheck(purpose, np.zeros(0, bool), np.empty(0, object))
        index, ev = self._by_code(purpose)
        code = index.get_indexer(pd.Index(subj.fillna("\x00")))
        known = code >= 0  # a subject with no event for the purpose: no consent on record
        g = np.full(len(t), -1, dtype=np.int8)  # -1 no event by then, 0 withdrawn, 1 granted
        if known.any():
            rows = np.flatnonzero(known)
            q = pd.DataFrame({"code": code[known], "time": t.to_numpy()[known], "row": rows})
            q = q.sort_values("time", kind="stable")
            m = pd.merge_asof(
                q, ev, on="time", by="code", direction="backward", allow_exact_matches=True
            )
            got = m["granted"].to_numpy(dtype=np.float64)  # NaN: no event by then
            g[m["row"].to_numpy()] = np.where(np.isnan(got), -1, got).astype(np.int8)
        allowed = g == 1
        reason = np.full(allowed.size, WITHDRAWN, dtype=object)
        reason[g == -1] = NO_RECORD
        reason[allowed] = None
        return ConsentCheck(purpose, allowed, reason)

    def _by_code(self, purpose: str) -> tuple[pd.Index, pd.DataFrame]:
        """The purpose's events with subjects as integer codes (sorted by time), and the
        subjects' index: the as-of join by an integer key, not by text."""
        hit = self._codes.get(purpose)
        if hit is None:
            ev = self.events[self.events["purpose"] == purpose]
            codes, uniques = pd.factorize(ev["subject"], sort=False)
            frame = pd.DataFrame(
                {
                    "code": codes.astype(np.int64),
                    "time": ev["time"].to_numpy(),
                    "granted": ev["granted"].to_numpy(dtype=np.float64),
                }
            ).sort_values("time", kind="stable")
            hit = (pd.Index(uniques), frame)
            self._codes[purpose] = hit
        return hit

    def latest(self, purpose: str) -> tuple[dict[str, bool], pd.Timestamp]:
        hit = self._latest.get(purpose)
        if hit is None:
            ev = self.events[self.events["purpose"] == purpose]  # sorted by time
            last = ev.drop_duplicates("subject", keep="last")
            hit = (
                dict(zip(last["subject"], last["granted"].astype(bool), strict=True)),
                pd.Timestamp(ev["time"].max()) if len(ev) else pd.Timestamp.min,
            )
            self._latest[purpose] = hit
        return hit

    def current(self, subjects: Any, purpose: str, at: pd.Timestamp | None = None) -> ConsentCheck:
        """Consent now (or at ``at``): what serving checks for each request. At or after
        the purpose's last event it is each subject's last status (a lookup); before, the
        as-of join of :meth:`check`."""
        now = pd.Timestamp.now(tz="UTC") if at is None else pd.Timestamp(at)
        now_naive = now.tz_convert("UTC").tz_localize(None) if now.tzinfo else now
        status, last_t = self.latest(purpose)
        if now_naive < last_t:
            n = len(pd.Series(subjects))
            return self.check(subjects, pd.Series([now] * n), purpose)
        if isinstance(subjects, list) and all(type(x) is str for x in subjects):
            keys: list[Any] = [x.strip() or None for x in subjects]  # a request's ids
        else:
            keys = subject_keys(subjects).tolist()
        got = [status.get(k) if k is not None else None for k in keys]
        allowed = np.array([g is True for g in got], dtype=bool)
        reason = np.array(
            [None if g is True else NO_RECORD if g is None else WITHDRAWN for g in got],
            dtype=object,
        )
        return ConsentCheck(purpose, allowed, reason)
