"""``ariel_airflow.azure.credential()`` gets real tokens through azure-identity's own code path.

The token service is a local HTTPS stand-in of Microsoft Entra (tests/entra_standin.py), reached as
login.microsoftonline.com through a CONNECT proxy and trusted through SSL_CERT_FILE and
REQUESTS_CA_BUNDLE, as behind a company's TLS-intercepting proxy. Nothing in azure-identity is
replaced.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from entra_standin import EntraStandIn

from ariel_airflow.azure import NoAzureCredential, credential
from ariel_airflow.azure.environment import ENVIRONMENT_VARIABLES

VAULT_SCOPE = "https://vault.azure.net/.default"
TENANT = "3f1c6a2e-0000-4000-8000-00000000a11e"
CLIENT = "8d2b7c4e-0000-4000-8000-0000000c11e7"


@pytest.fixture
def entra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EntraStandIn]:
    """The stand-in, and an environment with no Azure settings of the machine's own."""
    for name in [name for name in os.environ if name.startswith("AZURE_")]:
        monkeypatch.delenv(name)
    for name in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no az login, no token caches of the machine
    # Only the credentials these tests are about: the others would wait on IMDS or a CLI.
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "prod")
    credential.cache_clear()
    with EntraStandIn(tmp_path) as standin:
        for name, value in standin.client_env().items():
            monkeypatch.setenv(name, value)
        yield standin
    credential.cache_clear()


def test_workload_identity_exchanges_the_federated_token_file(
    entra: EntraStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What Azure's webhook sets in a task pod of the team's service account is all it needs."""
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("federated-token-of-the-service-account")
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))

    token = credential().get_token(VAULT_SCOPE)

    assert token.token == entra.access_token
    assert token.expires_on > time.time() + 3000
    [request] = entra.requests
    assert request.tenant == TENANT
    assert request.form["client_id"] == CLIENT
    assert request.form["client_assertion"] == "federated-token-of-the-service-account"
    assert request.form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert request.form["scope"] == VAULT_SCOPE


def test_one_credential_per_process_reuses_its_token(
    entra: EntraStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("federated-token")
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))

    assert credential() is credential()
    credential().get_token(VAULT_SCOPE)
    credential().get_token(VAULT_SCOPE)
    assert len(entra.requests) == 1  # the second task call used the cached token


def test_service_principal_from_the_environment(entra: EntraStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's (or CI's) service principal in AZURE_CLIENT_ID/TENANT_ID/CLIENT_SECRET."""
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "secret-of-the-service-principal")

    token = credential().get_token_info("https://storage.azure.com/.default")

    assert token.token == entra.access_token
    [request] = entra.requests
    assert request.tenant == TENANT
    assert request.form["grant_type"] == "client_credentials"
    assert request.form["client_id"] == CLIENT
    assert request.form["client_secret"] == "secret-of-the-service-principal"
    assert request.form["scope"] == "https://storage.azure.com/.default"


def test_no_credential_says_how_to_get_one_on_the_platform_and_locally(entra: EntraStandIn) -> None:
    with pytest.raises(NoAzureCredential) as failure:
        credential().get_token(VAULT_SCOPE)

    message = failure.value.message
    assert f"no Azure credential gave a token for {VAULT_SCOPE}" in message
    assert "<team>-tasks" in message and "azure.workload.identity/use=true" in message
    assert "AZURE_CLIENT_SECRET" in message and "`az login`" in message
    assert "EnvironmentCredential" in message  # what azure-identity tried, and why it could not
    assert entra.requests == []


def test_the_docker_engine_passes_every_variable_azure_identity_reads() -> None:
    """The list the compose file passes through covers azure-identity's own names for them."""
    from azure.identity._constants import EnvironmentVariables  # its one list; private, so a test only

    read = {
        *EnvironmentVariables.CLIENT_SECRET_VARS,
        *EnvironmentVariables.CERT_VARS,
        EnvironmentVariables.AZURE_CLIENT_CERTIFICATE_PASSWORD,
        EnvironmentVariables.AZURE_CLIENT_SEND_CERTIFICATE_CHAIN,
        *EnvironmentVariables.WORKLOAD_IDENTITY_VARS,
        EnvironmentVariables.AZURE_TOKEN_CREDENTIALS,
    }
    assert read <= set(ENVIRONMENT_VARIABLES)
