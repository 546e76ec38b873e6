"""The input contract of /predict and /explain: a request becomes a frame of feature rows
(numbers for numeric features, text for categorical ones), or a 4xx that names the field,
the value and the fix. Pure functions of the request, the model's
feature list and the online table, so they are tested and reused apart from the replica."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_serializer

from engine.config.project import ProjectConfig
from engine.data.csvfile import COMMA_DECIMAL
from engine.timeformat import to_strptime
from engine.train.schema import InputSchema
from serve.schemas import PredictRequest


class RowFields(BaseModel):
    """How a row as the user's table has it maps onto the model's inputs: the table's own
    column names (``rename:``'s left side) are aliases of the project's; columns the project
    knows but the model does not take (the key, the label, left-out, PII and sensitive
    columns) are ignored, never read; any other name is a typo and a 422. ``key``: the
    entity key, each row's id when the request sends no ``ids``. Built from the project by
    ``serve.deploy.row_fields``; part of the app's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    aliases: dict[str, str] = Field(
        default_factory=dict, description="Column names as the table has them -> the project's."
    )
    known: frozenset[str] = Field(
        default_factory=frozenset,
        description="Fields a row may carry that the model does not take: ignored.",
    )
    key: str | None = Field(default=None, description="The entity key: a row's id.")
    derived: dict[str, str] = Field(
        default_factory=dict,
        description="The views' derived features (name -> SQL); the datediff ones are "
        "computed from a row's own columns when the row does not send them.",
    )
    time: str | None = Field(default=None, description="The label time: 'now' when not sent.")
    events: frozenset[str] = Field(
        default_factory=frozenset,
        description="Columns of event sources (a transaction's amount, its time): a row "
        "that carries them is an event, not an entity; its missing features get a hint.",
    )
    time_formats: dict[str, str] = Field(
        default_factory=dict, description="Non-ISO time columns as strptime formats."
    )
    decimal_comma: frozenset[str] = Field(
        default_factory=frozenset,
        description="Number columns of a source written with a decimal comma: '12,50' "
        "sent as text reads as 12.5 (as the build read it).",
    )
    _derivations: dict[str, Derivation] | None = PrivateAttr(default=None)

    @field_serializer("known", "decimal_comma", "events")
    def _sorted(self, v: frozenset[str]) -> list[str]:
        return sorted(v)

    def derivations(self) -> dict[str, Derivation]:
        """The derived features /predict computes from a row's own columns (the rest must
        be sent, or looked up as ``entities``); parsed once, not per request."""
        if self._derivations is None:
            self._derivations = {
                name: d for name, expr in self.derived.items() if (d := Derivation.parse(expr))
            }
        return self._derivations


_DAY_ARG = r"(\w+|DATE\s*'\d{4}-\d{2}-\d{2}')"
_DATEDIFF = re.compile(rf"^\s*datediff\(\s*{_DAY_ARG}\s*,\s*{_DAY_ARG}\s*\)\s*$", re.I)


@dataclass(frozen=True)
class Derivation:
    """A derived feature in the one form /predict evaluates itself, Spark's
    ``datediff(end, start)``: whole days from ``start``'s date to ``end``'s (a time's date as
    written, as Spark reads a CSV cell into timestamp_ntz), each side a column or a
    ``DATE'YYYY-MM-DD'`` literal. This is what ``insight init`` writes
    for date columns; tested against Spark on random times."""

    end: str
    start: str

    @classmethod
    def parse(cls, expr: str) -> Derivation | None:
        m = _DATEDIFF.match(expr)
        return cls(m.group(1), m.group(2)) if m else None

    def columns(self) -> list[str]:
        return [a for a in (self.end, self.start) if not a.upper().startswith("DATE")]

    def value(
        self,
        row: dict[str, Any],
        today: dt.date,
        time: str | None,
        formats: dict[str, str] | None = None,
    ) -> float | None:
        days = [_day(a, row, today, time, formats or {}) for a in (self.end, self.start)]
        if days[0] is None or days[1] is None:
            return None
        return float((days[0] - days[1]).days)


def _day(
    arg: str, row: dict[str, Any], today: dt.date, time: str | None, formats: dict[str, str]
) -> dt.date | None:
    if arg.upper().startswith("DATE"):
        return dt.date.fromisoformat(arg.split("'")[1])
    if arg not in row or row[arg] is None:
        if arg == time:
            return today  # the label time at serving: the moment of scoring
        return None
    v = row[arg]
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a date or time")
    t = v.strip()
    if not t:
        return None
    if arg in formats:  # the column's declared format (sources.*.time_formats); ISO is
        try:  # read too: it is unambiguous
            return dt.datetime.strptime(t, formats[arg]).date()
        except ValueError:
            pass
    # The wall clock as written, offset ignored: what the build's cast of a CSV cell to
    # timestamp_ntz does, so a row sent here gets the feature its table row got.
    return dt.datetime.fromisoformat(t.replace("Z", "+00:00")).date()


