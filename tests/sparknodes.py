"""A Spark standalone cluster on 127.0.0.1: a master and N workers started with
``spark-class`` (the pip package has no start scripts), each its own process group,
stopped by the PIDs started here."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.raynodes import free_ports, stop_groups


@dataclass
class _Started:
    """Processes started here (each its own group) and their temp folder."""

    root: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list, kw_only=True)

    def stop(self) -> None:
        stop_groups(self.procs)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class SparkNodes(_Started):
    master_url: str
    ui: str

    def alive_workers(self) -> int:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            d = httpx.get(f"{self.ui}/json/", timeout=3).json()
            return sum(1 for w in d.get("workers", []) if w.get("state") == "ALIVE")
        return 0


def start_spark(workers: int = 2, cores: int = 1, memory: str = "2g") -> SparkNodes:
    import pyspark

    home = Path(pyspark.__file__).parent
    root = Path(tempfile.mkdtemp(prefix="isp-", dir="/tmp"))
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_WORKER_DIR": str(root / "work"),
        "SPARK_LOG_DIR": str(root),
    }
    port, ui, *wports = free_ports(2 + 2 * workers)
    c = SparkNodes(root, f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}")
    cls = str(home / "bin" / "spark-class")

    def run(name: str, args: list[str]) -> None:
        log = open(root / f"{name}.log", "wb")  # noqa: SIM115 (kept open for the process)
        c.procs.append(
            subprocess.Popen(
                [cls, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        )

    try:
        run(
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(ui),
            ],
        )
        for i in range(workers):
            run(
                f"worker{i + 1}",
                [
                    "org.apache.spark.deploy.worker.Worker",
                    c.master_url,
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    str(cores),
                    "--memory",
                    memory,
                    "--port",
                    str(wports[2 * i]),
                    "--webui-port",
                    str(wports[2 * i + 1]),
                ],
            )
        deadline = time.monotonic() + 120
        while c.alive_workers() < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in c.procs):
                logs = "\n".join(f.read_text()[-1500:] for f in root.glob("*.log"))
                raise RuntimeError(f"Spark standalone did not start:\n{logs}")
            time.sleep(1)
    except BaseException:
        c.stop()
        raise
    return c


@dataclass
class ConnectServer(_Started):
    url: str
    token: str


def start_connect(master: str, token: str) -> ConnectServer:
    """A Spark Connect server (``spark-submit`` of ``SparkConnectServer``, an application of
    ``master``) on 127.0.0.1 with token authentication; the token travels in the environment,
    never on the command line. Clients reach it as ``sc://localhost:PORT``: a token without TLS
    is accepted by pyspark's client only for the host ``localhost`` (gRPC local credentials)."""
    import pyspark

    home = Path(pyspark.__file__).parent
    root = Path(tempfile.mkdtemp(prefix="isc-", dir="/tmp"))
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(root),
        "SPARK_CONNECT_AUTHENTICATE_TOKEN": token,
    }
    s = ConnectServer(root, f"sc://localhost:{port}", token)
    log = open(root / "connect.log", "wb")  # noqa: SIM115 (kept open for the process)
    s.procs.append(
        subprocess.Popen(
            [
                str(home / "bin" / "spark-submit"),
                "--class",
                "org.apache.spark.sql.connect.service.SparkConnectServer",
                "--name",
                "insight-connect",
                "--master",
                master,
                "--conf",
                "spark.driver.host=127.0.0.1",
                "--conf",
                "spark.driver.bindAddress=127.0.0.1",
                "--conf",
                "spark.ui.enabled=false",
                "--conf",
                f"spark.local.dir={root / 'local'}",
                "--conf",
                "spark.connect.grpc.binding.address=127.0.0.1",
                "--conf",
                f"spark.connect.grpc.binding.port={port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    )
    try:
        deadline = time.monotonic() + 120
        while "Spark Connect server started" not in (root / "connect.log").read_text(
            errors="replace"
        ):
            if time.monotonic() > deadline or s.procs[0].poll() is not None:
                raise RuntimeError(
                    "Spark Connect did not start:\n" + (root / "connect.log").read_text()[-3000:]
                )
            time.sleep(0.5)
    except BaseException:
        s.stop()
        raise
    return s
