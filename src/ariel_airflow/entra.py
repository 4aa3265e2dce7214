"""Entra ID tokens as the metadata database's password (Azure Postgres reached with a managed identity).

A token lasts about an hour, and Azure checks it only when a connection logs in: so each new
connection gets a fresh-enough token as its password (a SQLAlchemy ``do_connect`` listener), and
connections already open outlive the token they were made with. ``sql_alchemy_conn_cmd`` is read
once at start-up, which is why this is an engine override and not a config command.

Turned on by ``ARIEL_METADATA_DB_ENTRA=true`` in the components' environment (see
platform/config/airflow_local_settings.py): off, Airflow's own engine factories are used unchanged.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.ext.asyncio import create_async_engine

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

# The scope of Azure Database for PostgreSQL's Entra authentication.
POSTGRES_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
ENABLE_SETTING = "ARIEL_METADATA_DB_ENTRA"  # "true": the metadata engines log in with Entra tokens
# "package.module:callable" returning a TokenCredential; unset: DefaultAzureCredential (workload
# identity in the pods). Lets a platform pin ManagedIdentityCredential(client_id=...), and tests
# hand in a stand-in.
CREDENTIAL_SETTING = "ARIEL_METADATA_DB_CREDENTIAL"
# Fetch a new token this long before the cached one expires: a login may take seconds (TLS, a busy
# database, retries), the pod's clock may drift from Entra's, and the token endpoint (IMDS, workload
# identity exchange) may be slow to answer. azure-identity's own refresh window is the same 5 minutes.
REFRESH_MARGIN_SECONDS = 300


def enabled() -> bool:
    return os.environ.get(ENABLE_SETTING, "").strip().lower() in ("1", "true", "yes")


class TokenCache:
    """One token of ``scope`` at a time, replaced when it comes within ``margin`` seconds of expiring."""

    def __init__(
        self,
        credential: TokenCredential,
        scope: str = POSTGRES_SCOPE,
        margin: float = REFRESH_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credential, self.scope, self.margin, self.clock = credential, scope, margin, clock
        self._token: AccessToken | None = None
        self._lock = threading.Lock()  # one token request at a time, whatever the number of threads

    def password(self) -> str:
        with self._lock:
            if self._token is None or self._token.expires_on - self.margin <= self.clock():
                self._token = self.credential.get_token(self.scope)
            return self._token.token


def default_credential() -> TokenCredential:
    """The credential ``CREDENTIAL_SETTING`` names, or DefaultAzureCredential."""
    factory_path = os.environ.get(CREDENTIAL_SETTING, "").strip()
    if not factory_path:
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()
    module, _, name = factory_path.partition(":")
    return getattr(importlib.import_module(module), name)()


_tokens: TokenCache | None = None
_tokens_lock = threading.Lock()


def metadata_db_tokens() -> TokenCache:
    """The process's token cache, shared by the sync and async engines (built on first use)."""
    global _tokens
    with _tokens_lock:
        if _tokens is None:
            _tokens = TokenCache(default_credential())
        return _tokens


def use_token_as_password(engine: Engine, tokens: TokenCache | None = None) -> Engine:
    """Every new DBAPI connection of ``engine`` logs in with the current token as its password."""

    @event.listens_for(engine, "do_connect")
    def _token_password(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["password"] = (tokens or metadata_db_tokens()).password()

    return engine


def create_metadata_engine(
    sql_alchemy_conn: str, *, engine_args: dict[str, Any], connect_args: dict[str, Any]
) -> Engine:
    """Airflow's ``settings.create_metadata_engine``, logging in with Entra tokens."""
    engine = create_engine(sql_alchemy_conn, connect_args=connect_args, **engine_args, future=True)
    return use_token_as_password(engine)


def create_async_metadata_engine(
    sql_alchemy_conn_async: str, *, connect_args: dict[str, Any], engine_args: dict[str, Any] | None = None
) -> AsyncEngine:
    """Airflow's ``settings.create_async_metadata_engine``, logging in with Entra tokens."""
    engine = create_async_engine(
        sql_alchemy_conn_async, connect_args=connect_args, **(engine_args or {}), future=True
    )
    use_token_as_password(engine.sync_engine)  # SQLAlchemy fires do_connect on the sync facade
    return engine


def engine_overrides() -> dict[str, Callable[..., Any]]:
    """What airflow_local_settings.py exports: the two engine factories when enabled, else nothing."""
    if not enabled():
        return {}
    return {
        "create_metadata_engine": create_metadata_engine,
        "create_async_metadata_engine": create_async_metadata_engine,
    }
