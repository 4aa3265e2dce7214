"""PgBouncer's server password for Azure Postgres from Entra tokens: a sidecar of the chart's PgBouncer.

The chart writes PgBouncer a static pgbouncer.ini. This refresher writes a copy on a volume shared
with PgBouncer, which runs on the copy: each [databases] entry gains ``user=`` (the managed
identity's database role) and ``password=`` (the current Entra token), and [pgbouncer] gains client
TLS, with a certificate the refresher makes once per pod. The users file it writes holds the
clients' login, read from the metadata Secret's connection string (``--clients``: the one home of
that password, ariel_airflow.cluster.platform_secrets), and this refresher's admin user, whose
random password lives only there. After each new token it RELOADs PgBouncer through the admin
console.

What RELOAD does with the new token (PgBouncer's src/loader.c, parse_database): an entry whose
host, port, dbname, user, connect_query or auth_dbname changed is marked dirty and its server
connections are closed; a changed password alone is not, and every new server login uses the new
token. With server TLS on (verify-full, as the platform runs it), PgBouncer 1.18 sets its TLS up anew
on every RELOAD and marks the open server connections close_needed: each closes when its client
releases it, so once per token the pool is renewed, one idle connection at a time. Azure checks a
token only at login, and Entra keeps an issued token valid until it expires, while the cache
fetches the next one REFRESH_MARGIN_SECONDS before that (ariel_airflow.entra). No RECONNECT, no
PAUSE: nothing a client could see (tests/test_pgbouncer_token.py: 20 clients, no failure).

(The token goes on the [databases] line, not into the auth_file: PgBouncer 1.18 keeps a forced
user's auth_file password across RELOAD, so a rotated one there is never used.)

    python -m ariel_airflow.pgbouncer_token --server-user NAME [--chart-config DIR] [--clients FILE]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg

from ariel_airflow.entra import TokenCache, default_credential

log = logging.getLogger(__name__)

# The server password until the first token comes: a value PgBouncer's config takes (not an empty
# one: "syntax error in connection string") and no server accepts.
NO_TOKEN_YET = "no-token-yet"
ADMIN_USER = "ariel-token-refresher"  # named in the platform values' pgbouncer.extraIni admin_users
# PgBouncer keeps a password in a fixed buffer, MAX_PASSWORD (include/bouncer.h) with its NUL:
# 2048 since 1.17.0 ("Increase maximum password length again"), so 1.18 here and the chart's 1.23.1
# take 2047 bytes. A longer one is cut, and its login fails (cleartext, as Azure takes a token) or
# PgBouncer crashes (scram). Entra tokens are JWTs of 1-3 kB: refuse a longer one, clearly.
# (pgbouncer/pgbouncer#1310 raises the buffer to 65535 in a release after 1.24.)
MAX_PASSWORD_BYTES = 2047
# How often to ask the cache for the token: the cache fetches a new one only inside its refresh
# margin (ariel_airflow.entra), so this just has to be well under that margin.
CHECK_SECONDS = 30.0
# Clients must use TLS; `require` is what both ends support without a CA the clients would need to
# be given: the hop is encrypted, the certificate (made here, per pod) is not checked by clients.
CLIENT_TLS_SSLMODE = "require"
CLIENT_TLS_CERT, CLIENT_TLS_KEY = "client-tls.crt", "client-tls.key"
CLIENT_TLS_NAME = "pgbouncer"


class TokenTooLong(ValueError):
    """A token PgBouncer cannot hold (MAX_PASSWORD_BYTES)."""


def quote(value: str) -> str:
    """A field of PgBouncer's auth_file: double-quoted, a double quote doubled."""
    return '"' + value.replace('"', '""') + '"'


def users_file(static_users: str, entries: dict[str, str]) -> str:
    """The static users file with ``entries`` (user -> password) replacing any line of theirs."""
    names = {quote(user) for user in entries}
    kept = [line for line in static_users.splitlines() if line.strip() and line.split()[0] not in names]
    return "\n".join([*kept, *(f"{quote(u)} {quote(p)}" for u, p in entries.items())]) + "\n"


def config_value(value: str) -> str:
    """A value of a [databases] connection string, single-quoted."""
    return "'" + value.replace("'", "''") + "'"


def pgbouncer_ini(chart_ini: str, server_user: str, token: str, folder: Path) -> str:
    """The chart's pgbouncer.ini logging in to every database as ``server_user`` with ``token``,
    reading the users file in ``folder``, letting ADMIN_USER in to the admin console and taking
    clients over TLS only, with the certificate in ``folder``."""
    out, section = [], ""
    login = f" user={server_user} password={config_value(token)}"
    ours = {
        "auth_file": folder / "users.txt",
        "admin_users": ADMIN_USER,
        "client_tls_sslmode": CLIENT_TLS_SSLMODE,
        "client_tls_cert_file": folder / CLIENT_TLS_CERT,
        "client_tls_key_file": folder / CLIENT_TLS_KEY,
    }
    for line in chart_ini.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
            out.append(line)
            if section == "[pgbouncer]":
                out += [f"{key} = {value}" for key, value in ours.items()]
            continue
        key = stripped.split("=", 1)[0].strip()
        if section == "[pgbouncer]" and key in ours:
            continue  # ours, above
        if section == "[databases]" and "=" in stripped and not stripped.startswith((";", "#")):
            line += login
        out.append(line)
    return "\n".join(out) + "\n"


