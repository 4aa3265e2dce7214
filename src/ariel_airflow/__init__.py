"""ARIEL Airflow kit."""

from importlib.metadata import version

__version__ = version("ariel-airflow")
