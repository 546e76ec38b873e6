"""``insight init``: a commented project file for a user's table, inferred from the data.

Given one CSV or Parquet table and its label column, write ``insight.yaml`` beside it:

- the source, written as the file is (a CSV's separator, decimal comma and encoding are
  found from the file: :mod:`engine.data.csvfile`), with every column's type inferred (a CSV column whose non-blank cells are
  numbers, apart from a few stray words, is numeric: the blanks and words become null at
  build time and are counted); awkward column names are renamed to snake_case;
- the key: ``--key``, else a column named like an id whose values are unique, else any
  unique column, else a generated row id (a hash of the row and its occurrence among
  identical rows: unique) with a note that counts identical rows;
- the label and its positive value (``--positive``, else the usual spellings);
- the label's time (``--time``): without it the table is a snapshot, split at random;
- one feature view over the other columns. Left out, with a comment saying why: PII
  candidates by name (email, phone, name, address: hashed, never features),
  identifier-like text (mostly distinct values), and columns that are always empty.
  Timestamp columns become a numeric feature (days before the label time, or since 1970);
- sensitive-attribute candidates by name (gender, sex, age, race, ...), listed as a comment:
  never guessed silently.

The file is validated (as ``insight validate`` would) before it is written, by one atomic
rename; a bad ``--label``, a label with more than two values or an empty table writes
nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.data.columns import (
    EMAIL_VALUE,
    ID_NAMES,
    ISO_TIME,
    NUMERIC_SHARE,
    PHONE_VALUE,
    PII_NAMES,
    SENSITIVE_NAMES,
    TIME_NAMES,
    Column,
)
from engine.data.csvfile import COMMA_DECIMAL, Dialect, decimal_mark, sniff
from engine.data.identity import choose_key, panel_time
from engine.data.location import DbTable, location_lines, parse_from, read_db
from engine.errors import ConfigError, DataError

__all__ = ["DbTable", "Plan", "location_lines", "parse_from", "plan", "read_table"]


@dataclass
class Plan:
    """Everything the project file will say, before it is rendered."""

    name: str
    path: Path | DbTable
    fmt: str
    rows: int
    columns: list[Column]
    key: str
    row_id: bool
    key_note: str
    label: str
    positive: Any
    label_values: dict[str, int]
    time: str | None
    features: list[str] = field(default_factory=list)
    derived: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    pii: list[str] = field(default_factory=list)
    sensitive: list[str] = field(default_factory=list)
    time_candidates: list[str] = field(default_factory=list)
    time_note: str = ""
    dialect: Dialect = field(default_factory=Dialect)
    leaks: list[str] = field(default_factory=list)  # left out: leak the label or are a treatment


def snake(name: str) -> str:
    """A column name as an identifier: ``"Kündigung (€)"`` -> ``kundigung``, ``"customerID"``
    -> ``customer_id``; accents are dropped, not the letters."""
    import unicodedata

    text = unicodedata.normalize("NFKD", name.strip().replace("ß", "ss"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    s = re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_").lower()
    return s if s and not s[0].isdigit() else f"c_{s}"


def read_table(path: Path | DbTable) -> tuple[pd.DataFrame, str, Dialect]:
    """The table with every CSV cell as text (types are inferred here, not by a parser that
    turns a column with one blank into text), and the CSV's dialect; Parquet as it is; a
    database table as ADBC reads it (its first 500,000 rows)."""
    if isinstance(path, DbTable):
        return read_db(path), "postgres", Dialect()
    if not path.is_file():
        raise ConfigError(
            f"--from '{path}' does not exist. Fix: pass the path of a CSV or Parquet file."
        )
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pq.read_table(path).to_pandas(), "parquet", Dialect()
        if suffix in (".csv", ".txt", ".tsv"):
            d = sniff(path)
            opts = d.arrow_options()
            with pacsv.open_csv(path, **opts) as reader:
                names = reader.schema.names
            table = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string())
                ),
                **opts,
            )
            df = table.to_pandas()
            mark = decimal_mark(df, d.delimiter, NUMERIC_SHARE)
            return df, "csv", Dialect(d.delimiter, mark, d.encoding)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"'{path}' could not be read as {suffix[1:]}: {exc}") from None
    raise ConfigError(
        f"--from '{path}': unknown file type '{suffix}'. Fix: pass a .csv or .parquet file."
    )


def _infer(raw: str, col: pd.Series, fmt: str, decimal: str = ".") -> Column:
    name = snake(raw)
    if fmt == "parquet":
        dt = col.dtype
        if pd.api.types.is_bool_dtype(dt):
            kind = "bool"
        elif pd.api.types.is_integer_dtype(dt):
            kind = "int"
        elif pd.api.types.is_numeric_dtype(dt):
            kind = "double"
        elif pd.api.types.is_datetime64_any_dtype(dt):
            kind = "timestamp"
        else:
            kind = "string"
        return Column(name, raw, kind, int(col.nunique()), int(col.notna().sum()))
    text = col.astype("string").str.strip()
    filled = text[text.notna() & (text != "")]
    out = Column(name, raw, "string", int(filled.nunique()), len(filled))
    if filled.empty:
        return out
    lower = filled.str.lower()
    if set(lower.unique()) <= {"true", "false"}:
        out.kind = "bool"
        return out
    as_number = filled.str.translate(COMMA_DECIMAL) if decimal == "," else filled
    nums = pd.to_numeric(as_number, errors="coerce")
    parsed = float(nums.notna().mean())
    if parsed >= NUMERIC_SHARE:
        whole = nums.dropna()
        out.kind = (
            "int"
            if parsed == 1.0
            and bool((whole == whole.round()).all())
            and not filled.str.contains(r"[.,eE]").any()
            else "double"
        )
        bad = int(nums.isna().sum())
        blank = int(len(col) - len(filled))
        if bad or blank:
            out.note = f"{blank:,} blank and {bad:,} non-numeric cell(s) are read as null"
        return out
    if float(filled.str.match(ISO_TIME).mean()) >= NUMERIC_SHARE:
        out.kind = "timestamp"  # what Spark's cast reads: no format needed
    elif TIME_NAMES.search(name):
        _time_format(out, filled)
    return out


def _time_format(out: Column, filled: pd.Series) -> None:
    """A time-named text column in a non-ISO format: the format that reads (nearly) every
    value, from :data:`engine.timeformat.CANDIDATES`. Day-first wins where every value
    reads both ways (01/06/2026), and the note says so."""
    from engine.timeformat import CANDIDATES, to_strptime

    fits = [
        f
        for f in CANDIDATES
        if float(pd.to_datetime(filled, format=to_strptime(f), errors="coerce").notna().mean())
        >= NUMERIC_SHARE
    ]
    if not fits:
        return
    out.kind, out.time_format = "timestamp", fits[0]
    swapped = fits[0].replace("dd", "@").replace("MM", "dd").replace("@", "MM")
    if swapped != fits[0] and swapped in fits:
        out.time_swapped = swapped
        out.note = (
            f"read as {fits[0]}: every value also reads as {swapped}; if months come first, "
            f"set time_formats: {{{out.name}: '{swapped}'}}"
        )


def _one_date_order(cols: list[Column]) -> None:
    """A file writes its dates one way: where one time column can only be read month first
    (1/13/2026) or only day first (13/1/2026), a column whose every value reads both ways
    (6/1/2026) takes that order too, and its note says why."""
    from engine.timeformat import day_first

    sure = [c for c in cols if c.time_format and not c.time_swapped]
    orders = {day_first(c.time_format) for c in sure} - {None}
    if len(orders) != 1:
        return  # no column decides, or the file mixes orders: day first, as noted
    first = orders.pop()
    witness = next(c.name for c in sure if day_first(c.time_format) is first)
    for c in cols:
        if c.time_swapped and day_first(c.time_format) is not first:
            c.time_format, c.time_swapped = c.time_swapped, c.time_format
            c.note = (
                f"read as {c.time_format}, as '{witness}' (which reads only that way): every "
                f"value also reads as {c.time_swapped}"
            )


def plan(
    path: Path | DbTable,
    label: str,
    key: str | None = None,
    time: str | None = None,
    positive: str | None = None,
) -> Plan:
    """Infer the project for one table (no file is written)."""
    from engine.data.labels import normalize

    df, fmt, dialect = read_table(path)
    if df.empty or not len(df.columns):
        raise DataError(f"'{path}' has no rows. Fix: pass a table with data.")
    cols = _columns(df, fmt, dialect.decimal)
    find = _finder(cols, path)
    lab = find(label, "--label")
    values, lv, pos_raw = _label_values(df[lab.raw], lab.name, positive)
    tcol, time_note = _time_column(df, cols, fmt, lab, time, key, find)
    _one_date_order(cols)
    taken = {lab.name} | ({tcol.name} if tcol else set())
    kcol, row_id, key_note = choose_key(df, cols, key, tcol, taken, find, path)
    p = Plan(
        name=snake(path.stem).replace("_", "-")[:60] or "project",
        path=path,
        fmt=fmt,
        dialect=dialect,
        rows=len(df),
        columns=cols,
        key=kcol,
        row_id=row_id,
        key_note=key_note,
        label=lab.name,
        positive=pos_raw if isinstance(pos_raw, str) else lv.positive,
        label_values={k: int(v) for k, v in values.items()},
        time=tcol.name if tcol else None,
        time_note=time_note,
    )
    y01 = (
        df[lab.raw]
        .map(
            lambda v: (
                np.nan
                if v is None or (isinstance(v, float) and v != v) or normalize(v) == ""
                else float(normalize(v) == lv.positive)
            )
        )
        .to_numpy(dtype=np.float64)
    )
    kc = next((c for c in cols if c.name == kcol), None)  # None for a generated row id
    if PII_NAMES.search(kcol) or (kc is not None and pii_reason(kc, df[kc.raw])):
        p.pii.append(kcol)  # the key itself is PII: hashed on read and in the audit log
    for c in cols:
        if c.name not in taken and c.name != kcol:
            _place(p, c, df[c.raw], y01, tcol is None)
    _some_feature(p)
    return p


def _columns(df: pd.DataFrame, fmt: str, decimal: str) -> list[Column]:
    """One inferred record per column; two raw names that snake_case the same are kept
    apart by their position."""
    cols = [_infer(str(c), df[c], fmt, decimal) for c in df.columns]
    if len({c.name for c in cols}) < len(cols):
        for c in cols:
            if sum(1 for d in cols if d.name == c.name) > 1:
                c.name = f"{c.name}_{cols.index(c)}"
    return cols


def _finder(cols: list[Column], path: Path | DbTable) -> Callable[[str, str], Column]:
    """A column by its raw name, its snake_case name, or the snake_case of what was given."""
    by_raw = {c.raw: c for c in cols}
    by_name = {c.name: c for c in cols}

    def find(arg: str, what: str) -> Column:
        hit = by_raw.get(arg) or by_name.get(arg) or by_name.get(snake(arg))
        if hit is None:
            raise ConfigError(
                f"{what} '{arg}' is not a column of '{path.name}' (columns: "
                f"{', '.join(c.raw for c in cols)}). Fix: pass one of them."
            )
        return hit

    return find


def _label_values(raw: pd.Series, name: str, positive: str | None) -> tuple[Any, Any, Any]:
    """The label's value counts, the resolved positive class, and that class as written."""
    from collections import Counter

    from engine.data.labels import normalize, resolve

    values: Counter[str] = Counter()
    missing = 0
    for v in raw.tolist():
        s = "" if v is None or (isinstance(v, float) and v != v) else normalize(v)
        if s == "":
            missing += 1
        else:
            values[s] += 1
    lv = resolve(name, values, missing, positive, option="--positive")
    pos_raw = next((v for v in raw.dropna().unique() if normalize(v) == lv.positive), lv.positive)
    return values, lv, pos_raw


