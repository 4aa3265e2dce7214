"""``az login`` serves ``credential()`` without the ``az`` command, as in the Docker engine's containers.

The Azure CLI folder is made the way az makes it: msal itself signs in at the Entra stand-in
(tests/entra_standin.py) with the device code flow of ``az login --use-device-code``, as the Azure
CLI's public client, and its ``SerializableTokenCache`` is written to ``msal_token_cache.json``
next to an ``azureProfile.json``. The folder is then made read-only, as the containers mount it.
PATH holds no ``az``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import msal
import pytest
from entra_standin import DEVICE_CODE_GRANT, ENTRA_HOST, EntraStandIn

from ariel_airflow.azure import NoAzureCredential, credential

AZ_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # the Azure CLI's public client, as az signs in
ARM_SCOPE = "https://management.core.windows.net//.default"  # what az login asks for
VAULT_SCOPE = "https://vault.azure.net/.default"
TENANT = "3f1c6a2e-0000-4000-8000-00000000a11e"
OTHER_TENANT = "5a7e0c1d-0000-4000-8000-000000007e2"
ALICE, BOB = "alice@contoso.example", "bob@contoso.example"


@pytest.fixture
def entra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EntraStandIn]:
    """The stand-in; a machine with no Azure settings of its own and no ``az`` on PATH."""
    for name in [name for name in os.environ if name.startswith("AZURE_")]:
        monkeypatch.delenv(name)
    for name in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # a container: no az (nor pwsh, azd)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "azure"))
    # The developer credentials (az login's place in the chain); prod ones would wait on IMDS.
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "dev")
    credential.cache_clear()
    with EntraStandIn(tmp_path) as standin:
        for name, value in standin.client_env().items():
            monkeypatch.setenv(name, value)
        yield standin
    credential.cache_clear()


def az_login(
    entra: EntraStandIn, folder: Path, user: str, tenant: str = TENANT
) -> msal.PublicClientApplication:
    """What ``az login --use-device-code --tenant`` leaves in the token cache (added to what is there)."""
    folder.mkdir(exist_ok=True)
    cache_file = folder / "msal_token_cache.json"
    cache = msal.SerializableTokenCache()
    if cache_file.exists():
        cache.deserialize(cache_file.read_text())
    entra.user = user
    app = msal.PublicClientApplication(
        AZ_CLIENT_ID, authority=f"https://{ENTRA_HOST}/{tenant}", token_cache=cache
    )
    result = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=[ARM_SCOPE]))
    assert "access_token" in result, result
    cache_file.write_text(cache.serialize())
    return app


def write_profile(folder: Path, default_user: str | None, tenant: str = TENANT) -> None:
    """azureProfile.json as az writes it (with a byte order mark); ``None``: no subscription."""
    subscriptions = []
    if default_user:
        subscriptions.append(
            {
                "id": "0b1f6471-0000-4000-8000-00000000005b",
                "name": "team-recon-dev",
                "state": "Enabled",
                "user": {"name": default_user, "type": "user"},
                "isDefault": True,
                "tenantId": tenant,
                "environmentName": "AzureCloud",
                "homeTenantId": tenant,
                "managedByTenants": [],
            }
        )
    profile = {"installationId": "8c7e9f2a-0000-4000-8000-000000000001", "subscriptions": subscriptions}
    (folder / "azureProfile.json").write_text(json.dumps(profile), encoding="utf-8-sig")


def read_only(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Make the folder read-only as the containers mount it; what it holds, to compare afterwards."""
    for file in folder.iterdir():
        file.chmod(0o444)
    folder.chmod(0o555)
    return {file.name: (file.read_bytes(), file.stat().st_mtime_ns) for file in folder.iterdir()}


def unchanged(folder: Path, before: dict[str, tuple[bytes, int]]) -> bool:
    # The tests run as root, whom permissions do not stop: compare the folder's files instead.
    return {file.name: (file.read_bytes(), file.stat().st_mtime_ns) for file in folder.iterdir()} == before