def _number(i: int, name: str, v: Any, comma: bool = False) -> float | None:
    """A numeric feature's value: a JSON number or boolean (as 1/0), or text that reads as a
    number (what a CSV row holds; a blank is missing, as when the training table was read;
    ``comma``: the source writes decimals with a comma, '12,50')."""
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, str):
        t = v.strip()
        if not t:
            return None
        try:
            # as the build reads such a file: ',' the decimal mark, a '.' not read
            fv = float(t.translate(COMMA_DECIMAL) if comma else t)
        except ValueError:
            example = '"29,85"' if comma else '"29.85"'
            raise HTTPException(
                422,
                f"rows[{i}].{name}: {v!r} is text; '{name}' is a number. Fix: send a number "
                f"(as JSON or as text such as {example}), or null if unknown.",
            ) from None
    else:
        fv = float(v)
    if not math.isfinite(fv):
        raise HTTPException(422, f"rows[{i}].{name}: {v} is not a finite number.")
    return fv


def _some(names: list[str], shown: int = 5) -> str:
    """The first names of a list, and how many more there are: ``['a', 'b'] and 7 more
    (9 in all)``."""
    if len(names) <= shown:
        return str(names)
    return f"{names[:shown]} and {len(names) - shown} more ({len(names)} in all)"


def _refuse_fields(
    i: int,
    raw: dict[str, Any],
    row: dict[str, Any],
    names: list[str],
    fields: RowFields,
    derive: dict[str, Derivation],
) -> None:
    """A 422 for a row with a field the model does not know, or without one it needs
    (with how a derived feature is computed, and a hint for a row that is an event)."""
    keys = set(names)
    unknown = sorted(
        k
        for k in raw
        if k not in keys
        and fields.aliases.get(k, k) not in keys
        and k not in fields.known
        and fields.aliases.get(k, k) not in fields.known
    )
    if unknown:
        import difflib

        hint = difflib.get_close_matches(unknown[0], [*names, *fields.aliases], 1)
        near = f" Did you mean '{hint[0]}' for '{unknown[0]}'?" if hint else ""
        raise HTTPException(
            422,
            f"rows[{i}]: unknown field(s) {_some(unknown)}; the model takes {names}.{near}",
        )
    missing = [f for f in names if f not in row]
    if missing:
        how = "".join(
            f" '{f}' is computed from {derive[f].columns()}: send those."
            for f in missing[:5]
            if f in derive
        )
        event = sorted((fields.events - keys) & {fields.aliases.get(k, k) for k in raw})
        if event:
            how += (
                f" The row carries {event}, columns of an event table: features over "
                "events (counts, sums, latest values) come from an entity's history, "
                'not from one event. Fix: send {"entities": [id, ...]} to score '
                "from the online table (`insight features materialize`), or send the "
                "features by name."
            )
        raise HTTPException(
            422,
            f"rows[{i}]: missing field(s) {_some(missing)}; send null for an unknown value.{how}",
        )


def rows_frame(
    rows: list[dict[str, Any]], schema: InputSchema, fields: RowFields | None = None
) -> tuple[pd.DataFrame, list[str] | None]:
    """Rows of ``{feature: value | None}`` (or the table's own names, see :class:`RowFields`)
    as a frame in the model's column order: numbers for numeric features, text for
    categorical ones (None: missing); and each row's entity id where every row carries the
    key field (else None)."""
    fields = fields or RowFields()
    names = schema.names
    keys = set(names)
    derive = {n: d for n, d in fields.derivations().items() if n in keys}
    today = dt.datetime.now(dt.UTC).date()
    cols: dict[str, list[Any]] = {n: [] for n in names}
    ids: list[str] | None = [] if fields.key else None
    for i, raw in enumerate(rows):
        row: dict[str, Any] = {}
        other: dict[str, Any] = {}  # the row's columns that are not model inputs
        for k, v in raw.items():
            name = k if k in keys else fields.aliases.get(k, k)
            if name in keys:
                if name in row:
                    raise HTTPException(
                        422, f"rows[{i}]: '{name}' is sent twice (as '{k}' and by its name)."
                    )
                row[name] = v
            else:
                other[name] = v
                if name == fields.key and ids is not None and v is not None:
                    ids.append(str(v))
        for name, d in derive.items():
            # every dated column present (a null is a missing value); the label time may be
            # left out: it is then the day of scoring
            if name in row or any(c not in other and c != fields.time for c in d.columns()):
                continue
            try:
                row[name] = d.value(other, today, fields.time, fields.time_formats)
            except ValueError as exc:
                raise HTTPException(
                    422,
                    f"rows[{i}]: '{name}' is computed from {d.columns()} "
                    f"(datediff({d.end}, {d.start})), and one of them cannot be read: {exc}. "
                    "Fix: send ISO dates or times (2026-11-24 or 2026-11-24T10:00:00Z).",
                ) from None
        if len(row) < len(keys) or len(raw) > len(row):
            _refuse_fields(i, raw, row, names, fields, derive)
        if ids is not None and len(ids) != i + 1:
            ids = None  # a row without the key: no ids from rows
        for f in schema.features:
            v = row[f.name]
            if v is None:
                cols[f.name].append(None)
            elif f.kind == "numeric":
                cols[f.name].append(_number(i, f.name, v, f.name in fields.decimal_comma))
            else:
                if not isinstance(v, str):
                    raise HTTPException(
                        422,
                        f"rows[{i}].{f.name}: {v!r} is not text; '{f.name}' is categorical. "
                        f"Fix: send its value as text (e.g. {list(f.categories[:3])}), or null.",
                    )
                cols[f.name].append(v)
    frame = pd.DataFrame(
        {
            f.name: (
                np.array([np.nan if v is None else v for v in cols[f.name]], dtype=np.float64)
                if f.kind == "numeric"
                else np.array(cols[f.name], dtype=object)
            )
            for f in schema.features
        }
    )
    return frame, ids


