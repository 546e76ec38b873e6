"""Reading a database source: credentials from the environment, the relation a run pulls
(the table or query, above the watermark), its schema checked against the project file
before anything is written, and two readers that give the same rows and types:

- Spark's JDBC reader, partitioned: the partition column's bounds are read first, and
  ``numPartitions`` (also the number of connections) is capped by ``max_partitions``;
- ADBC (PostgreSQL's libpq driver, Arrow batches over one connection), for one machine.

Both return a Spark DataFrame with the landing types (integers as bigint, numeric as
double, text, booleans, timestamps with time zone as Spark timestamps (UTC instants) and
without as timestamp_ntz), so the checks and the writer after them are one code path.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from engine.config.source import SourceConfig
from engine.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

DEBIAN_JAR = "/usr/share/java/postgresql.jar"
PG_DRIVER = "org.postgresql.Driver"


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    def __repr__(self) -> str:  # never the password, in a log or a traceback
        return f"Credentials(user={self.user!r}, password=***)"


def credentials(name: str, src: SourceConfig) -> Credentials:
    """The user and password from the environment variables the source names."""
    db = _db(src)
    missing = [v for v in (db.user_env, db.password_env) if not os.environ.get(v)]
    if missing:
        raise ConfigError(
            f"source '{name}': {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: the database's user name and "
            f"password are read from the environment, never from the project file. Fix: "
            f"export {missing[0]}=... (or name other variables in sources.{name}.database."
            "user_env / password_env)."
        )
    return Credentials(os.environ[db.user_env], os.environ[db.password_env])


def _db(src: SourceConfig) -> Any:
    if src.database is None:
        raise ConfigError("not a database source")
    return src.database


def jdbc_url(src: SourceConfig) -> str:
    url = str(_db(src).url)
    return url if url.startswith("jdbc:") else "jdbc:" + url


def adbc_uri(src: SourceConfig, cred: Credentials) -> str:
    url = str(_db(src).url)
    if url.startswith("jdbc:postgresql://"):
        url = url[len("jdbc:") :]
    parts = urlsplit(url)
    netloc = f"{quote(cred.user, safe='')}:{quote(cred.password, safe='')}@{parts.netloc}"
    return parts._replace(netloc=netloc).geturl()


def base_relation(src: SourceConfig) -> str:
    """The source's rows as SQL: the table, or the query as a subquery."""
    db = _db(src)
    if db.table is not None:
        return str(db.table)
    q = str(db.query).strip().rstrip(";")
    return f"({q}) AS insight_src"


@dataclass(frozen=True)
class Watermark:
    """A run's lower bound on the watermark column: rows with ``column >= value`` are
    pulled. ``kind`` is how the value is written in SQL."""

    column: str
    value: str
    kind: str  # "timestamp" | "timestamptz" | "number"

    def sql(self) -> str:
        col = _quote_ident(self.column)
        if self.kind == "number":
            return f"{col} >= {float(self.value)!r}"
        if not re.match(r"^[0-9: .+-]+$", self.value):
            raise DataError(f"watermark value {self.value!r} is not a time")
        t = "TIMESTAMPTZ" if self.kind == "timestamptz" else "TIMESTAMP"
        zone = "+00" if self.kind == "timestamptz" else ""
        return f"{col} >= {t} '{self.value}{zone}'"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def pulled_sql(src: SourceConfig, since: Watermark | None) -> str:
    """The SELECT a run pulls: the whole relation, or what is at or above the watermark."""
    where = f" WHERE {since.sql()}" if since is not None else ""
    return f"SELECT * FROM {base_relation(src)}{where}"


