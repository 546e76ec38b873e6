"""Database sources, incremental ingestion, landing checks and schedules in the project file.

A source of kind ``postgres`` or ``jdbc`` names a table or a query (``database:``); ``insight
ingest`` pulls the rows changed since its last run (``ingest:``), runs the source's
``checks`` on them, lands the good rows in the workspace's raw store and records the run in
the ledger. Every reader of the project then reads the raw store (Parquet), so the rest of
the engine sees a database source as it sees a folder of Parquet files.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from engine.config.base import Model
from engine.config.monitor import seconds

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class DatabaseConfig(Model):
    """Where a database source's rows are: a URL without credentials, and a table or a query.
    The user name and password are read from the environment variables named here, at read
    time: never from the file, and never written to a log, the ledger or MLflow."""

    url: str = Field(
        description="postgresql://HOST:PORT/DB (kind postgres) or jdbc:SUBPROTOCOL://... "
        "(kind jdbc). No user or password in it."
    )
    table: str | None = Field(default=None, description="schema.table or table.")
    query: str | None = Field(default=None, description="A SELECT whose rows are the source.")
    user_env: str = Field(default="PGUSER", pattern=ENV_NAME)
    password_env: str = Field(default="PGPASSWORD", pattern=ENV_NAME)
    driver: str | None = Field(
        default=None,
        description="kind jdbc: the driver's class (e.g. org.postgresql.Driver); postgres: "
        "org.postgresql.Driver.",
    )
    jar: str | None = Field(
        default=None,
        description="The JDBC driver's jar. Omitted for postgres: Debian's "
        "libpostgresql-jdbc-java (/usr/share/java/postgresql.jar).",
    )
    reader: Literal["auto", "spark", "adbc"] = Field(
        default="auto",
        description="spark: Spark's JDBC reader, partitioned; adbc: one columnar (Arrow) "
        "connection, for one machine (postgres only); auto: adbc for postgres on a local "
        "Spark master, else spark.",
    )
    partition_column: str | None = Field(
        default=None,
        description="A numeric or time column Spark splits the read on (its bounds are "
        "read from the database first). Omitted: the first integer key column, if any.",
    )
    max_partitions: int = Field(
        default=8,
        ge=1,
        le=256,
        description="At most this many parallel reads, so at most this many connections.",
    )
    fetch_size: int = Field(default=10_000, ge=1)

    @field_validator("url")
    @classmethod
    def _no_secrets(cls, v: str) -> str:
        if re.match(r"^[a-z0-9+:]+://[^/@]*:[^/@]*@", v) or re.search(r"password=", v, re.I):
            raise ValueError(
                "database.url holds a password. Fix: remove it from the URL and set it in the "
                "environment variable named by database.password_env (default PGPASSWORD)."
            )
        if not (v.startswith("postgresql://") or v.startswith("jdbc:")):
            raise ValueError(
                f"database.url {v.split('?')[0]!r} is neither postgresql://HOST:PORT/DB nor "
                "jdbc:...: Fix: write the database's URL without credentials."
            )
        return v

    @model_validator(mode="after")
    def _one_of(self) -> DatabaseConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("database: set exactly one of table or query.")
        if self.table is not None and not re.match(
            r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)?$", self.table
        ):
            raise ValueError(
                f"database.table {self.table!r} is not a table name (schema.table or table). "
                "Fix: use query: for anything else."
            )
        return self


class IngestConfig(Model):
    """How ``insight ingest`` pulls a database source incrementally."""

    watermark: str | None = Field(
        default=None,
        description="A column that grows when a row is added or changed (updated_at, an id). "
        "Omitted: every run re-reads the whole table (rows already landed are not landed "
        "again).",
    )
    lookback: str = Field(
        default="0s",
        description="Re-read rows this far behind the last watermark, for rows that commit "
        "late (e.g. '1h'). A time watermark only.",
    )
    key: list[str] = Field(
        default_factory=list,
        description="Columns that identify a row: a changed row replaces the earlier version "
        "with that key when the source is read. Omitted: the entity's key, if the source "
        "has one; else rows are only ever added.",
    )

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, v: str) -> str:
        seconds(v)
        return v


CheckKind = Literal["not_null", "unique", "in_set", "regex", "range", "row_count", "freshness"]
ROW_CHECKS = ("not_null", "unique", "in_set", "regex", "range")


class CheckConfig(Model):
    """One expectation run on the rows a run pulls, before they land. A row that fails a row
    check goes to the quarantine (with the check and the value); the good rows land. A
    ``blocking`` check that fails stops the landing: nothing lands, the watermark stays."""

    check: CheckKind
    column: str | None = None
    values: list[str | int | float | bool] | None = Field(
        default=None, description="in_set: the allowed values."
    )
    values_from: str | None = Field(
        default=None,
        description="in_set: a CSV or Parquet file whose first column holds the allowed "
        "values (for sets too large for the file; relative to the project file).",
    )
    pattern: str | None = Field(
        default=None, description="regex: the value must match from its start (re.match)."
    )
    min: float | None = None
    max: float | None = None
    min_ratio: float | None = Field(
        default=None, ge=0, description="row_count: rows read vs the median of recent runs."
    )
    max_ratio: float | None = Field(default=None, gt=0)
    runs: int = Field(default=5, ge=1, description="row_count: how many recent runs.")
    max_age: str | None = Field(
        default=None, description="freshness: the newest watermark is at most this old."
    )
    blocking: bool = False

    @model_validator(mode="after")
    def _fields(self) -> CheckConfig:
        need: dict[str, list[str]] = {
            "not_null": ["column"],
            "unique": ["column"],
            "in_set": ["column"],
            "regex": ["column", "pattern"],
            "range": ["column"],
            "row_count": [],
            "freshness": ["max_age"],
        }
        missing = [f for f in need[self.check] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"check {self.check}: set {', '.join(missing)}.")
        if self.check == "in_set" and (self.values is None) == (self.values_from is None):
            raise ValueError("check in_set: set exactly one of values or values_from.")
        if self.check == "range" and self.min is None and self.max is None:
            raise ValueError("check range: set min, max or both.")
        if self.check == "row_count" and self.min_ratio is None and self.max_ratio is None:
            raise ValueError("check row_count: set min_ratio, max_ratio or both.")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(
                    f"check regex: pattern {self.pattern!r} is not valid: {e}."
                ) from None
        if self.max_age is not None:
            seconds(self.max_age)
        return self

    @property
    def name(self) -> str:
        return f"{self.check}({self.column})" if self.column else self.check


class JobSchedule(Model):
    """When a job runs: every so often, and/or after another job that changed something."""

    every: str | None = Field(default=None, description="e.g. '1h', '1d'.")
    after: Literal["ingest", "features"] | None = Field(
        default=None,
        description="Run after that job, when it changed something (new rows landed, a new "
        "snapshot).",
    )

    @field_validator("every")
    @classmethod
    def _every(cls, v: str | None) -> str | None:
        if v is not None and seconds(v) <= 0:
            raise ValueError("every: a positive duration, e.g. '1h'.")
        return v

    @model_validator(mode="after")
    def _some(self) -> JobSchedule:
        if self.every is None and self.after is None:
            raise ValueError("a schedule sets every, after or both.")
        return self


class ScheduleConfig(Model):
    """The project's jobs and their cadence: ``insight schedule run`` keeps them, ``insight
    schedule export`` writes the same as an Airflow DAG and a cron table."""

    ingest: JobSchedule | None = None
    features: JobSchedule | None = None
    train: JobSchedule | None = None
    backoff_s: float = Field(
        default=30,
        gt=0,
        description="First wait after a failed run; doubles, up to the job's period.",
    )

    @model_validator(mode="after")
    def _order(self) -> ScheduleConfig:
        if self.features is not None and self.features.after == "features":
            raise ValueError("schedule.features cannot run after itself.")
        if self.ingest is not None and self.ingest.after is not None:
            raise ValueError("schedule.ingest runs on its own cadence (every), not after a job.")
        return self
