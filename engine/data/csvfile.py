"""CSV files as people save them: the separator, the decimal mark and the text encoding
(``sources.*.delimiter``, ``decimal``, ``encoding``), found from a file's first bytes
(:func:`sniff`, :func:`decimal_mark`) by ``insight init``, batch scoring and label files,
and turned into pyarrow's reader options. Spark reads the same dialect in
:mod:`engine.data.sources`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.csv as pacsv

if TYPE_CHECKING:
    from engine.config.source import SourceConfig


@dataclass(frozen=True)
class Dialect:
    """How a CSV file is written: what the source's ``delimiter``, ``decimal`` and
    ``encoding`` say (the defaults: comma, point, UTF-8)."""

    delimiter: str = ","
    decimal: str = "."
    encoding: str = "utf-8"

    @classmethod
    def of(cls, src: SourceConfig) -> Dialect:
        return cls(src.delimiter, src.decimal, src.encoding)

    def arrow_options(self) -> dict[str, Any]:
        """pyarrow's CSV reader options for the separator and the encoding."""
        return {
            "read_options": pacsv.ReadOptions(encoding=self.encoding),
            "parse_options": pacsv.ParseOptions(delimiter=self.delimiter),
        }


DELIMITERS = ",;\t|"
DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+$")
DECIMAL_POINT = re.compile(r"^[+-]?\d*\.\d+$")
# A number cell of a decimal-comma file, for float(): '12,50' -> '12.50'; a point (a
# thousands separator there) becomes a letter, so '1.234,50' is not read as 1.234. The
# build does the same in SQL: translate(cell, ',.', '.x') (engine.data.sources).
COMMA_DECIMAL = str.maketrans(",.", ".x")


def sniff(path: Path, size: int = 1 << 16) -> Dialect:
    """The separator and encoding of a CSV file, from its first bytes: UTF-8 unless the
    bytes are not (then windows-1252, what older spreadsheet programs save); the separator
    that splits the header and the first rows into the same number of cells (csv.Sniffer,
    limited to , ; tab |), a comma when nothing tells."""
    import csv

    head = path.read_bytes()[:size]
    try:
        text = head.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # a character cut by the sample's end
            text, encoding = head[: exc.start].decode("utf-8"), "utf-8"
        else:
            text, encoding = head.decode("windows-1252", errors="replace"), "windows-1252"
    lines = text.lstrip("\ufeff").splitlines()[:50]
    if len(lines) > 1 and size <= len(head):
        lines = lines[:-1]  # the last line may be cut
    try:
        delimiter = csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","
    return Dialect(delimiter=delimiter, encoding=encoding)


def decimal_mark(df: pd.DataFrame, delimiter: str, share: float) -> str:
    """',' when some column's cells are numbers written with a decimal comma (12,50) and no
    column's are numbers with a decimal point; a comma-separated file has none. ``share``:
    of a column's non-blank cells that must read as numbers."""
    if delimiter == ",":
        return "."
    comma = point = False
    for c in df.columns:
        text = df[c].astype("string").str.strip()
        filled = text[text.notna() & (text != "")]
        if filled.empty:
            continue
        as_is = float(pd.to_numeric(filled, errors="coerce").notna().mean())
        if as_is >= share:
            point = point or bool(filled.str.match(DECIMAL_POINT).any())
        elif (
            filled.str.match(DECIMAL_COMMA).any()
            and float(
                pd.to_numeric(filled.str.translate(COMMA_DECIMAL), errors="coerce").notna().mean()
            )
            >= share
        ):
            comma = True
    return "," if comma and not point else "."
