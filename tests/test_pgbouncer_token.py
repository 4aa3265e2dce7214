"""PgBouncer's server password from rotating tokens: real PgBouncer and Postgres, concurrent clients."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from azure.core.credentials import AccessToken
from rotating_credential import RotatingRolePassword
from standin_network import TestCA

from ariel_airflow import entra
from ariel_airflow.cluster.platform_secrets import CONNECTION_KEY, metadata_connections
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
    CLIENT_TLS_CERT,
    CLIENT_TLS_KEY,
    MAX_PASSWORD_BYTES,
    NO_TOKEN_YET,
    Refresher,
    TokenTooLong,
    pgbouncer_ini,
    self_signed_certificate,
    users_file,
)

pytestmark = pytest.mark.postgres

ROLE = "airflow_mi"  # the managed identity's role: PgBouncer's server-side user
CLIENT, CLIENT_PASSWORD = "airflow", "static client/password"  # the metadata Secret's login
# The metadata Secret's connection string (ariel_airflow.cluster.platform_secrets), mounted as a file.
CLIENT_CONNECTION = metadata_connections(CLIENT_PASSWORD, "airflow", "airflow")[CONNECTION_KEY]
# As the chart writes it (templates/_helpers.yaml "pgbouncer_config") with the platform's values
# (server TLS verified against a CA file), on loopback.
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
server_tls_sslmode = verify-full
server_tls_ca_file = {ca_file}
"""
# What the chart writes into its users file when the password lives in a Secret: none.
CHART_USERS = '"airflow" ""\n'


def tls_postgres(ca: TestCA) -> dict[str, str]:
    """Settings of a Postgres serving a certificate from ``ca`` for 127.0.0.1, as Azure serves one
    from a public CA for its host name."""
    cert, key = ca.issue(HOST)
    if user := unprivileged_user():  # Postgres reads its key as the user it runs as
        for path in (cert, key):
            shutil.chown(path, user)
    return {"ssl": "on", "ssl_cert_file": str(cert), "ssl_key_file": str(key)}


def token_role(pg: object, password: str | None = None) -> None:
    """The managed identity's role, which (as on Azure) logs in with a cleartext password over TLS only."""
    hba = pg.folder / "data" / "pg_hba.conf"
    hba.write_text(f"hostssl all {ROLE} {HOST}/32 password\nhost all {ROLE} all reject\n" + hba.read_text())
    with pg.connect(autocommit=True) as admin:
        admin.execute("SELECT pg_reload_conf()")
        secret = f"'{password}'" if password else "NULL"
        admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD {secret}")
        admin.execute(f"CREATE DATABASE airflow OWNER {ROLE}")


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
    # PgBouncer's user must read what root writes (in the pod both run as one user).
    for name in ("users.txt", "pgbouncer.ini", CLIENT_TLS_CERT, CLIENT_TLS_KEY):
        (token_dir / name).touch()
        if user := unprivileged_user():
            shutil.chown(token_dir / name, user)
    chart = workdir / "chart-config"  # the chart's config secret
    chart.mkdir()
    (chart / "users.txt").write_text(CHART_USERS)
    clients = workdir / "metadata-connection"  # the metadata Secret, mounted
    clients.write_text(CLIENT_CONNECTION)
    port = free_port()
    ca = TestCA(workdir)
    with scratch_postgres(settings=tls_postgres(ca)) as pg:
        # Azure Postgres takes an Entra token as a cleartext password (over TLS): so does this role.
        token_role(pg)
        admin_dsn = f"host={HOST} port={pg.port} dbname=postgres user={SUPERUSER} password={pg.password}"
        # Tokens as long as PgBouncer takes; each one already inside the cache's refresh margin, so
        # every refresh() below is a rotation, at the test's pace.
        credential = RotatingRolePassword(
            admin_dsn, ROLE, lifetime=entra.REFRESH_MARGIN_SECONDS, length=MAX_PASSWORD_BYTES
        )
        (chart / "pgbouncer.ini").write_text(CHART_INI.format(pg_port=pg.port, port=port, ca_file=ca.ca_file))
        refresher = Refresher(
            entra.TokenCache(credential), ROLE, chart, token_dir, clients=clients, port=port
        )
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
                            sslmode="require",
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
                sslmode="require",
                autocommit=True,
                cursor_factory=psycopg.ClientCursor,  # the admin console speaks only simple queries
            ) as console:
                with pytest.raises(psycopg.OperationalError):  # clients without TLS are refused
                    psycopg.connect(
                        host=HOST,
                        port=bouncer.port,
                        dbname="airflow",
                        user=CLIENT,
                        password=CLIENT_PASSWORD,
                        sslmode="disable",
                        connect_timeout=10,
                    )
                try:
                    servers = settled(console, set())
                    for _ in range(ROTATIONS):
                        # As the sidecar does on a new token: the role's password changes (the
                        # previous one stops working at once, stricter than Entra), the ini is
                        # rewritten, PgBouncer reloads.
                        assert refresher.refresh()
                        # RELOAD with server TLS marks the open server connections close_needed
                        # (PgBouncer 1.18 sets its TLS up anew on every RELOAD): each closes when its
                        # client releases it, and every new login must be made with the new token
                        # (the previous password is dead here, stricter than Entra).
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
def test_pgbouncer_takes_a_cleartext_password_up_to_the_limit(
    workdir: Path, length: int, logs_in: bool
) -> None:
    """Why the refresher refuses a longer token: PgBouncer cuts it and the login fails."""
    password = "t" * length
    ca = TestCA(workdir)
    with scratch_postgres(settings=tls_postgres(ca)) as pg:
        token_role(pg, password)
        with login_through_pgbouncer(pg, password, ca.ca_file) as bouncer:
            try:
                with psycopg.connect(
                    host=HOST,
                    port=bouncer.port,
                    dbname="airflow",
                    user=CLIENT,
                    password=CLIENT_PASSWORD,
                    sslmode="require",
                ) as conn:
                    conn.execute("SELECT 1")
                logged_in = True
            except psycopg.OperationalError as exc:
                assert "password authentication failed" in str(exc)
                logged_in = False
    assert logged_in == logs_in


