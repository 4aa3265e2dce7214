"""The one Azure credential DAG code uses, the same call on the platform and on a laptop.

    from ariel_airflow.azure import credential
    blobs = BlobServiceClient(account_url, credential=credential())

It is azure-identity's ``DefaultAzureCredential``, one per process, which finds by itself:
- on the platform, the workload identity of the team's service account ``<team>-tasks``: Azure's
  webhook sets AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE in task pods that carry
  the ``azure.workload.identity/use`` label;
- locally, a service principal in AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET (or
  AZURE_CLIENT_CERTIFICATE_PATH), or the developer's ``az login``: through the ``az`` command where
  it is installed (the native engine), else (the Docker engine's containers, which get the Azure CLI
  folder read-only) from az's token cache (``AzLoginCacheCredential`` takes AzureCliCredential's
  place in the chain; az_login_cache.py says what it reads).
AZURE_TOKEN_CREDENTIALS (azure-identity's own setting: ``dev``, ``prod`` or one credential's name)
narrows the chain. When nothing serves, the error says what to set in each place.
"""

from __future__ import annotations

import functools
import shutil
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import AzureCliCredential, DefaultAzureCredential

from ariel_airflow.azure.az_login_cache import AzLoginCacheCredential
from ariel_airflow.team import WORKLOAD_IDENTITY_LABEL

HOW_TO_GET_ONE = f"""\
How each place gets one:
- on the platform: the task pod's service account <team>-tasks carries the team's workload identity \
(the pod needs the label {WORKLOAD_IDENTITY_LABEL}=true, which the team's pod templates set; Azure's \
webhook then sets AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE);
- locally, either engine: set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET for a service \
principal before `ariel local up`;
- locally, either engine: or run `az login` on the host (the Docker engine's containers read its \
token cache from the Azure CLI folder, ~/.azure or AZURE_CONFIG_DIR, mounted read-only)."""


class NoAzureCredential(ClientAuthenticationError):
    """No credential in the chain gave a token; the message says how to provide one."""


class TaskCredential(DefaultAzureCredential):
    """DefaultAzureCredential whose failure names the fix for each environment.

    Without the ``az`` command, AzureCliCredential could only fail: the Azure CLI's token cache is
    read in its place (same position in the chain, after the environment, workload and managed
    identities; left out, like it, when AZURE_TOKEN_CREDENTIALS excludes it).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if shutil.which("az") is None:
            self.credentials = tuple(
                AzLoginCacheCredential() if isinstance(member, AzureCliCredential) else member
                for member in self.credentials
            )

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        try:
            return super().get_token(*scopes, **kwargs)
        except ClientAuthenticationError as error:
            raise _explained(error, scopes) from None

    def get_token_info(self, *scopes: str, **kwargs: Any) -> AccessTokenInfo:
        try:
            return super().get_token_info(*scopes, **kwargs)
        except ClientAuthenticationError as error:
            raise _explained(error, scopes) from None


def _explained(error: ClientAuthenticationError, scopes: tuple[str, ...]) -> NoAzureCredential:
    return NoAzureCredential(
        message=f"no Azure credential gave a token for {', '.join(scopes)}.\n{HOW_TO_GET_ONE}\n"
        f"What azure-identity tried (TaskCredential is its DefaultAzureCredential):\n{error.message}",
        response=error.response,
    )


@functools.cache
def credential() -> DefaultAzureCredential:
    """The process's Azure credential (made on the first call; tokens are cached and refreshed by it)."""
    return TaskCredential()
