"""Where ``insight init --from`` reads a table: a file, or a PostgreSQL table named by a URL
(``postgresql://HOST:PORT/DB?table=NAME``); and how the project file names it back (a
path and format, or ``kind: postgres`` with ``database:``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engine.errors import ConfigError


@dataclass(frozen=True)
class DbTable:
    """``--from postgresql://HOST:PORT/DB?table=NAME``: a table in PostgreSQL, read for
    inference over ADBC (credentials from PGUSER / PGPASSWORD), written to the project file
    as a source of kind postgres (the URL without credentials)."""

    url: str
    table: str

    @property
    def name(self) -> str:
        return self.table

    @property
    def stem(self) -> str:
        return self.table.split(".")[-1]

    @property
    def parent(self) -> Path:
        return Path.cwd()

    def resolve(self) -> DbTable:
        return self

    def __str__(self) -> str:
        return f"{self.url}?table={self.table}"


INFER_ROWS = 500_000  # rows of a database table read to infer the project


def parse_from(text: str) -> Path | DbTable:
    """What ``--from`` names: a file, or a database table (postgresql://...?table=NAME)."""
    if not text.startswith(("postgresql://", "postgres://")):
        return Path(text)
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(text.replace("postgres://", "postgresql://", 1))
    if "@" in parts.netloc:
        raise ConfigError(
            "--from: the URL holds a user name or password. Fix: remove them from the URL "
            "and set PGUSER and PGPASSWORD in the environment (they never go into the file)."
        )
    table = (parse_qs(parts.query).get("table") or [""])[0]
    if not table or not re.match(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$", table):
        raise ConfigError(
            f"--from {text.split('?')[0]}: name the table: ...?table=NAME (or SCHEMA.NAME)."
        )
    return DbTable(parts._replace(query="", fragment="").geturl(), table)


def read_db(loc: DbTable) -> pd.DataFrame:
    from engine.config.source import SourceConfig
    from engine.ingest import db

    src = SourceConfig.model_validate(
        {"kind": "postgres", "path": "-", "database": {"url": loc.url, "table": loc.table}}
    )
    table = db.read_arrow(loc.table, src, f"SELECT * FROM {loc.table} LIMIT {INFER_ROWS}")
    return db.normalize_arrow(table).to_pandas()


def location_lines(loc: Path | DbTable, fmt: str, out_dir: Path) -> list[str]:
    """A source's where-lines in the project file: a file's path (relative to the file)
    and format, or a database table's kind and ``database:``."""
    import json
    import os

    if isinstance(loc, DbTable):
        return [
            "    kind: postgres   # rows pulled by `insight ingest` (PGUSER / PGPASSWORD)",
            f"    database: {{url: {json.dumps(loc.url)}, table: {loc.table}}}",
        ]
    rel = os.path.relpath(loc, out_dir)
    plain = re.match(r"^[\w./-]+$", rel) and not rel.startswith("-")
    return [f"    path: {rel if plain else json.dumps(rel)}", f"    format: {fmt}"]
