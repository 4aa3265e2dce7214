"""The platform rules as Airflow cluster policies (``platform/config/airflow_local_settings.py``).

What `ariel check` reports as an error, the dag-processor and the executor refuse: the same
functions, raising AirflowClusterPolicyViolation with the findings' messages.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ariel_airflow.rules.base import Finding
from ariel_airflow.rules.dags import check_dag, check_task
from ariel_airflow.rules.pods import check_pod
from ariel_airflow.team import BUNDLE_TEAM_SETTING, Team

LOCAL_SETTINGS_FILE = "airflow_local_settings.py"


def local_settings_source() -> str:
    """The platform's ``airflow_local_settings.py``, the one source of what every Airflow component
    loads (packaged into the wheel; ``platform/config/`` in a checkout of the kit)."""
    packaged = Path(__file__).parent / "platform_config" / LOCAL_SETTINGS_FILE
    checkout = Path(__file__).resolve().parents[2] / "platform" / "config" / LOCAL_SETTINGS_FILE
    return (packaged if packaged.is_file() else checkout).read_text()


def team_of_dag(dag: Any) -> Team | None:
    """The team a DAG runs as. A team's own dag-processor parses only its bundle and says whose it
    is, so a DAG cannot name itself into another team's namespace and vault (the dag_id prefix rule
    then refuses it); elsewhere, the dag_id prefix (or, failing that, the team: tag)."""
    bundle_team = os.environ.get(BUNDLE_TEAM_SETTING)
    return Team(bundle_team) if bundle_team else Team.from_dag(dag.dag_id, dag.tags)


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
        task.executor_config = team_executor_config(task.executor_config, team.pod_template_file)


def team_executor_config(executor_config: Any, template: Path) -> Any:
    """On the cluster, a team's task runs on its team's pod template (``cluster/task_pods.py``), in
    the team's namespace as the team's service account, whatever its DAG's executor_config says;
    the DAG's ``pod_override`` keeps the rest (its profile's resources).

    The executor gives each pod its own namespace unless the ``pod_override`` names one
    (``PodGenerator.construct_pod`` merges template, executor, override in that order), and reads
    the running task's logs from that same namespace. Where no template is (``ariel check``, the
    local stack), executor_config stays as the DAG wrote it.
    """
    if not template.is_file():
        return executor_config
    import copy

    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    config = dict(executor_config or {})
    own = PodGenerator.from_obj(config)  # the DAG's pod_override: shared by tasks, so copied
    team_pod = _team_placement(str(template), template.stat().st_mtime)
    config["pod_override"] = PodGenerator.reconcile_pods(copy.deepcopy(own), team_pod) if own else team_pod
    config["pod_template_file"] = str(template)
    return config


@functools.lru_cache(maxsize=64)
def _team_placement(template: str, mtime: float) -> Any:
    """A pod with only the template's namespace and service account: what the override forces."""
    from kubernetes.client import models as k8s

    pod = yaml.safe_load(Path(template).read_text())
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(namespace=pod["metadata"]["namespace"]),
        spec=k8s.V1PodSpec(containers=[], service_account_name=pod["spec"]["serviceAccountName"]),
    )


def pod_mutation_hook(pod: Any) -> None:
    labels = pod.metadata.labels if pod.metadata else None
    _refuse(check_pod(pod, Team.from_labels(labels)))


def _refuse(findings: Iterable[Finding]) -> None:
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        from airflow.exceptions import AirflowClusterPolicyViolation

        where = errors[0].task_id or errors[0].dag_id or ""
        raise AirflowClusterPolicyViolation(f"{where}: " + "; ".join(f"{f.rule} {f.message}" for f in errors))
