"""A shared MLflow for the cluster tests: a PostgreSQL instance of our own (Debian's
binaries; initdb in a temp dir, a free port on 127.0.0.1, password auth) as the backend
store, and ``mlflow server`` on 127.0.0.1 with basic-auth on and an artifact root every
node reaches (proxied through the server). Both are stopped by the PIDs started here."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.pgserver import start_postgres
from tests.raynodes import free_ports, stop_groups

BIN = Path(sys.executable).parent


@dataclass
class SharedMLflow:
    url: str
    username: str
    password: str
    db_url: str
    root: Path
    procs: list[subprocess.Popen[bytes]]

    @property
    def env(self) -> dict[str, str]:
        return {
            "MLFLOW_TRACKING_USERNAME": self.username,
            "MLFLOW_TRACKING_PASSWORD": self.password,
        }

    def stop(self) -> None:
        stop_groups(self.procs)
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


def start_shared_mlflow() -> SharedMLflow:
    pg = start_postgres()
    root = pg.root
    (ml_port,) = free_ports(1)
    procs: list[subprocess.Popen[bytes]] = pg.procs
    db = SharedMLflow("", "admin", secrets.token_hex(12), "", root, procs)
    try:
        pg.createdb("mlflow")
        pw, pg_port = pg.password, pg.port
        db.db_url = f"postgresql+psycopg://insight:{pw}@127.0.0.1:{pg_port}/mlflow"
        auth = root / "basic_auth.ini"
        auth.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
            f"admin_username = {db.username}\n"
            f"admin_password = {db.password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        mlog = open(root / "mlflow.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [
                    str(BIN / "mlflow"),
                    "server",
                    "--backend-store-uri",
                    db.db_url,
                    "--artifacts-destination",
                    (root / "artifacts").as_uri(),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ml_port),
                    "--workers",
                    "1",
                    "--app-name",
                    "basic-auth",
                ],
                stdout=mlog,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "MLFLOW_AUTH_CONFIG_PATH": str(auth),
                    "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
                },
                start_new_session=True,
            )
        )
        db.url = f"http://127.0.0.1:{ml_port}"
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{db.url}/health", timeout=2).status_code == 200:
                    break
            if procs[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((root / "mlflow.log").read_text()[-3000:])
            time.sleep(1)
    except BaseException:
        db.stop()
        raise
    return db
