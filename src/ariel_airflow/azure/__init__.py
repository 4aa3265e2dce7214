"""Azure from DAG code: ``from ariel_airflow.azure import credential`` (see ``task_credential.py``).

azure-identity takes a second to import: it is imported on first use, so the kit's other modules
can read ``ariel_airflow.azure.environment`` without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ariel_airflow.azure.task_credential import NoAzureCredential, credential

__all__ = ["NoAzureCredential", "credential"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ariel_airflow.azure import task_credential

        return getattr(task_credential, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
