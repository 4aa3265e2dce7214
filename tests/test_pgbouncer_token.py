"""PgBouncer's server password from rotating tokens: real PgBouncer and Postgres, concurrent clients."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from azure.core.credentials import AccessToken
from rotating_credential import RotatingRolePassword

from ariel_airflow import entra
from ariel_airflow.localdev.binaries import unprivileged_user
from ariel_airflow.localdev.scratch import (
    HOST,
    SUPERUSER,
    free_port,
    run_pgbouncer,
    scratch_pgbouncer,
    scratch_postgres,
)
from ariel_airflow.pgbouncer_token import (
    ADMIN_USER,
    MAX_PASSWORD_BYTES,
    Refresher,
    TokenTooLong,
    pgbouncer_ini,
    users_file,
)

pytestmark = pytest.mark.postgres

ROLE = "airflow_mi"  # the managed identity's role: PgBouncer's server-side user
CLIENT, CLIENT_PASSWORD = "airflow", "static-client-password"  # the chart's metadataConnection
# As the chart writes it (templates/_helpers.yaml "pgbouncer_config"), on loopback.
CHART_INI = """\
[databases]
airflow = host=127.0.0.1 dbname=airflow port={pg_port} pool_size=5
[pgbouncer]
pool_mode = transaction
listen_port = {port}
listen_addr = 127.0.0.1
unix_socket_dir =
auth_type = scram-sha-256
auth_file = /etc/pgbouncer/users.txt
stats_users = airflow
ignore_startup_parameters = extra_float_digits
max_client_conn = 200
"""


POOL_SIZE = 5  # the chart's [databases] pool_size, as in CHART_INI
ROTATIONS = 5


def pool_state(console: psycopg.Connection) -> tuple[set[int], int]:
    """The Postgres pids of the airflow pool's server connections, and how many are logging in."""
    rows = console.execute("SHOW SERVERS")
    names = [column.name for column in rows.description]
    pids = {row[names.index("remote_pid")] for row in rows if row[names.index("database")] == "airflow"}
    pools = console.execute("SHOW POOLS")
    names = [column.name for column in pools.description]
    logging_in = sum(
        row[names.index("sv_login")] for row in pools if row[names.index("database")] == "airflow"
    )
    return pids, logging_in


