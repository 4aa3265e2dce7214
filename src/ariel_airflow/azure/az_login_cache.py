"""``az login`` without the ``az`` command: a credential that reads the Azure CLI's MSAL token cache.

The Docker engine's containers have no ``az``; they get the developer's Azure CLI folder read-only
(AZURE_CONFIG_DIR). The Azure CLI (2.30 and later) signs in with MSAL and keeps there:
- ``msal_token_cache.json``: MSAL's own token cache (accounts, access and refresh tokens), plain JSON
  on Linux and macOS. On Windows the CLI encrypts it with DPAPI (``msal_token_cache.bin``): not
  readable here (nor in a Linux container); use a service principal in the environment instead.
- ``azureProfile.json``: the subscriptions; the default one (``az account set``) names the user and
  the tenant.

Which account, which tenant: the default subscription's user in that subscription's tenant. With no
default subscription (no profile, or ``az login --allow-no-subscriptions`` before any was set), the
cache's one account in its home tenant; several accounts and no default is an error naming them.
A tenant an SDK client asks for (``get_token(..., tenant_id=)``, e.g. from a Key Vault challenge)
is used as ``az account get-access-token --tenant`` would. A service principal or managed identity
signed in with ``az login`` is not served (its secret is elsewhere): set AZURE_CLIENT_ID,
AZURE_TENANT_ID and AZURE_CLIENT_SECRET instead.

Tokens come from msal's ``acquire_token_silent``: a cached access token while it is valid, else a
refresh-token grant as the Azure CLI's public client. The refreshed tokens stay in memory: the file
is never written (the mount is read-only, and it is az's file). When az rewrites it (a new
``az login``), the next call reads it again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msal
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.identity import CredentialUnavailableError

from ariel_airflow.azure.environment import azure_cli_config_dir

AZURE_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # the Azure CLI's public client (msal app)
TOKEN_CACHE_FILE = "msal_token_cache.json"
ENCRYPTED_TOKEN_CACHE_FILE = "msal_token_cache.bin"  # Windows (DPAPI): not readable here
PROFILE_FILE = "azureProfile.json"
LOGIN_AGAIN = "run `az login` on the host (the Docker engine's containers read its token cache)"


@dataclass(frozen=True)
class _Login:
    """The cache's account to use and the tenant to ask in."""

    username: str
    environment: str  # the authority host the account signed in at
    tenant: str


