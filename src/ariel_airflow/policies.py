"""The platform rules as Airflow cluster policies (``platform/config/airflow_local_settings.py``).

What `ariel check` reports as an error, the dag-processor and the executor refuse: the same
functions, raising AirflowClusterPolicyViolation with the findings' messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ariel_airflow.rules.base import Finding
from ariel_airflow.rules.dags import check_dag, check_task
from ariel_airflow.rules.pods import check_pod
from ariel_airflow.team import Team

LOCAL_SETTINGS_FILE = "airflow_local_settings.py"


def local_settings_source() -> str:
    """The platform's ``airflow_local_settings.py``, the one source of what every Airflow component
    loads (packaged into the wheel; ``platform/config/`` in a checkout of the kit)."""
    packaged = Path(__file__).parent / "platform_config" / LOCAL_SETTINGS_FILE
    checkout = Path(__file__).resolve().parents[2] / "platform" / "config" / LOCAL_SETTINGS_FILE
    return (packaged if packaged.is_file() else checkout).read_text()


def team_of_dag(dag: Any) -> Team | None:
    """At runtime the team is the dag_id prefix (or, failing that, the team: tag)."""
    return Team.from_dag(dag.dag_id, dag.tags)


def dag_policy(dag: Any) -> None:
    _refuse(check_dag(dag, team_of_dag(dag)))


def task_policy(task: Any) -> None:
    """Refuse what the rules refuse; then put the task into its team's pool.

    A task that names no pool is moved into its team's pool, so a team's tasks together never take
    more slots than its quota holds. A task that names another pool (another team's, or any other)
    is refused (ARL402), not moved: the pool in DAG code was someone's intent (a throttle for a
    shared system, say), and moving it silently would drop that intent where nobody sees it; the
    refusal shows it as an import error, as ``ariel check`` does in CI.
    """
    team = team_of_dag(task.dag) if task.dag else None
    _refuse(check_task(task, team))
    if team is not None:
        task.pool = team.pool


def pod_mutation_hook(pod: Any) -> None:
    labels = pod.metadata.labels if pod.metadata else None
    _refuse(check_pod(pod, Team.from_labels(labels)))


def _refuse(findings: Iterable[Finding]) -> None:
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        from airflow.exceptions import AirflowClusterPolicyViolation

        where = errors[0].task_id or errors[0].dag_id or ""
        raise AirflowClusterPolicyViolation(f"{where}: " + "; ".join(f"{f.rule} {f.message}" for f in errors))