def _time_column(
    df: pd.DataFrame,
    cols: list[Column],
    fmt: str,
    lab: Column,
    time: str | None,
    key: str | None,
    find: Callable[[str, str], Column],
) -> tuple[Column | None, str]:
    """The label-time column: the one given, else a panel's period column if the table is
    a panel; it must hold readable dates."""
    tcol = find(time, "--time") if time else None
    time_note = ""
    if tcol is None:
        panel = panel_time(df, cols, {lab.name}, find(key, "--key") if key else None)
        if panel is not None:
            tcol, time_note = panel
    if tcol is not None and tcol.kind != "timestamp":
        if fmt == "csv":
            text = df[tcol.raw].astype("string").str.strip()
            _time_format(tcol, text[text.notna() & (text != "")])
        if tcol.kind != "timestamp":
            raise DataError(
                f"--time '{time}' does not hold dates or times that can be read (e.g. "
                f"{df[tcol.raw].dropna().head(3).tolist()}). Fix: pass the column that says "
                "when each label was observed, as ISO dates (2026-06-01) or in one of "
                "dd/MM/yyyy, MM/dd/yyyy, dd.MM.yyyy, dd-MM-yyyy, yyyy/MM/dd."
            )
    return tcol, time_note


def _place(p: Plan, c: Column, values: pd.Series, y01: np.ndarray, no_time: bool) -> None:
    """Where one column goes in the plan: PII (hashed, left out), left out with its reason
    (empty, constant, identifier-like, leaking the label, a treatment), a timestamp (a
    derived day count), or a feature (a sensitive-attribute candidate listed)."""
    why = pii_reason(c, values)
    if why:
        p.pii.append(c.name)
        p.left_out[c.name] = f"a PII candidate ({why}): hashed on read, never a feature"
        return
    if PII_NAMES.search(c.name):  # named like PII, but its few values identify nobody
        kept = (
            f"named like PII, but {c.distinct:,} distinct value(s) identify nobody: kept "
            "as a feature (list it under pii: if it does identify a person)"
        )
        c.note = f"{c.note}; {kept}" if c.note else kept
    if c.non_null == 0:
        p.left_out[c.name] = "always empty"
    elif c.distinct == 1 and c.non_null == p.rows:
        p.left_out[c.name] = "one value in every row: it tells rows apart by nothing"
    elif c.kind == "timestamp":
        if p.time:
            d = f"{c.name}_days_before_label"
            p.derived[d] = f"datediff({p.time}, {c.name})"
        else:
            d = f"{c.name}_days_since_1970"
            p.derived[d] = f"datediff({c.name}, DATE'1970-01-01')"
        p.left_out[c.name] = f"a timestamp: the model takes {d} instead"
        p.features.append(c.name)  # read by the view; the derived number is the input
        if no_time and TIME_NAMES.search(c.name):
            p.time_candidates.append(c.name)
    elif c.kind == "string" and c.distinct > 100 and c.distinct > 0.5 * c.non_null:
        p.left_out[c.name] = (
            f"identifier-like text ({c.distinct:,} distinct values in {c.non_null:,} rows)"
        )
    elif ID_NAMES.search(c.name) and c.distinct > 100 and c.distinct > 0.5 * c.non_null:
        p.left_out[c.name] = (
            f"an identifier by its name ({c.distinct:,} distinct values in "
            f"{c.non_null:,} rows): a number that names, not measures"
        )
    elif why := _leak_or_treatment(c, values, y01, p.dialect.decimal):
        p.left_out[c.name] = why
        p.leaks.append(c.name)
    else:
        p.features.append(c.name)
        if SENSITIVE_NAMES.search(c.name):
            p.sensitive.append(c.name)


