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

    from engine.config import ProjectConfig
    from engine.workspace import Workspace


def spark_env() -> None:
    """Environment every Spark start needs: workers use this interpreter, loopback only."""
    import pyspark

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("SPARK_HOME", str(Path(pyspark.__file__).parent))


def get_spark(
    master: str = "local[2]",
    *,
    driver_memory: str = "2g",
    shuffle_partitions: int = 4,
    local_dir: Path | None = None,
    app_name: str = "insight-features",
) -> SparkSession:
    """Start (or return) the process's Spark session.

    Progress bars stay on when stderr is a terminal (Spark's own console progress).
    """
    spark_env()
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.driver.memory", driver_memory)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", str(sys.stderr.isatty()).lower())
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.timestampType", "TIMESTAMP_NTZ")
        .config("spark.sql.parquet.inferTimestampNTZ.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    if local_dir is not None:
        local_dir.mkdir(parents=True, exist_ok=True)
        builder = builder.config("spark.local.dir", str(local_dir))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@contextlib.contextmanager
def spark_session(cfg: ProjectConfig, ws: Workspace) -> Iterator[SparkSession]:
    """A Spark session for this project that is stopped (JVM included) on exit."""
    spark = get_spark(
        cfg.features.spark_master,
        driver_memory=cfg.features.spark_driver_memory,
        shuffle_partitions=cfg.features.shuffle_partitions,
        local_dir=ws.scratch / "spark",
    )
    try:
        yield spark
    finally:
        spark.stop()
        # Stop the py4j gateway too, so no JVM outlives the command.
        from pyspark import SparkContext

        gw = getattr(SparkContext, "_gateway", None)
        if gw is not None:
            with contextlib.suppress(Exception):
                gw.shutdown()
            SparkContext._gateway = None
            SparkContext._jvm = None
