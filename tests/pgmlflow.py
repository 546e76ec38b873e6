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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.raynodes import free_ports, stop_groups

BIN = Path(sys.executable).parent


def _pg_bin() -> Path:
    roots = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not roots:
        raise RuntimeError(
            "PostgreSQL's binaries are not installed (/usr/lib/postgresql/*/bin). Fix: "
            "apt-get install postgresql"
        )
    return roots[-1].parent


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


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
    pg = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="imlf-", dir="/tmp"))
    os.chmod(root, 0o755)
    data, sock = root / "pgdata", root / "sock"
    data.mkdir()
    sock.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["chown", "postgres", str(data), str(sock)], check=True)
    pw = secrets.token_hex(12)
    pwfile = root / "pw"
    pwfile.write_text(pw)
    os.chmod(pwfile, 0o644)
    subprocess.run(
        _as_postgres(
            [
                str(pg / "initdb"),
                "-D",
                str(data),
                "-U",
                "insight",
                "-A",
                "scram-sha-256",
                f"--pwfile={pwfile}",
            ]
        ),
        check=True,
        capture_output=True,
    )
    pwfile.unlink()
    pg_port, ml_port = free_ports(2)
    procs: list[subprocess.Popen[bytes]] = []
    log = open(root / "postgres.log", "wb")  # noqa: SIM115 (kept open for the process)
    procs.append(
        subprocess.Popen(
            _as_postgres(
                [
                    str(pg / "postgres"),
                    "-D",
                    str(data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(pg_port),
                    "-k",
                    str(sock),
                ]
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    )
    db = SharedMLflow("", "admin", secrets.token_hex(12), "", root, procs)
    try:
        env = {**os.environ, "PGPASSWORD": pw}
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                [str(pg / "pg_isready"), "-h", "127.0.0.1", "-p", str(pg_port)], capture_output=True
            ).returncode
            != 0
        ):
            if time.monotonic() > deadline:
                raise RuntimeError((root / "postgres.log").read_text()[-2000:])
            time.sleep(0.5)
        subprocess.run(
            [
                str(pg / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(pg_port),
                "-U",
                "insight",
                "mlflow",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
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
