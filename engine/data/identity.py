"""Which column says who a row is and when: the entity key (given, a unique id-like
column, or a generated row id that counts identical rows) and, for a table that holds each
entity at several times, the label time found without ``--time``. Part of ``insight init``
(engine.data.init)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from engine.data.columns import ID_NAMES, PII_NAMES, TIME_NAMES, Column
from engine.errors import DataError

if TYPE_CHECKING:
    from engine.data.init import DbTable


def panel_time(
    df: pd.DataFrame, cols: list[Column], taken: set[str], key: Column | None
) -> tuple[Column, str] | None:
    """A table that holds each entity at several times (monthly snapshots of accounts): a
    time column with repeated values and an id column that is unique per time but not
    alone. Then that column is the label time (a split by time, no account on both sides of
    a random split), found without ``--time``; None for a one-moment table."""
    n = len(df)
    times = sorted(
        (c for c in cols if c.kind == "timestamp" and c.name not in taken and 2 <= c.distinct < n),
        key=lambda c: (not TIME_NAMES.search(c.name), c.distinct),
    )
    ids = (
        [key]
        if key is not None
        else [
            c
            for c in cols
            if c.name not in taken
            and ID_NAMES.search(c.name)
            and c.non_null == n
            and c.kind in ("int", "string")
        ]
    )
    for t in times:
        if t.non_null < n:
            continue
        for c in ids:
            if c.distinct < n and not df[[c.raw, t.raw]].duplicated().any():
                return t, (
                    f"found: '{c.raw}' repeats across {t.distinct:,} values of '{t.raw}' and is "
                    f"unique per '{t.raw}' (pass --time to choose another column)"
                )
    return None


def choose_key(
    df: pd.DataFrame,
    cols: list[Column],
    key: str | None,
    tcol: Column | None,
    taken: set[str],
    find: Any,
    path: Path | DbTable,
) -> tuple[str, bool, str]:
    """The entity key column, whether it is a generated row id, and a note."""
    if key is not None:
        k = find(key, "--key")
        ids = df[k.raw] if tcol is None else df[[k.raw, tcol.raw]]
        dup = int(ids.duplicated().sum())
        if dup:
            per = "key" if tcol is None else "key and time"
            raise DataError(
                f"--key '{key}' is not unique: {dup:,} rows repeat a {per} already seen. "
                "Fix: pass a unique column (with --time, unique per time), or omit --key for "
                "a generated row id."
            )
        return k.name, False, ""
    unique = [
        c
        for c in cols
        if c.name not in taken
        and c.kind in ("int", "string")
        and c.non_null == len(df)
        and c.distinct == len(df)
    ]
    named = [c for c in unique if ID_NAMES.search(c.name)]
    plain = [c for c in unique if not PII_NAMES.search(c.name)]
    if tcol is None and (named or unique):
        c = (named or plain or unique)[0]  # a PII column is the key only as a last resort
        return c.name, False, f"'{c.raw}' is unique in every row"
    if tcol is not None:  # an entity seen at several times: an id column, unique per time
        for c in cols:
            if (
                c.name not in taken
                and ID_NAMES.search(c.name)
                and c.non_null == len(df)
                and not df[[c.raw, tcol.raw]].duplicated().any()
            ):
                return c.name, False, f"'{c.raw}' is unique per '{tcol.raw}'"
    name = "row_id" if "row_id" not in {c.name for c in cols} else "_row_id"
    groups = df.groupby(list(df.columns), dropna=False, sort=False).size()
    repeated = groups[groups > 1]
    same = (
        f" {int(repeated.sum()):,} rows fall in {len(repeated):,} groups of identical rows "
        f"(the largest: {int(repeated.max()):,} rows): each keeps its own id; if they are "
        "one record written twice, remove the copies from the file."
        if len(repeated)
        else ""
    )
    return (
        name,
        True,
        (
            "no unique column: each row is keyed by a hash of its values and its occurrence "
            "among identical rows (unique, the same on every read of this file)."
            f"{same} Pass --key to name a real one."
        ),
    )