class AzLoginCacheCredential:
    """An azure-core ``TokenCredential`` (and ``SupportsTokenInfo``) from the Azure CLI's token cache."""

    def __init__(self, config_dir: Path | None = None) -> None:
        self.config_dir = config_dir or azure_cli_config_dir()
        self._lock = threading.Lock()
        self._loaded: tuple[float, float] | None = None  # the (cache, profile) mtimes read
        self._cache: msal.SerializableTokenCache | None = None
        self._login: _Login | None = None
        self._apps: dict[str, msal.PublicClientApplication] = {}  # by tenant, sharing the cache

    def get_token(
        self, *scopes: str, claims: str | None = None, tenant_id: str | None = None, **kwargs: Any
    ) -> AccessToken:
        info = self._token(scopes, claims=claims, tenant_id=tenant_id)
        return AccessToken(info.token, info.expires_on)

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        options = options or {}
        return self._token(scopes, claims=options.get("claims"), tenant_id=options.get("tenant_id"))

    def close(self) -> None:
        pass

    def __enter__(self) -> AzLoginCacheCredential:
        return self

    def __exit__(self, *args: object) -> None:
        pass

    def _token(self, scopes: tuple[str, ...], claims: str | None, tenant_id: str | None) -> AccessTokenInfo:
        if not scopes:
            raise ValueError("get_token needs at least one scope")
        with self._lock:
            login = self._read()
            tenant = tenant_id or login.tenant
            app = self._apps.get(tenant)
            try:
                if app is None:
                    app = self._apps[tenant] = msal.PublicClientApplication(
                        AZURE_CLI_CLIENT_ID,
                        authority=f"https://{login.environment}/{tenant}",
                        token_cache=self._cache,
                    )
                accounts = app.get_accounts(username=login.username)
                if not accounts:
                    raise self._unavailable(f"holds no account {login.username}: {LOGIN_AGAIN}")
                result = app.acquire_token_silent_with_error(
                    list(scopes), accounts[0], claims_challenge=claims
                )
            except CredentialUnavailableError:
                raise
            except Exception as error:  # network, TLS, a refused discovery: say so, let the chain go on
                raise self._unavailable(f"could not reach Entra for {login.username}: {error}") from error
        if not result or "access_token" not in result:
            why = (result or {}).get("error_description") or "no token for these scopes and no refresh token"
            raise self._unavailable(
                f"gave no token for {login.username} in tenant {tenant}: {why}; {LOGIN_AGAIN}"
            )
        now = int(time.time())
        return AccessTokenInfo(
            result["access_token"],
            now + int(result["expires_in"]),
            refresh_on=result.get("refresh_on"),
        )

    def _read(self) -> _Login:
        """The cache and the login, read again when az has rewritten either file."""
        cache_file, profile_file = self.config_dir / TOKEN_CACHE_FILE, self.config_dir / PROFILE_FILE
        if not cache_file.is_file():
            if (self.config_dir / ENCRYPTED_TOKEN_CACHE_FILE).is_file():
                raise self._unavailable(
                    f"holds {ENCRYPTED_TOKEN_CACHE_FILE}, encrypted by the Azure CLI on Windows: it "
                    "cannot be read here; set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET for a "
                    "service principal"
                )
            raise self._unavailable(f"has no {TOKEN_CACHE_FILE}: {LOGIN_AGAIN}")
        mtimes = (cache_file.stat().st_mtime, profile_file.stat().st_mtime if profile_file.is_file() else 0.0)
        if mtimes != self._loaded or self._login is None:
            cache = msal.SerializableTokenCache()
            try:
                cache.deserialize(cache_file.read_text(encoding="utf-8"))
                subscription = _default_subscription(profile_file)
            except ValueError as error:  # half-written by az at this moment, or not az's format
                raise self._unavailable(
                    f"holds a {TOKEN_CACHE_FILE} or {PROFILE_FILE} that is not az's JSON ({error})"
                ) from error
            self._login = _login(cache, subscription, self._unavailable)
            self._cache, self._apps, self._loaded = cache, {}, mtimes
        return self._login

    def _unavailable(self, what: str) -> CredentialUnavailableError:
        return CredentialUnavailableError(message=f"the Azure CLI folder {self.config_dir} {what}")


def _default_subscription(profile_file: Path) -> dict | None:
    if not profile_file.is_file():
        return None
    # az writes its JSON files with a byte order mark (utf-8-sig)
    profile = json.loads(profile_file.read_text(encoding="utf-8-sig"))
    return next((s for s in profile.get("subscriptions", []) if s.get("isDefault")), None)


def _login(
    cache: msal.SerializableTokenCache,
    subscription: dict | None,
    unavailable: Callable[[str], CredentialUnavailableError],
) -> _Login:
    accounts = list(cache.search(msal.TokenCache.CredentialType.ACCOUNT))
    if subscription is not None:
        user = subscription.get("user", {})
        if user.get("type") != "user":
            raise unavailable(
                f"is signed in as {user.get('type')} {user.get('name')}, whose secret this credential does "
                "not read: set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET instead"
            )
        mine = [a for a in accounts if a.get("username", "").lower() == user["name"].lower()]
        if not mine:
            raise unavailable(
                f"holds no account {user['name']} (the default subscription's user): {LOGIN_AGAIN}"
            )
        return _Login(user["name"], mine[0]["environment"], subscription["tenantId"])
    users = sorted({a["home_account_id"]: a.get("username", "") for a in accounts}.values())
    if not users:
        raise unavailable(f"holds no account: {LOGIN_AGAIN}")
    if len(users) > 1:
        raise unavailable(
            f"holds several accounts ({', '.join(users)}) and no default subscription: "
            "run `az account set --subscription <id>` on the host"
        )
    [account] = [a for a in accounts if a.get("username", "") == users[0]][:1]
    home_tenant = account["home_account_id"].split(".")[-1]  # "<object id>.<home tenant id>"
    return _Login(users[0], account["environment"], home_tenant)
