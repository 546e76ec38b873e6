"""One source of the project file (``sources.NAME``): where a table is, its columns and
their types, and for a CSV file how it is written (separator, decimal mark, encoding, time
formats). Part of :class:`engine.config.project.ProjectConfig`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from engine.config.base import IDENT, Model


class SourceConfig(Model):
    """A table the project reads: a CSV or Parquet file (or folder of Parquet files)."""

    path: str
    format: Literal["parquet", "csv"] = Field(
        default="parquet",
        description="csv or parquet. Omitted: from the path's extension (.csv .tsv .txt: csv; "
        ".parquet .pq or a folder: parquet), else from the file's first bytes.",
    )
    entity: str | None = Field(default=None, description="Entity whose key this table carries.")
    event_time: str | None = Field(
        default=None, description="Event-time column; omit for static tables."
    )
    columns: dict[str, Literal["int", "double", "string", "timestamp", "bool"]] = Field(
        default_factory=dict,
        description="Declared columns and types. Parquet: checked on read. CSV: cells are read "
        "as these types; a blank or text cell in a number column becomes null and is counted "
        "in the validation report.",
    )
    rename: dict[str, str] = Field(
        default_factory=dict,
        description="Column names as the file has them -> names the project uses (for names "
        "with spaces, dots or other characters that are awkward in SQL and JSON).",
    )
    row_id: str | None = Field(
        default=None,
        pattern=IDENT,
        description="For a table without a unique column: a key column the engine adds, a "
        "hash of each row's values and its occurrence among identical rows ('<hash>-0', "
        "'<hash>-1'): unique, and the same on every read of the same file.",
    )
    time_formats: dict[str, str] = Field(
        default_factory=dict,
        description="CSV: the format of a timestamp column that is not ISO (yyyy-MM-dd), in "
        "Spark's pattern letters: yyyy, MM, dd, HH, mm, ss and the separators / . - : space T "
        "(e.g. 'dd/MM/yyyy'). /predict reads the same format.",
    )

    delimiter: str = Field(
        default=",",
        min_length=1,
        max_length=1,
        description="CSV: the character between cells (',' ';' tab '|'). `insight init` "
        "finds it from the file.",
    )
    decimal: Literal[".", ","] = Field(
        default=".",
        description="CSV: the decimal mark of number cells. ',' reads '12,50' as 12.5; a "
        "cell with a point (a thousands separator there: '1.234,50') is then not read and "
        "is counted as not a number.",
    )
    encoding: str = Field(
        default="utf-8",
        description="CSV: the text encoding (utf-8, or e.g. windows-1252 for files saved "
        "by older spreadsheet programs). `insight init` finds it from the file.",
    )

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(
                f"unknown text encoding {v!r}. Fix: use utf-8, windows-1252 or latin-1."
            ) from None
        return v

    @field_validator("time_formats")
    @classmethod
    def _formats(cls, v: dict[str, str]) -> dict[str, str]:
        from engine.timeformat import to_strptime

        for col, fmt in v.items():
            to_strptime(fmt, col)  # a ValueError names the column, the format and the fix
        return v

    @model_validator(mode="after")
    def _csv_dialect(self) -> SourceConfig:
        dialect = {
            k: getattr(self, k)
            for k, d in (("delimiter", ","), ("decimal", "."), ("encoding", "utf-8"))
            if getattr(self, k) != d
        }
        if dialect and self.format != "csv":
            raise ValueError(
                f"{', '.join(dialect)} describe a CSV file; this source is {self.format}. "
                f"Fix: remove {', '.join(dialect)} from this source."
            )
        if self.delimiter in ('"', "\n", "\r") or (self.delimiter == self.decimal == ","):
            raise ValueError(
                f"delimiter {self.delimiter!r} cannot separate cells"
                + (" when ',' is also the decimal mark" if self.delimiter == "," else "")
                + ". Fix: set delimiter to the file's separator (';' in most files with "
                "decimal commas)."
            )
        return self

    @model_validator(mode="after")
    def _formats_are_times(self) -> SourceConfig:
        if self.time_formats and self.format != "csv":
            raise ValueError(
                "time_formats is for CSV text; a Parquet file stores times as times. Fix: "
                "remove time_formats from this source."
            )
        wrong = [c for c in self.time_formats if self.columns.get(c) != "timestamp"]
        if wrong:
            raise ValueError(
                f"time_formats names {wrong}, which are not declared 'timestamp' columns. "
                "Fix: declare them under columns as timestamp, or remove the format."
            )
        return self