def settled(console: psycopg.Connection, replaced: set[int], timeout: float = 30) -> set[int]:
    """Wait until the pool holds POOL_SIZE logged-in server connections, none of ``replaced``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids, logging_in = pool_state(console)
        # (A server still logging in has no pid yet: 0.)
        if len(pids) == POOL_SIZE and 0 not in pids and not logging_in and not pids & replaced:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"the pool did not settle: {pool_state(console)}, replacing {replaced}")


def test_clients_never_fail_while_the_server_password_rotates(workdir: Path) -> None:
    token_dir = workdir / "token"  # the emptyDir shared by PgBouncer and the refresher
    token_dir.mkdir()
    for name in ("users.txt", "pgbouncer.ini"):  # PgBouncer's user must read what root writes
        (token_dir / name).touch()
        if user := unprivileged_user():
            shutil.chown(token_dir / name, user)
    chart = workdir / "chart-config"  # the chart's config secret
    chart.mkdir()
    (chart / "users.txt").write_text(f'"{CLIENT}" "{CLIENT_PASSWORD}"\n')
    port = free_port()
    with scratch_postgres() as pg:
        # Azure Postgres takes an Entra token as a cleartext password (over TLS): so does this role.
        hba = pg.folder / "data" / "pg_hba.conf"
        hba.write_text(f"host all {ROLE} {HOST}/32 password\n" + hba.read_text())
        with pg.connect(autocommit=True) as admin:
            admin.execute("SELECT pg_reload_conf()")
            admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD NULL")
            admin.execute(f"CREATE DATABASE airflow OWNER {ROLE}")
        admin_dsn = f"host={HOST} port={pg.port} dbname=postgres user={SUPERUSER} password={pg.password}"
        # Tokens as long as PgBouncer takes; each one already inside the cache's refresh margin, so
        # every refresh() below is a rotation, at the test's pace.
        credential = RotatingRolePassword(
            admin_dsn, ROLE, lifetime=entra.REFRESH_MARGIN_SECONDS, length=MAX_PASSWORD_BYTES
        )
        (chart / "pgbouncer.ini").write_text(CHART_INI.format(pg_port=pg.port, port=port))
        refresher = Refresher(entra.TokenCache(credential), ROLE, chart, token_dir, port=port)
        refresher.write()  # before PgBouncer starts, as in the pod
        with run_pgbouncer(token_dir / "pgbouncer.ini", port) as bouncer:
            counts = {"ok": 0, "failed": 0}
            errors: list[str] = []
            stop = threading.Event()
            lock = threading.Lock()

            def client() -> None:
                while not stop.is_set():
                    try:
                        with psycopg.connect(
                            host=HOST,
                            port=bouncer.port,
                            dbname="airflow",
                            user=CLIENT,
                            password=CLIENT_PASSWORD,
                            prepare_threshold=None,
                            connect_timeout=10,
                        ) as conn:
                            assert conn.execute("SELECT current_user").fetchone() == (ROLE,)
                        key = "ok"
                    except (psycopg.Error, AssertionError) as exc:
                        key = "failed"
                        errors.append(repr(exc))
                    with lock:
                        counts[key] += 1

            threads = [threading.Thread(target=client) for _ in range(20)]
            for thread in threads:
                thread.start()
            with psycopg.connect(
                host=HOST,
                port=bouncer.port,
                dbname="pgbouncer",
                user=ADMIN_USER,
                password=refresher.admin_password,
                autocommit=True,
                cursor_factory=psycopg.ClientCursor,  # the admin console speaks only simple queries
            ) as console:
                try:
                    servers = settled(console, set())
                    for _ in range(ROTATIONS):
                        # As the sidecar does on a new token: the role's password changes (the
                        # previous one stops working at once, stricter than Entra), the ini is
                        # rewritten, PgBouncer reloads.
                        assert refresher.refresh()
                        # RELOAD with only the password changed keeps the server connections.
                        assert pool_state(console)[0] == servers
                        # In production they are replaced when server_lifetime or server_idle_timeout
                        # ends them, at any time, while Entra keeps the previous token valid. Here the
                        # previous password is dead, so the test replaces them itself, after the
                        # RELOAD: every new login must be made with the new token.
                        console.execute("RECONNECT airflow")
                        servers = settled(console, servers)
                finally:
                    stop.set()
                    for thread in threads:
                        thread.join()
            log = bouncer.log.read_text()
        postgres_log = pg.log.read_text()
    assert counts["failed"] == 0, (counts, errors[:3], log[-3000:])
    assert counts["ok"] > 100, counts
    assert credential.issued == ROTATIONS + 1
    assert "password authentication failed" not in postgres_log
    assert log.count("new connection to server") >= POOL_SIZE * (ROTATIONS + 1)


@pytest.mark.parametrize(("length", "logs_in"), [(MAX_PASSWORD_BYTES, True), (MAX_PASSWORD_BYTES + 1, False)])
def test_pgbouncer_takes_a_cleartext_password_up_to_the_limit(length: int, logs_in: bool) -> None:
    """Why the refresher refuses a longer token: PgBouncer cuts it and the login fails."""
    password = "t" * length
    with scratch_postgres() as pg:
        hba = pg.folder / "data" / "pg_hba.conf"
        hba.write_text(f"host all {ROLE} {HOST}/32 password\n" + hba.read_text())
        with pg.connect(autocommit=True) as admin:
            admin.execute("SELECT pg_reload_conf()")
            admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'")
            admin.execute(f"CREATE DATABASE airflow OWNER {ROLE}")
        chart_ini = CHART_INI.format(pg_port=pg.port, port="{port}")  # scratch_pgbouncer fills in {port}
        login = pgbouncer_ini(chart_ini, ROLE, password, Path("{folder}/users.txt"))
        with scratch_pgbouncer(login, {"users.txt": f'"{CLIENT}" "{CLIENT_PASSWORD}"\n'}) as bouncer:
            try:
                with psycopg.connect(
                    host=HOST, port=bouncer.port, dbname="airflow", user=CLIENT, password=CLIENT_PASSWORD
                ) as conn:
                    conn.execute("SELECT 1")
                logged_in = True
            except psycopg.OperationalError as exc:
                assert "password authentication failed" in str(exc)
                logged_in = False
    assert logged_in == logs_in


def test_users_file_keeps_the_chart_clients_and_replaces_the_admin_entry() -> None:
    static = f'"airflow" "pw"\n"{ADMIN_USER}" "stale"\n'
    text = users_file(static, {ADMIN_USER: 'ad"min'})
    assert text.splitlines() == ['"airflow" "pw"', f'"{ADMIN_USER}" "ad""min"']


class LongToken:
    """A credential whose token is one byte longer than PgBouncer keeps."""

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken("x" * (MAX_PASSWORD_BYTES + 1), int(time.time()) + 3600)


def test_a_token_longer_than_pgbouncer_keeps_is_refused(tmp_path: Path) -> None:
    (tmp_path / "users.txt").write_text('"airflow" "pw"\n')
    (tmp_path / "out").mkdir()
    refresher = Refresher(entra.TokenCache(LongToken()), ROLE, tmp_path, tmp_path / "out")
    with pytest.raises(TokenTooLong, match="MAX_PASSWORD"):
        refresher.write()
    assert not list((tmp_path / "out").iterdir())


def test_the_sidecar_exits_2_with_a_message_on_a_too_long_token(tmp_path: Path) -> None:
    (tmp_path / "users.txt").write_text('"airflow" "pw"\n')
    (tmp_path / "pgbouncer.ini").write_text(CHART_INI)
    result = subprocess.run(
        [sys.executable, "-m", "ariel_airflow.pgbouncer_token", f"--server-user={ROLE}"]
        + [f"--chart-config={tmp_path}", f"--out={tmp_path}"],
        env={
            **os.environ,
            entra.CREDENTIAL_SETTING: f"{__name__}:LongToken",
            "PYTHONPATH": str(Path(__file__).parent),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert f"the Entra token is {MAX_PASSWORD_BYTES + 1} bytes" in result.stderr
    assert "Traceback" not in result.stderr
