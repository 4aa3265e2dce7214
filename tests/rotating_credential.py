"""A stand-in for Entra ID: a TokenCredential whose tokens are a Postgres role's rotating passwords.

Each get_token sets a new password on the role (ALTER ROLE) and returns it, expiring ``lifetime``
seconds later, as Entra issues a token that Azure Postgres accepts at login. Used in-process by the
tests and, named by ARIEL_METADATA_DB_CREDENTIAL=rotating_credential:from_env, by Airflow processes.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import psycopg
from azure.core.credentials import AccessToken
from psycopg import sql

from ariel_airflow.entra import POSTGRES_SCOPE

# Entra tokens are JWTs of 1-3 kB; a test may ask for another length (``length``).
TOKEN_LENGTH = 900
# Entra keeps an issued token valid until it expires; a role has one password, so before replacing
# it wait for logins already under way with the previous one (milliseconds on loopback).
GRACE_SECONDS = 0.5


class RotatingRolePassword:
    def __init__(
        self, admin_dsn: str, role: str, lifetime: float, log: Path | None = None, length: int = TOKEN_LENGTH
    ) -> None:
        self.admin_dsn, self.role, self.lifetime, self.log, self.length = (
            admin_dsn,
            role,
            lifetime,
            log,
            length,
        )
        self.issued = 0

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        assert scopes == (POSTGRES_SCOPE,), scopes
        if self.issued:
            time.sleep(GRACE_SECONDS)
        password = secrets.token_urlsafe(self.length)[: self.length]
        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(self.role), sql.Literal(password))
            )
        self.issued += 1
        if self.log:
            with self.log.open("a") as out:
                out.write(f"{time.time():.3f}\n")
        return AccessToken(password, int(time.time() + self.lifetime))


def from_env() -> RotatingRolePassword:
    """The credential the test's environment describes (for Airflow processes the test starts)."""
    return RotatingRolePassword(
        os.environ["ROTATING_ADMIN_DSN"],
        os.environ["ROTATING_ROLE"],
        float(os.environ["ROTATING_LIFETIME"]),
        Path(os.environ["ROTATING_LOG"]),
    )
