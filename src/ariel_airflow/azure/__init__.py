"""Azure from DAG code: ``from ariel_airflow.azure import credential``."""

from ariel_airflow.azure.credential import NoAzureCredential, credential

__all__ = ["NoAzureCredential", "credential"]
