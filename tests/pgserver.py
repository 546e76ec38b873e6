"""A PostgreSQL server of the test's own: Debian's binaries, ``initdb`` in a temp dir, a free
port on 127.0.0.1, password (scram) auth. Stopped by the PID started here; ``stop`` and
``start`` again on the same data folder and port (the database-goes-away fault tests)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.raynodes import free_ports, stop_groups


def pg_bin() -> Path:
    roots = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not roots:
        raise RuntimeError(
            "PostgreSQL's binaries are not installed (/usr/lib/postgresql/*/bin). Fix: "
            "`make jdbc` (apt-get install postgresql libpostgresql-jdbc-java)"
        )
    return roots[-1].parent


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@dataclass
class PostgresServer:
    root: Path
    port: int
    user: str
    password: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def url(self, db: str = "postgres") -> str:
        """A URL without credentials (what a project file holds)."""
        return f"postgresql://127.0.0.1:{self.port}/{db}"

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{db}"

    @property
    def env(self) -> dict[str, str]:
        """The credentials as the engine reads them (libpq's variable names)."""
        return {"PGUSER": self.user, "PGPASSWORD": self.password}

    def start(self) -> None:
        pg = pg_bin()
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 (kept open for the process)
        self.procs.append(
            subprocess.Popen(
                _as_postgres(
                    [
                        str(pg / "postgres"),
                        "-D",
                        str(self.root / "pgdata"),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(self.port),
                        "-k",
                        str(self.root / "sock"),
                        "-c",
                        "fsync=off",
                    ]
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                [str(pg / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            ).returncode
            != 0
        ):
            if self.procs[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.root / "postgres.log").read_text()[-2000:])
            time.sleep(0.3)

    def kill(self) -> None:
        """The database goes away: an immediate shutdown (SIGQUIT to the postmaster, which
        ends every backend at once, open connections included; what a crash looks like to
        a client), then the processes started here are ended."""
        pidfile = self.root / "pgdata" / "postmaster.pid"
        pid = None
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().splitlines()[0])
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        stop_groups(self.procs)
        self.procs.clear()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def createdb(self, name: str) -> None:
        self.execute(f'CREATE DATABASE "{name}"', db="postgres", autocommit=True)

    def execute(self, sql: str, *, db: str = "postgres", autocommit: bool = False) -> None:
        import psycopg

        with psycopg.connect(self.dsn(db), autocommit=autocommit) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def query(self, sql: str, *, db: str = "postgres") -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn(db)) as conn:
            return list(conn.execute(sql).fetchall())  # type: ignore[arg-type]


def start_postgres(user: str = "insight") -> PostgresServer:
    pg = pg_bin()
    root = Path(tempfile.mkdtemp(prefix="ipg-", dir="/tmp"))
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
                user,
                "-A",
                "scram-sha-256",
                f"--pwfile={pwfile}",
            ]
        ),
        check=True,
        capture_output=True,
    )
    pwfile.unlink()
    (port,) = free_ports(1)
    server = PostgresServer(root, port, user, pw)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server
