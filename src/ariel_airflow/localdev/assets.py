"""Where the Docker engine's files are: ``localdev/`` of the kit (compose.yaml, Dockerfiles)."""

from __future__ import annotations

from pathlib import Path


def assets_dir() -> Path:
    """Inside an installed wheel (force-included there) or, in a checkout, the repository's own."""
    packaged = Path(__file__).parent / "assets"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[3] / "localdev"


def kit_package_dir() -> Path:
    """The kit's package directory, mounted into the Airflow containers."""
    return Path(__file__).resolve().parents[1]
