"""The platform rules as Airflow cluster policies (``platform/config/airflow_local_settings.py``).

What `ariel check` reports as an error, the dag-processor and the executor refuse: the same
functions, raising AirflowClusterPolicyViolation with the findings' messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ariel_airflow.rules.base import Finding, TeamContext
from ariel_airflow.rules.dags import check_dag, check_task
from ariel_airflow.rules.pods import TEAM_LABEL, check_pod

# What an Airflow installation's $AIRFLOW_HOME/config/airflow_local_settings.py holds.
LOCAL_SETTINGS = (
    "from ariel_airflow.policies import dag_policy, pod_mutation_hook, task_policy  # noqa: F401\n"
)


def team_of_dag(dag: Any) -> TeamContext | None:
    """At runtime the team is the dag_id prefix (or, failing that, the team: tag)."""
    ctx = TeamContext.from_dag_id(dag.dag_id)
    if ctx is None:
        tag = next((t for t in dag.tags or () if t.startswith("team:")), None)
        ctx = TeamContext(team=tag.removeprefix("team:"), service_account=None) if tag else None
    return ctx


def dag_policy(dag: Any) -> None:
    _refuse(check_dag(dag, team_of_dag(dag)))


def task_policy(task: Any) -> None:
    _refuse(check_task(task, team_of_dag(task.dag) if task.dag else None))


def pod_mutation_hook(pod: Any) -> None:
    labels = (pod.metadata.labels or {}) if pod.metadata else {}
    team = labels.get(TEAM_LABEL)
    ctx = TeamContext(team=team, service_account=f"{team}-tasks") if team else None
    _refuse(check_pod(pod, ctx))


def _refuse(findings: Iterable[Finding]) -> None:
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        from airflow.exceptions import AirflowClusterPolicyViolation

        where = errors[0].task_id or errors[0].dag_id or ""
        raise AirflowClusterPolicyViolation(f"{where}: " + "; ".join(f"{f.rule} {f.message}" for f in errors))
