"""The environment variables azure-identity reads (without importing it: it is slow to import).

The Docker engine passes these into its containers; a path among them must be one the container
can read (a path on the host is not).
"""

import os
from pathlib import Path

ENVIRONMENT_VARIABLES = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_TOKEN_CREDENTIALS",
    "AZURE_ADDITIONALLY_ALLOWED_TENANTS",
)


def azure_cli_config_dir() -> Path:
    """The Azure CLI's folder (profile, token cache): AZURE_CONFIG_DIR, else ~/.azure, as az itself."""
    configured = os.environ.get("AZURE_CONFIG_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".azure"