def login_through_pgbouncer(pg: object, token: str, ca_file: Path) -> object:
    """A PgBouncer on the refresher's config, as in the pod: the token and the client TLS files."""
    chart_ini = CHART_INI.format(pg_port=pg.port, port="{port}", ca_file=ca_file)  # scratch_pgbouncer: {port}
    ini = pgbouncer_ini(chart_ini, ROLE, token, Path("{folder}"))
    cert, key = self_signed_certificate("pgbouncer")
    files = {
        "users.txt": f'"{CLIENT}" "{CLIENT_PASSWORD}"\n',
        CLIENT_TLS_CERT: cert.decode(),
        CLIENT_TLS_KEY: key.decode(),
    }
    return scratch_pgbouncer(ini, files)


@pytest.mark.parametrize("signed_by_the_trusted_ca", [True, False])
def test_pgbouncer_logs_in_only_to_a_server_its_ca_file_vouches_for(
    workdir: Path, signed_by_the_trusted_ca: bool
) -> None:
    """The token goes to Azure as a cleartext password: verify-full refuses a server whose
    certificate does not chain to the CA file (a man in the middle would read the token)."""
    server_ca, other_ca = TestCA(workdir / "server"), TestCA(workdir / "other")
    trusted = server_ca if signed_by_the_trusted_ca else other_ca
    with scratch_postgres(settings=tls_postgres(server_ca)) as pg:
        token_role(pg, "the-token")
        with login_through_pgbouncer(pg, "the-token", trusted.ca_file) as bouncer:
            try:
                with psycopg.connect(
                    host=HOST,
                    port=bouncer.port,
                    dbname="airflow",
                    user=CLIENT,
                    password=CLIENT_PASSWORD,
                    sslmode="require",
                    connect_timeout=10,
                ) as conn:
                    conn.execute("SELECT 1")
                logged_in = True
            except psycopg.OperationalError:
                logged_in = False
            log = bouncer.log.read_text()
    assert logged_in == signed_by_the_trusted_ca, log[-2000:]
    if not signed_by_the_trusted_ca:
        assert "certificate verify failed" in log, log[-2000:]


def test_the_clients_login_comes_from_the_metadata_secrets_connection(tmp_path: Path) -> None:
    (tmp_path / "users.txt").write_text(CHART_USERS)
    (tmp_path / "pgbouncer.ini").write_text(CHART_INI)
    (tmp_path / "connection").write_text(CLIENT_CONNECTION + "\n")  # a Secret's file may end in a newline
    (tmp_path / "out").mkdir()

    class Token:
        def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
            return AccessToken("tok", int(time.time()) + 3600)

    refresher = Refresher(
        entra.TokenCache(Token()), ROLE, tmp_path, tmp_path / "out", clients=tmp_path / "connection"
    )
    assert refresher.write()
    users = (tmp_path / "out" / "users.txt").read_text().splitlines()
    assert f'"{CLIENT}" "{CLIENT_PASSWORD}"' in users
    assert f'"{CLIENT}" ""' not in users
    ini = (tmp_path / "out" / "pgbouncer.ini").read_text()
    assert "client_tls_sslmode = require" in ini
    assert (tmp_path / "out" / CLIENT_TLS_KEY).stat().st_mode & 0o077 == 0


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


def test_pgbouncer_gets_its_config_before_the_first_token(tmp_path: Path) -> None:
    """PgBouncer must listen within the chart's liveness probe's 30 s; a first token can take longer
    on a busy node. The config comes at once (no server password yet), the token when it comes."""
    import threading

    (tmp_path / "users.txt").write_text(CHART_USERS)
    (tmp_path / "pgbouncer.ini").write_text(CHART_INI)
    (tmp_path / "out").mkdir()
    issue = threading.Event()

    class SlowToken:
        def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
            issue.wait(30)
            return AccessToken("the-token", int(time.time()) + 3600)

    refresher = Refresher(entra.TokenCache(SlowToken()), ROLE, tmp_path, tmp_path / "out")
    threading.Thread(target=refresher.run, args=(0.2,), daemon=True).start()
    ini = tmp_path / "out" / "pgbouncer.ini"
    deadline = time.monotonic() + 10
    while not ini.exists():
        assert time.monotonic() < deadline, "no config before the first token"
        time.sleep(0.1)
    assert f"password='{NO_TOKEN_YET}'" in ini.read_text() and "the-token" not in ini.read_text()
    # PgBouncer starts on it (found on the cluster: it refused an empty password and exited).
    with login_through_pgbouncer(
        SimpleNamespace(port=free_port()), NO_TOKEN_YET, tmp_path / "ca.crt"
    ) as bouncer:
        assert bouncer.proc.poll() is None
    issue.set()
    while "the-token" not in ini.read_text():
        assert time.monotonic() < deadline + 20, "the token never reached the config"
        time.sleep(0.1)