def client_login(connection_file: Path) -> dict[str, str]:
    """The user and password of the connection string in ``connection_file`` (a Secret's key)."""
    url = urlsplit(connection_file.read_text().strip())
    if not url.username or url.password is None:
        raise ValueError(f"{connection_file}: the connection string names no user and password")
    return {unquote(url.username): unquote(url.password)}


def self_signed_certificate(name: str) -> tuple[bytes, bytes]:
    """A certificate for ``name`` and its key (PEM), valid ten years: PgBouncer's for client TLS."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_atomically(path: Path, text: str | bytes) -> None:
    """Replace ``path`` in one step (PgBouncer never reads half a file), keeping its owner, mode 0600."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".users-")
    with os.fdopen(fd, "wb") as out:
        out.write(text.encode() if isinstance(text, str) else text)
    os.chmod(tmp, 0o600)
    if path.exists():
        stat = path.stat()
        os.chown(tmp, stat.st_uid, stat.st_gid)
    os.replace(tmp, path)


@dataclass
class Refresher:
    tokens: TokenCache
    server_user: str
    chart_config: Path  # the chart's pgbouncer.ini and users.txt (its config secret)
    out: Path  # the volume PgBouncer reads its config from
    clients: Path | None = None  # the metadata Secret's connection string: the clients' login
    host: str = "127.0.0.1"
    port: int = 6543  # the chart's ports.pgbouncer
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    written: str | None = None

    def write(self) -> bool:
        """Write the users file and pgbouncer.ini when the token changed; True when it did."""
        token = self.tokens.password()
        if token == self.written:
            return False
        self.write_files(token)
        self.written = token
        return True

    def write_files(self, token: str) -> None:
        if len(token.encode()) > MAX_PASSWORD_BYTES:
            raise TokenTooLong(
                f"the Entra token is {len(token.encode())} bytes; PgBouncer keeps at most"
                f" {MAX_PASSWORD_BYTES} of a password: run a PgBouncer built with a larger MAX_PASSWORD"
                " (pgbouncer.image in the platform values)"
            )
        key_file = self.out / CLIENT_TLS_KEY
        if not key_file.exists() or not key_file.stat().st_size:
            cert, key = self_signed_certificate(CLIENT_TLS_NAME)
            write_atomically(self.out / CLIENT_TLS_CERT, cert)
            write_atomically(self.out / CLIENT_TLS_KEY, key)
        logins = client_login(self.clients) if self.clients else {}
        users = users_file(
            (self.chart_config / "users.txt").read_text(), {**logins, ADMIN_USER: self.admin_password}
        )
        write_atomically(self.out / "users.txt", users)
        chart_ini = (self.chart_config / "pgbouncer.ini").read_text()
        write_atomically(
            self.out / "pgbouncer.ini", pgbouncer_ini(chart_ini, self.server_user, token, self.out)
        )

    def reload(self) -> None:
        with psycopg.connect(
            host=self.host,
            port=self.port,
            dbname="pgbouncer",
            user=ADMIN_USER,
            password=self.admin_password,
            autocommit=True,
            connect_timeout=5,
            sslmode=CLIENT_TLS_SSLMODE,
            cursor_factory=psycopg.ClientCursor,  # the admin console speaks only simple queries
        ) as admin:
            admin.execute("RELOAD")

    def refresh(self) -> bool:
        """One round: a new token is written and PgBouncer reloaded; True when that happened."""
        if not self.write():
            return False
        self.reload()
        return True

    def run(self, check_seconds: float = CHECK_SECONDS) -> None:
        # PgBouncer starts once its config exists (platform/helm/values.yaml) and must listen within
        # the chart's liveness probe's 30 seconds; the first token can take longer on a busy node.
        # Until it comes, logins to the server fail and clients retry.
        self.write_files(NO_TOKEN_YET)
        reloaded = False
        while True:
            try:
                if self.refresh() or not reloaded:
                    self.reload()  # the first: PgBouncer may have started before the admin entry existed
                    reloaded = True
                    log.info("PgBouncer reloaded with a token for %s", self.server_user)
            except (psycopg.Error, OSError) as exc:
                log.warning("PgBouncer not reloaded yet (%s); retrying", exc)
                self.written = None  # write and reload again next round
                time.sleep(1)
                continue
            time.sleep(check_seconds)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ariel_airflow.pgbouncer_token", description=__doc__)
    parser.add_argument("--server-user", required=True, help="the managed identity's database role")
    parser.add_argument("--chart-config", type=Path, default=Path("/etc/pgbouncer"))
    parser.add_argument(
        "--clients", type=Path, help="a file holding the connection string the clients use (a Secret's key)"
    )
    parser.add_argument("--out", type=Path, default=Path("/etc/pgbouncer-token"))
    parser.add_argument("--port", type=int, default=6543)
    parser.add_argument("--check-seconds", type=float, default=CHECK_SECONDS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # not every HTTP request and response
    refresher = Refresher(
        TokenCache(default_credential()),
        args.server_user,
        args.chart_config,
        args.out,
        clients=args.clients,
        port=args.port,
    )
    try:
        refresher.run(args.check_seconds)
    except (ValueError, OSError) as exc:  # a token too long, the clients' connection unreadable
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