def table_frame(
    batch: pd.DataFrame, schema: InputSchema, fields: RowFields
) -> tuple[pd.DataFrame, list[str] | None, np.ndarray]:
    """Rows of the user's own table (a batch of it: cells as text from a CSV, or typed from
    Parquet) as model inputs, by /predict's row contract (:func:`rows_frame`): the table's
    own column names, numbers as text (a decimal comma where the source has one), dates
    for the derived day counts, the key as each row's id. Unlike a request, a table is read
    as the build reads its source: a number or date cell that does not read is missing and
    counted (the third value: such cells per row), and columns the project does not know
    are left aside. A row that still cannot be read raises HTTPException (the caller says
    which table)."""
    keys = set(schema.names)
    numeric = {f.name for f in schema.features if f.kind == "numeric"}
    derive = {n: d for n, d in fields.derivations().items() if n in keys}
    dated = {c for d in derive.values() for c in d.columns()}
    take: dict[str, str] = {}  # the table's column -> the project's name
    for c in batch.columns:
        name = c if c in keys else fields.aliases.get(c, c)
        if name in keys or name in dated or name in fields.known:
            take[str(c)] = name
    bad = np.zeros(len(batch), dtype=np.int64)
    cols: dict[str, Any] = {}
    for c, name in take.items():
        s = batch[c]
        if pd.api.types.is_datetime64_any_dtype(s):
            if getattr(s.dt, "tz", None) is not None:
                s = s.dt.tz_convert("UTC").dt.tz_localize(None)
            s = s.dt.strftime("%Y-%m-%dT%H:%M:%S").astype(object)
        elif name in numeric and not pd.api.types.is_numeric_dtype(s):
            text = s.astype("string").str.strip()
            blank = text.isna() | (text == "")
            if name in fields.decimal_comma:
                text = text.str.translate(COMMA_DECIMAL)
            num = pd.to_numeric(text.mask(blank), errors="coerce")
            bad += (num.isna() & ~blank).to_numpy(dtype=np.int64)
            s = num
        cols[c] = s
    frame = pd.DataFrame(cols, index=batch.index)
    obj: Any = frame.astype(object)
    records = obj.where(frame.notna(), None).to_dict("records")
    present = set(take.values())
    if derive:
        today = dt.datetime.now(dt.UTC).date()
        for i, rec in enumerate(records):
            other = {take[k]: v for k, v in rec.items() if take[k] not in keys}
            for name, d in derive.items():
                if name in present:  # sent as a column of the table
                    continue
                try:
                    rec[name] = d.value(other, today, fields.time, fields.time_formats)
                except ValueError:  # a date that does not read: missing, as in the build
                    rec[name] = None
                    bad[i] += 1
    x, ids = rows_frame(records, schema, fields)
    return x, ids, bad


