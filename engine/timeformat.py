"""Date and time formats of CSV columns: one small pattern language that Spark (the feature
build, ``try_to_timestamp``) and Python (/predict, ``datetime.strptime``) read alike, so a
row sent to the model is read as its table row was."""

from __future__ import annotations

import re

_TOKENS = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
_PATTERN = re.compile(r"yyyy|MM|dd|HH|mm|ss|[/.\- :T]")

# What `insight init` tries on a time-named text column that is not ISO (order matters
# only for day-first vs month-first: see engine.data.init).
CANDIDATES = [
    f"{d}{t}"
    for d in ("dd/MM/yyyy", "MM/dd/yyyy", "dd.MM.yyyy", "dd-MM-yyyy", "yyyy/MM/dd")
    for t in ("", " HH:mm", " HH:mm:ss")
]


def to_strptime(fmt: str, column: str = "") -> str:
    """The ``strptime`` format of a Spark pattern; ValueError naming what is not supported."""
    out, pos = [], 0
    for m in _PATTERN.finditer(fmt):
        if m.start() != pos:
            break
        out.append(_TOKENS.get(m.group(), m.group()))
        pos = m.end()
    if pos != len(fmt) or not fmt:
        raise ValueError(
            f"time format {fmt!r} of '{column}' uses letters outside yyyy MM dd HH mm ss and "
            "the separators / . - : space T. Fix: write it with those (e.g. 'dd/MM/yyyy "
            "HH:mm'), or convert the column to ISO dates."
        )
    return "".join(out)


_LENIENT = {"dd": "d", "MM": "M", "HH": "H", "mm": "m", "ss": "s"}


def to_spark(fmt: str) -> str:
    """The Spark pattern that reads what ``strptime`` reads for ``fmt``: days, months,
    hours, minutes and seconds with one digit or two (``6/1/2026`` as well as
    ``06/01/2026``; Spark's ``dd`` takes two digits only, so a file written by a spreadsheet
    without leading zeros read as nothing)."""
    return _PATTERN.sub(lambda m: _LENIENT.get(m.group(), m.group()), fmt)


def day_first(fmt: str) -> bool | None:
    """Whether a date format puts the day before the month (None: no day and month)."""
    if "dd" not in fmt or "MM" not in fmt:
        return None
    return fmt.index("dd") < fmt.index("MM")