def explain_db_error(name: str, src: SourceConfig, exc: BaseException) -> DataError | ConfigError:
    """A database error as one line with what to do: wrong credentials name the variables,
    a server that is not there names the URL, anything else the database's own message."""
    db = _db(src)
    text = _all_text(exc)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    for ln in text.splitlines():  # Spark wraps the driver's exception: take the driver's line
        if "PSQLException" in ln or "SQLException" in ln or "IOError" in ln:
            first = ln.split("Exception:", 1)[-1].strip() or first
            break
    low = text.lower()
    where = f"source '{name}' ({db.url})"
    if "password authentication failed" in low or "authentication failed" in low:
        return ConfigError(
            f"{where}: the database refused the user name or password. Fix: set "
            f"{db.user_env} and {db.password_env} to a login the database accepts."
        )
    refused = (
        "connection refused",
        "connection to server",
        "could not connect",
        "terminating connection",
        "server closed the connection",
        "connection has been closed",
        "an i/o error occurred",
        "eof",
        "connection attempt failed",
    )
    if any(r in low for r in refused):
        return DataError(
            f"{where}: the database could not be reached or went away during the read "
            f"({first[:200]}). Nothing was landed and the watermark is unchanged. Fix: check "
            "that the server is up and reachable, then run `insight ingest` again."
        )
    if "does not exist" in low:
        return DataError(
            f"{where}: {first[:300]}. Fix: correct sources.{name}.database (table or query)."
        )
    return DataError(f"{where}: the read failed: {first[:300]}")


def _all_text(exc: BaseException) -> str:
    """An error's message with its causes': Spark wraps the driver's exception (the line
    that says what happened, e.g. 'password authentication failed') in its own."""
    parts, seen = [], 0
    e: BaseException | None = exc
    while e is not None and seen < 8:
        parts.append(str(e))
        parts.append(str(getattr(e, "_stackTrace", "") or ""))
        e = getattr(e, "_cause", None) or e.__cause__
        seen += 1
    return "\n".join(parts)


# ---------------------------------------------------------------- ADBC (one process)


def adbc_connect(name: str, src: SourceConfig) -> Any:
    import adbc_driver_postgresql.dbapi as adbc

    if src.kind != "postgres":
        raise ConfigError(
            f"source '{name}': the ADBC reader reads PostgreSQL only. Fix: set "
            f"sources.{name}.database.reader: spark."
        )
    cred = credentials(name, src)
    try:
        return adbc.connect(adbc_uri(src, cred))
    except Exception as exc:  # the driver's errors are its own classes
        raise explain_db_error(name, src, exc) from None


def read_arrow(name: str, src: SourceConfig, sql: str) -> pa.Table:
    """The rows of ``sql`` over one ADBC connection, as an Arrow table (libpq's COPY in
    binary, decoded to Arrow by the driver)."""
    conn = adbc_connect(name, src)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table()
    except Exception as exc:
        raise explain_db_error(name, src, exc) from None
    finally:
        with contextlib.suppress(Exception):  # a server that went away takes no goodbye
            conn.close()


def normalize_arrow(table: pa.Table) -> pa.Table:
    """The landing types of an ADBC table: PostgreSQL's numeric (an opaque string
    extension) and floats as float64, every integer as int64; the rest as read."""
    import pyarrow as pa

    cols, fields = [], []
    for f, col in zip(table.schema, table.columns, strict=True):
        t = f.type
        if isinstance(t, pa.BaseExtensionType):
            col = pa.chunked_array([c.storage for c in col.chunks], type=t.storage_type).cast(
                pa.float64() if "numeric" in str(t) else t.storage_type
            )
        elif pa.types.is_integer(t):
            col = col.cast(pa.int64())
        elif pa.types.is_floating(t) or pa.types.is_decimal(t):
            col = col.cast(pa.float64())
        elif pa.types.is_timestamp(t) and t.tz is not None:
            col = col.cast(pa.timestamp("us", tz="UTC"))
        elif pa.types.is_timestamp(t):
            col = col.cast(pa.timestamp("us"))
        cols.append(col)
        fields.append(pa.field(f.name, col.type))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def adbc_frame(spark: SparkSession, name: str, src: SourceConfig, sql: str) -> DataFrame:
    table = normalize_arrow(read_arrow(name, src, sql))
    return spark.createDataFrame(table)


