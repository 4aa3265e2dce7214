"""What makes workload identity work on Azure, from the model: ``ariel platform identities ENV``.

Render annotates service accounts with a managed identity's client id; on Azure each needs, made
once by the platform team (Terraform, Bicep or ``az``):

- a **federated identity credential** on the managed identity: the cluster's OIDC issuer (the
  environment file's ``workload_identity_issuer``), the subject ``system:serviceaccount:<ns>:<name>``
  and the audience ``api://AzureADTokenExchange``. Without it Entra refuses the pod's token
  (AADSTS700213);
- **role assignments**, and no more than these:
  - the platform identity reads the platform's Key Vault and every task log, and pulls the
    platform image;
  - each team's identity reads its own vault in this environment and writes only under its own
    prefix of the task logs' container (a condition on the blob path);
- the **database role** of the platform identity in Azure Database for PostgreSQL (its Entra
  administrator runs the statements).

The list is computed from the rendered objects, so it holds exactly the annotated service accounts.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ariel_airflow.cluster import task_logs
from ariel_airflow.cluster.platform_secrets import METADATA_USER
from ariel_airflow.cluster.render import NAMESPACE, WORKLOAD_IDENTITY_CLIENT_ID, RenderResult

FEDERATION_AUDIENCE = "api://AzureADTokenExchange"
KEY_VAULT_READER = "Key Vault Secrets User"
BLOB_READER = "Storage Blob Data Reader"
BLOB_WRITER = "Storage Blob Data Contributor"
IMAGE_PULLER = "AcrPull"
BLOB_PATH = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs:path]"


def annotated_service_accounts(result: RenderResult) -> list[dict[str, str]]:
    """Every service account the release installs with a workload identity client id."""
    accounts = []
    for obj in [*result.chart_objects, *result.platform_objects()]:
        client_id = (obj["metadata"].get("annotations") or {}).get(WORKLOAD_IDENTITY_CLIENT_ID)
        if obj["kind"] == "ServiceAccount" and client_id:
            namespace = obj["metadata"].get("namespace") or NAMESPACE
            accounts.append({"namespace": namespace, "name": obj["metadata"]["name"], "client_id": client_id})
    return accounts


def identities(result: RenderResult) -> dict[str, Any]:
    """The federated credentials, role assignments and database statements of ENV."""
    env = result.env
    credentials = [
        {
            "client_id": account["client_id"],
            "service_account": f"{account['namespace']}/{account['name']}",
            "issuer": env.workload_identity_issuer,
            "subject": f"system:serviceaccount:{account['namespace']}:{account['name']}",
            "audience": FEDERATION_AUDIENCE,
        }
        for account in annotated_service_accounts(result)
    ]
    logs = f"{env.task_logs.account_url}/{env.task_logs.container}"
    platform = env.platform_identity.client_id
    roles = [
        {"client_id": platform, "role": KEY_VAULT_READER, "scope": env.key_vault.url},
        {"client_id": platform, "role": BLOB_READER, "scope": logs},
        {
            "client_id": platform,
            "role": IMAGE_PULLER,
            "scope": urlsplit(f"https://{env.image.repository}").hostname,
        },
    ]
    for name, entry in sorted(result.registry.items()):
        client_id = entry.managed_identity_client_id
        if env.name in entry.key_vaults:
            roles.append(
                {"client_id": client_id, "role": KEY_VAULT_READER, "scope": entry.key_vaults[env.name]}
            )
        prefix = task_logs.team_prefix(entry.team)
        roles.append(
            {
                "client_id": client_id,
                "role": BLOB_WRITER,
                "scope": logs,
                "condition": f"{BLOB_PATH} StringStartsWith '{prefix}'",
                "team": name,
            }
        )
    return {
        "environment": env.name,
        "federated_credentials": credentials,
        "role_assignments": roles,
        "database": database_statements(result),
    }


def database_statements(result: RenderResult) -> list[str]:
    """The platform identity's role in the metadata database (Azure maps a managed identity to the
    role of its name: the identity is named like METADATA_USER)."""
    database = result.env.database.database
    return [
        f"SELECT * FROM pgaadauth_create_principal('{METADATA_USER}', false, false);",
        f'GRANT ALL PRIVILEGES ON DATABASE "{database}" TO "{METADATA_USER}";',
        f'GRANT ALL ON SCHEMA public TO "{METADATA_USER}";  -- connected to database "{database}"',
    ]