def entity_matrix(
    online: Any, entities: list[Any], features: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Feature rows of ``entities`` from the online table; unknown ids are a 404 naming them."""
    if online is None:
        raise HTTPException(
            503,
            "entity lookup needs the online table, and this app has none. Fix: run "
            "`insight features materialize`, then `insight serve up` again.",
        )
    ids = [str(e) for e in entities]
    keys: list[Any] = ids
    if online.frame.index.dtype.kind in "iu":  # integer keys: "17" and 17 are one id
        keys = [int(e) if e.lstrip("-").isdigit() else e for e in ids]
    x, missing_keys = online.lookup(keys, features)
    missing = [str(m) for m in missing_keys]
    if missing:
        pos = [ids.index(m) for m in missing[:5]]
        raise HTTPException(
            404,
            f"entities{pos}: unknown entity id(s) {_some(missing)} (not in the online table "
            f"as of {online.as_of}).",
        )
    return x, ids


def request_inputs(
    req: PredictRequest,
    schema: InputSchema,
    online: Any,
    max_rows: int,
    fields: RowFields | None = None,
) -> tuple[pd.DataFrame, list[str] | None]:
    """The feature rows of a request and the entity id per row (None: rows without ids):
    ``ids`` when sent, else the key field of rows that carry it."""
    n = len(req.rows) if req.rows is not None else len(req.entities or [])
    if n > max_rows:
        raise HTTPException(
            413, f"{n} rows in one request; the limit is {max_rows}. Fix: split the request."
        )
    if req.rows is not None:
        x, from_rows = rows_frame(req.rows, schema, fields)
        return x, [str(i) for i in req.ids] if req.ids is not None else from_rows
    return entity_matrix(online, list(req.entities or []), schema.names)


def request_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame of feature rows as the JSON ``rows`` of /predict: numbers as numbers, text as
    text, missing values as null (what a client sends)."""
    out = []
    for rec in df.to_dict(orient="records"):
        row: dict[str, Any] = {}
        for k, v in rec.items():
            if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
                row[str(k)] = None
            elif isinstance(v, bool | np.bool_ | int | float | np.integer | np.floating):
                row[str(k)] = float(v)
            else:
                row[str(k)] = str(v)
        out.append(row)
    return out


def sensitive_groups(
    online: Any, ids: list[str] | None, attrs: list[str]
) -> dict[str, list[Any]] | None:
    """The sensitive attributes of each row's entity, from the online table (None where the
    entity or the table is unknown): what live fairness is measured on. Clients never send
    them, and models never take them."""
    if online is None or ids is None or not attrs:
        return None
    cols = [a for a in attrs if a in online.frame.columns]
    if not cols:
        return None
    index = online.frame.index
    keys: list[Any] = ids
    if index.dtype.kind in "iu":
        keys = [int(e) if e.lstrip("-").isdigit() else e for e in ids]
    known = [k in index for k in keys]
    out: dict[str, list[Any]] = {}
    for a in cols:
        col = online.frame[a]
        out[a] = [
            (None if pd.isna(v := col.at[k]) else str(v)) if ok else None
            for k, ok in zip(keys, known, strict=True)
        ]
    return out if any(v is not None for vals in out.values() for v in vals) else None


def row_fields(cfg: ProjectConfig) -> RowFields:
    """What a row from the user's own table carries: the table's column names (aliases of
    the project's, from ``rename:``), every column the project knows (declared, key, label,
    times, sensitive, PII: ignored unless the model takes it), the key, the views' derived
    features and the time formats."""
    names = [cfg.label.source] + [v.source for v in cfg.features.views]
    aliases: dict[str, str] = {}
    known = {cfg.label.column, *(e.key for e in cfg.entities.values())}
    known |= {a.split(".", 1)[-1] for a in [*cfg.sensitive, *cfg.pii]}
    for n in dict.fromkeys(names):
        src = cfg.sources[n]
        aliases.update({raw: new for raw, new in src.rename.items() if raw != new})
        known |= set(src.columns) | {c for c in (src.event_time, src.row_id) if c}
    known |= {c for c in (cfg.label.event_time,) if c}
    if cfg.treatment is not None:
        known |= {cfg.treatment.column, cfg.treatment.outcome}
    known |= {raw for raw, new in aliases.items() if new in known}
    entity = cfg.sources[cfg.label.source].entity
    keys = {e.key for e in cfg.entities.values()}
    events = {
        c
        for v in cfg.features.views
        if (src := cfg.sources[v.source]).event_time and v.source != cfg.label.source
        for c in [*src.columns, src.event_time]
        if c not in keys
    }
    return RowFields(
        events=frozenset(events),
        aliases=aliases,
        known=frozenset(known),
        key=cfg.entity_key(entity) if entity else None,
        derived={k: v for view in cfg.features.views for k, v in view.derived.items()},
        time=cfg.label.event_time,
        time_formats={
            col: to_strptime(fmt, col)
            for src in cfg.sources.values()
            for col, fmt in src.time_formats.items()
        },
        decimal_comma=frozenset(
            col
            for n in dict.fromkeys(names)
            if cfg.sources[n].decimal == ","
            for col, kind in cfg.sources[n].columns.items()
            if kind in ("int", "double")
        ),
    )
