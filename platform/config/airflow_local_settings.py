"""Airflow cluster policies of the ARIEL platform: the rules `ariel check` runs in CI.

Mounted as $AIRFLOW_HOME/config/airflow_local_settings.py on every Airflow component (and written
into the local stack's AIRFLOW_HOME by `ariel local`); the logic lives in the kit.
With ARIEL_METADATA_DB_ENTRA=true it also replaces the metadata engine factories (Entra tokens as
the database password, ariel_airflow/entra.py); without it, it exports nothing more.
"""

from ariel_airflow.entra import engine_overrides
from ariel_airflow.policies import dag_policy, pod_mutation_hook, task_policy

globals().update(engine_overrides())
__all__ = ["dag_policy", "pod_mutation_hook", "task_policy", *engine_overrides()]
