"""The pod the KubernetesExecutor would build for a task: the `generate-dag-yaml` path.

The task's own ``pod_template_file`` or else the team's base template, merged with its
``pod_override`` by ``PodGenerator.construct_pod``. `ariel check` judges this pod; the local stack
compares what a task used with its resources.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ariel_airflow.team import TeamRepo

CHECKED_ENVIRONMENT = "prod"  # the environment whose base pod template the tasks' pods are built on
TASK_CONTAINER = "base"  # the executor runs the task in the container of this name


def own_template(executor_config: Any) -> str | None:
    """The ``pod_template_file`` a task names in its executor_config, if any."""
    return executor_config.get("pod_template_file") if isinstance(executor_config, dict) else None


def base_template_path(repo: TeamRepo, executor_config: Any) -> Path:
    """The base pod template the executor would read for a task (it may not exist)."""
    own = own_template(executor_config)
    if not own:
        return repo.base_pod_template(CHECKED_ENVIRONMENT)
    path = Path(own)
    return path if path.is_absolute() else repo.root / path


def effective_pod(task: Any, base_path: Path) -> Any:
    """The V1Pod for ``task`` on the base template at ``base_path``; raises on a malformed
    executor_config. Resources and placement do not depend on the labels or the pod id."""
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    return PodGenerator.construct_pod(
        dag_id=task.dag_id,
        task_id=task.task_id,
        pod_id=f"{task.dag_id}-{task.task_id}"[:63],
        try_number=1,
        kube_image="ariel-check",
        date=None,
        args=[],
        pod_override_object=PodGenerator.from_obj(task.executor_config),
        base_worker_pod=PodGenerator.deserialize_model_file(str(base_path)),
        namespace=None,  # keep the template's namespace: a pod that names none is a finding
        scheduler_job_id="ariel-check",
    )


def task_resources(pod: Any) -> dict[str, dict[str, str]] | None:
    """Requests and limits of the task's container (``None`` when the pod has no such container)."""
    container = next((c for c in (pod.spec.containers or []) if c.name == TASK_CONTAINER), None)
    if container is None:
        return None
    resources = container.resources
    return {
        "requests": {k: str(v) for k, v in ((resources.requests if resources else None) or {}).items()},
        "limits": {k: str(v) for k, v in ((resources.limits if resources else None) or {}).items()},
    }