def _some_feature(p: Plan) -> None:
    """At least one column must be left to be a feature."""
    if not [f for f in p.features if p.left_out.get(f) is None] and not p.derived:
        roles = f"the key '{p.key}'" + ("" if p.row_id else " (a column)")
        roles += f", the label '{p.label}'" + (f" and the time '{p.time}'" if p.time else "")
        why = "; ".join(f"'{c}': {r}" for c, r in p.left_out.items())
        raise DataError(
            f"'{p.path.name}' has no column left to be a feature: besides {roles}, "
            + (f"every column was left out ({why})" if why else "it has no other column")
            + ". Fix: pass a table with attributes besides the key and the label"
            + (", or list a column you want under a view's columns yourself" if why else "")
            + "."
        )


def _leak_or_treatment(c: Column, values: pd.Series, y: np.ndarray, decimal: str) -> str | None:
    """Why a would-be feature must not be one (engine.data.leaks), or None."""
    from engine.data.leaks import leak_reason, treatment_reason

    if c.kind == "string" and (why := treatment_reason(c.name, values)):
        return (
            f"{why}: it says what was done to a customer, not who they are; declare it as "
            "the treatment (uplift) rather than a feature"
        )
    v = values
    if c.kind in ("int", "double") and not pd.api.types.is_numeric_dtype(values.dtype):
        text = values.astype("string").str.strip()
        v = pd.to_numeric(
            text.str.translate(COMMA_DECIMAL) if decimal == "," else text, errors="coerce"
        )
    elif c.kind == "string":
        v = values.astype("string").str.strip().replace("", pd.NA)
    why = leak_reason(v, y)
    if why is None:
        return None
    return (
        f"leaks the label: it {why}. A model would learn it and fail where it is not yet "
        "known; list it under a view's columns and train.allow_leaky only if it is known "
        "when predictions are made"
    )


def pii_reason(c: Column, values: pd.Series) -> str | None:
    """Why a column looks like personal data, or None. By its values (e-mail addresses
    anywhere; phone numbers in a column named like one), or by its name when its values are
    many enough to single people out; a column named ``phone_service`` holding Yes/No is an
    attribute, not PII."""
    named = bool(PII_NAMES.search(c.name))
    sample = values.dropna().astype(str).str.strip()
    sample = sample[sample != ""].head(1000)
    if len(sample):
        if sample.str.match(EMAIL_VALUE).mean() >= 0.9:
            return "its values are e-mail addresses"
        digits = sample.str.count(r"\d")
        if named and (sample.str.match(PHONE_VALUE) & (digits >= 7)).mean() >= 0.9:
            return "its values are phone numbers"
    if named and c.distinct > max(20, 0.05 * c.non_null):
        return f"named like PII, {c.distinct:,} distinct values"
    return None