# ---------------------------------------------------------------- Spark JDBC


def jdbc_jar(src: SourceConfig) -> str:
    db = _db(src)
    jar = db.jar or (DEBIAN_JAR if src.kind == "postgres" else None)
    if jar is None or not os.path.isfile(jar):
        raise ConfigError(
            f"the JDBC driver jar {jar!r} is not there. Fix: "
            + (
                "apt-get install libpostgresql-jdbc-java (or `make jdbc`)"
                if src.kind == "postgres"
                else "set database.jar to the driver's jar file"
            )
            + "."
        )
    return jar


def _reader(spark: SparkSession, name: str, src: SourceConfig) -> Any:
    db = _db(src)
    cred = credentials(name, src)
    return (
        spark.read.format("jdbc")
        .option("url", jdbc_url(src))
        .option("driver", db.driver or PG_DRIVER)
        .option("user", cred.user)
        .option("password", cred.password)
        .option("fetchsize", str(db.fetch_size))
        .option("preferTimestampNTZ", "true")
    )


@dataclass(frozen=True)
class Partitioning:
    column: str
    lower: str
    upper: str
    partitions: int


def plan_partitions(
    spark: SparkSession, name: str, src: SourceConfig, sql: str, column: str | None
) -> Partitioning | None:
    """Bounds of the partition column over the rows the run pulls (read from the database
    first, one small query), and how many reads: one per 50,000 rows, at most
    ``max_partitions``."""
    if column is None:
        return None
    c = _quote_ident(column)
    bounds = (
        _reader(spark, name, src)
        .option(
            "query",
            f"SELECT CAST(min({c}) AS TEXT) AS lo, CAST(max({c}) AS TEXT) AS hi, count(*) AS n "
            f"FROM ({sql}) AS pulled",
        )
        .load()
        .first()
    )
    if bounds is None or bounds["lo"] is None:
        return None
    n = int(bounds["n"])
    parts = max(1, min(_db(src).max_partitions, -(-n // 50_000)))
    return Partitioning(column, str(bounds["lo"]), str(bounds["hi"]), parts)


def jdbc_frame(
    spark: SparkSession, name: str, src: SourceConfig, sql: str, partition_column: str | None
) -> tuple[DataFrame, Partitioning | None]:
    """The rows of ``sql`` through Spark's JDBC reader, split on the partition column."""
    part = plan_partitions(spark, name, src, sql, partition_column)
    r = _reader(spark, name, src).option("dbtable", f"({sql}) AS pulled")
    if part is not None and part.partitions > 1:
        r = (
            r.option("partitionColumn", part.column)
            .option("lowerBound", part.lower)
            .option("upperBound", part.upper)
            .option("numPartitions", str(part.partitions))
        )
    df = r.load()
    return _land_types(df), part


def _land_types(df: DataFrame) -> DataFrame:
    """Spark's JDBC types as the landing types: every integer bigint, decimals double."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    out = []
    for f in df.schema.fields:
        c = F.col(f"`{f.name}`")
        if isinstance(f.dataType, T.IntegerType | T.ShortType | T.ByteType):
            c = c.cast("bigint")
        elif isinstance(f.dataType, T.DecimalType | T.FloatType):
            c = c.cast("double")
        out.append(c.alias(f.name))
    return df.select(*out)


def probe_columns(spark: SparkSession | None, name: str, src: SourceConfig) -> dict[str, str]:
    """The relation's columns and their landing types, without reading its rows."""
    sql = f"SELECT * FROM {base_relation(src)} LIMIT 0"
    if spark is None:
        t = normalize_arrow(read_arrow(name, src, sql))
        return {f.name: str(f.type) for f in t.schema}
    df = _land_types(_reader(spark, name, src).option("dbtable", f"({sql}) AS probe").load())
    return {f.name: f.dataType.simpleString() for f in df.schema.fields}
