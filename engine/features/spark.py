"""One local Spark session per process, configured for this machine (see STACK.md)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from engine.config.project import ProjectConfig
    from engine.workspace import Workspace


def spark_env() -> None:
    """Environment every Spark start needs: workers use this interpreter, loopback only."""
    import pyspark

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("SPARK_HOME", str(Path(pyspark.__file__).parent))
    # PySpark logs every analysis error with the JVM's whole stack before raising it; the
    # engine turns the error into one line with a fix (stages.features), so that log is
    # noise on a user's screen.
    import logging

    from pyspark.logger import PySparkLogger

    for name in ("DataFrameQueryContextLogger", "SQLQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


def get_spark(
    master: str = "local[2]",
    *,
    driver_memory: str = "2g",
    shuffle_partitions: int = 4,
    local_dir: Path | None = None,
    app_name: str = "insight-features",
    jars: list[str] | None = None,
) -> SparkSession:
    """Start (or return) the process's Spark session.

    Progress bars stay on when stderr is a terminal (Spark's own console progress). The
    JDBC drivers the database sources read with are on its class path: PostgreSQL's
    (Debian's libpostgresql-jdbc-java) when installed, and the ``jars`` given (a driver's
    jar must be there when the JVM starts; Spark cannot add one to a running driver).
    """
    spark_env()
    from pyspark.sql import SparkSession

    if master.startswith("sc://"):
        return _connect(master, shuffle_partitions=shuffle_partitions, app_name=app_name)
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.driver.memory", driver_memory)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", str(sys.stderr.isatty()).lower())
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    )
    for k, v in _SQL_CONF.items():
        builder = builder.config(k, v)
    class_path = [j for j in [*(jars or []), _DEBIAN_JDBC] if Path(j).is_file()]
    if class_path:
        builder = builder.config("spark.jars", ",".join(dict.fromkeys(class_path)))
    if local_dir is not None:
        local_dir.mkdir(parents=True, exist_ok=True)
        builder = builder.config("spark.local.dir", str(local_dir))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


_DEBIAN_JDBC = "/usr/share/java/postgresql.jar"

# Session settings the feature build relies on; on Spark Connect they are set per session.
_SQL_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # pandas writes nanosecond timestamps, which Spark cannot read as times: they are read
    # as longs and turned into times by engine.data.sources (to microseconds).
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    # CSV files in any encoding Java knows (windows-1252, what older spreadsheets save): Spark
    # 4 otherwise accepts only the UTF and ISO-8859-1 families, and ISO-8859-1 has no '€'.
    "spark.sql.legacy.javaCharsets": "true",
}


def _connect(url: str, *, shuffle_partitions: int, app_name: str) -> SparkSession:
    """A Spark Connect session (``sc://HOST:PORT``). The token comes from the environment
    (``SPARK_CONNECT_AUTHENTICATE_TOKEN``), never from the project file. The server reads and
    writes the snapshot paths, so the storage must be one it shares with this machine."""
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession

    from engine.errors import ConfigError

    try:
        spark = SparkSession.builder.remote(url).appName(app_name).getOrCreate()
        for k, v in {**_SQL_CONF, "spark.sql.shuffle.partitions": str(shuffle_partitions)}.items():
            spark.conf.set(k, v)
    except PySparkException as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(
            f"spark: cannot open a Spark Connect session at {url!r}: {msg[:300]}. Fix: start "
            "the server (`start-connect-server.sh`), check the host and port, and set "
            "SPARK_CONNECT_AUTHENTICATE_TOKEN to the server's token (a token without TLS needs "
            "the host `localhost`)."
        ) from None
    return spark


def is_connect(spark: SparkSession) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


@contextlib.contextmanager
def spark_session(cfg: ProjectConfig, ws: Workspace) -> Iterator[SparkSession]:
    """A Spark session for this project that is stopped (JVM included) on exit."""
    with master_session(
        cfg.features.spark_master,
        ws,
        driver_memory=cfg.features.spark_driver_memory,
        shuffle_partitions=cfg.features.shuffle_partitions,
        jars=[s.database.jar for s in cfg.sources.values() if s.database and s.database.jar],
    ) as spark:
        yield spark


@contextlib.contextmanager
def master_session(
    master: str,
    ws: Workspace,
    *,
    driver_memory: str = "2g",
    shuffle_partitions: int = 4,
    jars: list[str] | None = None,
) -> Iterator[SparkSession]:
    """A Spark session on ``master`` that is stopped (JVM included) on exit; but a
    session this process already has (a notebook's, a caller's) is used as it is and left
    running: stopping it under its owner broke every later use of it."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    spark = get_spark(
        master,
        driver_memory=driver_memory,
        shuffle_partitions=shuffle_partitions,
        local_dir=ws.scratch / "spark",
        jars=jars,
    )
    try:
        yield spark
    finally:
        spark.stop()  # on Spark Connect: releases the server-side session only
        if not is_connect(spark):
            _stop_gateway()


def _stop_gateway() -> None:
    """Stop the py4j gateway too, so no JVM outlives the command."""
    from pyspark import SparkContext

    gw = getattr(SparkContext, "_gateway", None)
    if gw is not None:
        with contextlib.suppress(Exception):
            gw.shutdown()
        SparkContext._gateway = None
        SparkContext._jvm = None
