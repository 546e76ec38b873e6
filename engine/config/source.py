"""One source of the project file (``sources.NAME``): where a table is, its columns and
their types, and for a CSV file how it is written (separator, decimal mark, encoding, time
formats). Part of :class:`engine.config.project.ProjectConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from engine.config.base import IDENT, Model
from engine.config.ingest import CheckConfig, DatabaseConfig, IngestConfig

RAW_STORE = "{workspace}/raw/"


class SourceConfig(Model):
    """A table the project reads: a CSV or Parquet file (or folder of Parquet files), or a
    database table or query (kind postgres or jdbc), ingested into the workspace's raw store
    by ``insight ingest`` and read from there."""

    kind: Literal["file", "postgres", "jdbc"] = Field(
        default="file",
        description="file: path is a CSV or Parquet file; postgres, jdbc: database names the "
        "table, path is the raw store `insight ingest` lands it in (default "
        "{workspace}/raw/NAME).",
    )
    path: str
    database: DatabaseConfig | None = None
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    checks: list[CheckConfig] = Field(
        default_factory=list, description="Expectations run on each ingested batch."
    )
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

    @property
    def is_database(self) -> bool:
        return self.kind != "file"

    @model_validator(mode="after")
    def _database(self) -> SourceConfig:
        if self.is_database:
            if self.database is None:
                raise ValueError(
                    f"a {self.kind} source needs database: {{url: ..., table: ...}} (or query:)."
                )
            if self.format != "parquet":
                raise ValueError(
                    "a database source is landed as Parquet: remove format (and CSV options)."
                )
            url = self.database.url
            if self.kind == "postgres" and not url.startswith("postgresql://"):
                raise ValueError(
                    f"a postgres source's database.url begins postgresql:// (seen {url[:30]!r})."
                    " Fix: write postgresql://HOST:PORT/DB, or use kind: jdbc."
                )
            if self.kind == "jdbc" and not (url.startswith("jdbc:") and self.database.driver):
                raise ValueError(
                    "a jdbc source's database.url begins jdbc: and names its driver class "
                    "(database.driver) and jar (database.jar)."
                )
        elif self.database is not None or self.checks:
            raise ValueError(
                "database and checks are for database sources: set kind: postgres or jdbc, or "
                "remove them."
            )
        return self

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


def complete_sources(data: object, base_dir: str = ".") -> object:
    """A project file's ``sources`` with what each omits filled in: a database source's
    path (its raw store, {workspace}/raw/NAME) and format; a file's format from its path
    (the extension, else the file's first bytes). Every task's loader calls this."""
    if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
        return data
    sources = {}
    for name, src in data["sources"].items():
        if isinstance(src, dict) and src.get("kind") in ("postgres", "jdbc"):
            src = {"path": RAW_STORE + name, **src}
            src.setdefault("format", "parquet")
        elif isinstance(src, dict) and "format" not in src and isinstance(src.get("path"), str):
            fmt = infer_format(src["path"], data.get("base_dir", base_dir))
            src = {**src, "format": fmt} if fmt else src
        sources[name] = src
    return {**data, "sources": sources}


CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


def infer_format(path: str, base_dir: str = ".") -> str | None:
    """'csv' or 'parquet' for a source path by its extension, else by its first bytes when
    the file can be opened here; None when neither tells (the default, Parquet, applies)."""
    suffix = Path(path).suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if "{workspace}" in path:
        return None
    p = Path(path) if Path(path).is_absolute() else Path(base_dir) / path
    if p.is_dir():
        return "parquet"
    try:
        with p.open("rb") as fh:
            head = fh.read(4)
    except OSError:
        return None
    return "parquet" if head == b"PAR1" else "csv"
