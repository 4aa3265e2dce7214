"""Airflow cluster policies of the ARIEL platform: the rules `ariel check` runs in CI.

Mounted as $AIRFLOW_HOME/config/airflow_local_settings.py on every Airflow component (and written
into the local stack's AIRFLOW_HOME by `ariel local`); the logic lives in the kit.
"""

from ariel_airflow.policies import dag_policy, pod_mutation_hook, task_policy

__all__ = ["dag_policy", "pod_mutation_hook", "task_policy"]
