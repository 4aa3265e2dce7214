"""Throwaway Postgres and PgBouncer servers on loopback, for tests and benches (not the local stack).

Both run as an unprivileged user when we are root (they refuse root), in a folder that user can
enter, and are stopped by their own pid when the context ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ariel_airflow.localdev.binaries import pgbouncer_path, postgres_bin_dir, unprivileged_user
from ariel_airflow.localdev.processes import as_user

SUPERUSER = "postgres"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    port: int
    folder: Path
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Postgres: fast shutdown; PgBouncer: safe shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class ScratchPostgres(Server):
    password: str  # of SUPERUSER

    def connect(self, dbname: str = "postgres", **kwargs: object) -> psycopg.Connection:
        kwargs = {"user": SUPERUSER, "password": self.password, **kwargs}
        return psycopg.connect(host=HOST, port=self.port, dbname=dbname, connect_timeout=5, **kwargs)


def _owned_folder(prefix: str, user: str | None) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    if user:
        shutil.chown(folder, user)
    return folder


def _wait_for_port(server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"exited {server.proc.returncode}:\n{server.log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex((HOST, server.port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(server.log.read_text())


@contextmanager
def scratch_postgres(
    max_connections: int = 100, settings: dict[str, str] | None = None
) -> Iterator[ScratchPostgres]:
    """A fresh Postgres cluster (scram only) on a free loopback port, superuser ``postgres``, with
    ``settings`` as ``-c`` options (``{folder}`` filled in)."""
    user = unprivileged_user()
    bin_dir = postgres_bin_dir()
    folder = _owned_folder("ariel-pg-", user)
    password = os.urandom(12).hex()
    (folder / "pw").write_text(password + "\n")
    if user:
        shutil.chown(folder / "pw", user)
    data = folder / "data"
    subprocess.run(
        [bin_dir / "initdb", "-D", data, "-U", SUPERUSER, f"--pwfile={folder / 'pw'}", "--auth=scram-sha-256"]
        + ["--encoding=UTF8", "--no-locale", "--no-instructions"],
        check=True,
        capture_output=True,
        **as_user(user),
    )
    port = free_port()
    log = folder / "postgres.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [bin_dir / "postgres", "-D", data, "-p", str(port), "-c", f"listen_addresses={HOST}"]
            + ["-c", f"unix_socket_directories={folder}", "-c", f"max_connections={max_connections}"]
            + [f"-c{key}={value.format(folder=folder)}" for key, value in (settings or {}).items()],
            stdout=out,
            stderr=subprocess.STDOUT,
            **as_user(user),
        )
    server = ScratchPostgres(port, folder, proc, log, password)
    try:
        _wait_for_port(server)
        deadline = time.monotonic() + 30
        while True:  # the port opens before the cluster accepts logins
            try:
                server.connect().close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def scratch_pgbouncer(ini: str, files: dict[str, str]) -> Iterator[Server]:
    """PgBouncer running ``ini`` (``{folder}`` and ``{port}`` filled in) with ``files`` beside it."""
    user = unprivileged_user()
    folder = _owned_folder("ariel-pgb-", user)
    port = free_port()
    for name, text in {"pgbouncer.ini": ini, **files}.items():
        (folder / name).write_text(text.format(folder=folder, port=port))
        if user:
            shutil.chown(folder / name, user)
    try:
        with run_pgbouncer(folder / "pgbouncer.ini", port) as server:
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def run_pgbouncer(config: Path, port: int) -> Iterator[Server]:
    """PgBouncer on ``config`` (which listens on ``port``), its log beside the config."""
    log = config.parent / "pgbouncer.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [pgbouncer_path(), config], stdout=out, stderr=subprocess.STDOUT, **as_user(unprivileged_user())
        )
    server = Server(port, config.parent, proc, log)
    try:
        _wait_for_port(server)
        yield server
    finally:
        server.stop()
