"""Versions the kit reports (``ariel --version``), read without importing Airflow."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ariel_airflow import __version__

AIRFLOW_DISTRIBUTION = "apache-airflow"


def airflow_version() -> str | None:
    """The installed Airflow's version, from its distribution metadata (``None`` if not installed)."""
    try:
        return version(AIRFLOW_DISTRIBUTION)
    except PackageNotFoundError:
        return None


def version_text() -> str:
    return f"ariel-airflow {__version__}\napache-airflow {airflow_version() or '(not installed)'}"
