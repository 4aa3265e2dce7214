"""ARIEL Airflow kit."""

from pathlib import Path

# The file hatch reads too; read directly so the kit also works where it is mounted, not installed
# (the Docker engine's containers).
__version__ = (Path(__file__).parent / "VERSION").read_text().strip()
