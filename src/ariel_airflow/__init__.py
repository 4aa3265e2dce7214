"""ARIEL Airflow kit."""

__version__ = "0.1.0"