def test_az_login_serves_the_cached_access_token(entra: EntraStandIn, tmp_path: Path) -> None:
    folder = tmp_path / "azure"
    entra.access_token = "arm-token-of-az-login"
    az_login(entra, folder, ALICE)
    write_profile(folder, ALICE)
    before = read_only(folder)
    entra.access_token = "a-token-nobody-should-ask-for"

    token = credential().get_token(ARM_SCOPE)

    assert token.token == "arm-token-of-az-login"
    assert [r.form["grant_type"] for r in entra.requests] == [DEVICE_CODE_GRANT]  # az login's only
    assert unchanged(folder, before)


def test_expired_access_token_is_refreshed_with_az_clis_refresh_token(
    entra: EntraStandIn, tmp_path: Path
) -> None:
    folder = tmp_path / "azure"
    entra.expires_in = 60  # MSAL takes a token with under 5 minutes left as expired
    az_login(entra, folder, ALICE)
    write_profile(folder, ALICE)
    before = read_only(folder)
    entra.expires_in, entra.access_token = 3600, "refreshed-arm-token"

    token = credential().get_token(ARM_SCOPE)

    assert token.token == "refreshed-arm-token"
    refresh = entra.requests[-1]
    assert refresh.form["grant_type"] == "refresh_token"
    assert refresh.form["client_id"] == AZ_CLIENT_ID
    assert refresh.form["refresh_token"] == "refresh-token-1"  # the one az login got
    assert refresh.tenant == TENANT
    assert unchanged(folder, before)  # the new tokens stay in memory

    credential().get_token(ARM_SCOPE)
    assert len(entra.requests) == 2  # the refreshed token is reused


def test_other_scope_and_requested_tenant_use_the_refresh_token(entra: EntraStandIn, tmp_path: Path) -> None:
    folder = tmp_path / "azure"
    az_login(entra, folder, ALICE)
    write_profile(folder, ALICE)
    read_only(folder)
    entra.access_token = "vault-token"

    assert credential().get_token(VAULT_SCOPE).token == "vault-token"
    assert credential().get_token(VAULT_SCOPE, tenant_id=OTHER_TENANT).token == "vault-token"

    first, second = entra.requests[1:]
    assert first.form["grant_type"] == second.form["grant_type"] == "refresh_token"
    assert VAULT_SCOPE in first.form["scope"].split()
    assert (first.tenant, second.tenant) == (TENANT, OTHER_TENANT)


def test_the_default_subscriptions_user_is_used_among_several_accounts(
    entra: EntraStandIn, tmp_path: Path
) -> None:
    folder = tmp_path / "azure"
    az_login(entra, folder, ALICE)  # refresh-token-1
    az_login(entra, folder, BOB)  # refresh-token-2
    write_profile(folder, ALICE)  # `az account set` chose a subscription of Alice's
    read_only(folder)

    credential().get_token(VAULT_SCOPE)

    assert entra.requests[-1].form["refresh_token"] == "refresh-token-1"


def test_several_accounts_and_no_default_subscription_names_them(entra: EntraStandIn, tmp_path: Path) -> None:
    folder = tmp_path / "azure"
    az_login(entra, folder, ALICE)
    az_login(entra, folder, BOB)
    write_profile(folder, None)
    read_only(folder)

    with pytest.raises(NoAzureCredential) as failure:
        credential().get_token(VAULT_SCOPE)

    assert f"holds several accounts ({ALICE}, {BOB})" in failure.value.message
    assert "az account set --subscription" in failure.value.message


def test_a_cache_without_account_says_to_run_az_login(entra: EntraStandIn, tmp_path: Path) -> None:
    """After ``az logout``: msal removed the account (and its tokens) from the cache."""
    folder = tmp_path / "azure"
    app = az_login(entra, folder, ALICE)
    for account in app.get_accounts():
        app.remove_account(account)  # what az logout does
    (folder / "msal_token_cache.json").write_text(app.token_cache.serialize())
    write_profile(folder, None)
    read_only(folder)
    requests_before = len(entra.requests)

    with pytest.raises(NoAzureCredential) as failure:
        credential().get_token(VAULT_SCOPE)

    message = failure.value.message
    assert f"AzLoginCacheCredential: the Azure CLI folder {folder} holds no account" in message
    assert "run `az login` on the host" in message
    assert "AzureCliCredential" not in message  # no az here: the cache took its place
    assert len(entra.requests) == requests_before
