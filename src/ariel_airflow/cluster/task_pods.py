"""Each team's task pod template: the chart's, moved into the team's namespace and identity.

The KubernetesExecutor builds every task pod from one ``pod_template_file`` in its own namespace.
Render derives one template per team from the chart's (so image, config mounts, security context
and placement stay the chart's): the team's namespace, service account and labels (workload
identity), the team's Key Vault as the task's secrets backend, and none of the platform's Secrets
(the metadata database, fernet key, JWT and API secrets live only in the platform namespace; task
code reaches Airflow through the execution API). The templates are one ConfigMap, mounted into the
scheduler and the dag-processors; the cluster policy (``policies.task_policy``) points each team's
tasks at theirs. The task's Airflow config is a copy of the chart's, in the team's namespace.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from ariel_airflow.cluster.environments import Environment
from ariel_airflow.cluster.registry import RegistryEntry
from ariel_airflow.team import KEY_VAULT_BACKEND, TEAM_POD_TEMPLATES_DIR, Team

CHART_CONFIGMAP_SUFFIX = "-config"  # the chart's <release>-config: airflow.cfg, local settings, template
CHART_POD_TEMPLATE_KEY = "pod_template_file.yaml"
TEAM_TEMPLATES_CONFIGMAP = "airflow-team-pod-templates"
TASK_CONFIG_CONFIGMAP = "airflow-task-config"  # in each team namespace: what a task reads of Airflow's config
TASK_CONFIG_KEYS = ("airflow.cfg", "airflow_local_settings.py")
TEMPLATES_VOLUME = "team-pod-templates"
# The components that build task pods (scheduler) or set their template (the dag-processors' policy).
TEMPLATE_READERS = ("scheduler", "dagProcessor")


def chart_config(chart_objects: list[dict[str, Any]], release: str) -> dict[str, Any]:
    name = release + CHART_CONFIGMAP_SUFFIX
    return next(o for o in chart_objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name)


def team_pod_template(
    chart_template: dict[str, Any], entry: RegistryEntry, env: Environment, chart_config_name: str
) -> dict[str, Any]:
    """The chart's task pod template for ``entry``'s team in ``env`` (``chart_config_name``: the
    chart's config ConfigMap, which exists only in the platform namespace)."""
    team = entry.team
    pod = copy.deepcopy(chart_template)
    metadata = pod.setdefault("metadata", {})
    metadata["namespace"] = team.namespace
    metadata["labels"] = {**(metadata.get("labels") or {}), **team.labels}
    spec = pod["spec"]
    spec["serviceAccountName"] = team.service_account
    spec["automountServiceAccountToken"] = False  # a task has no business with the Kubernetes API
    secret_volumes = {v["name"] for v in spec.get("volumes") or [] if _is_secret_volume(v)}
    volumes = [v for v in spec.get("volumes") or [] if v["name"] not in secret_volumes]
    spec["volumes"] = [_task_config(v, chart_config_name) for v in volumes]
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        container["env"] = [e for e in container.get("env") or [] if not _is_secret_ref(e)]
        container["envFrom"] = [e for e in container.get("envFrom") or [] if "secretRef" not in e]
        mounts = container.get("volumeMounts") or []
        container["volumeMounts"] = [m for m in mounts if m["name"] not in secret_volumes]
    base = next(c for c in spec["containers"] if c["name"] == "base")
    base["env"] = [*base["env"], *secrets_backend_env(team, env)]
    return pod


def secrets_backend_env(team: Team, env: Environment) -> list[dict[str, str]]:
    """The team's Key Vault as its tasks' secrets backend, read with the team's identity."""
    if env.name not in team.vault_urls:
        return []  # validate reports the team without a vault here
    kwargs = json.dumps(team.worker_secrets_backend_kwargs(env.name))
    return [
        {"name": "AIRFLOW__WORKERS__SECRETS_BACKEND", "value": KEY_VAULT_BACKEND},
        {"name": "AIRFLOW__WORKERS__SECRETS_BACKEND_KWARGS", "value": kwargs},
    ]


def _is_secret_ref(env_var: dict[str, Any]) -> bool:
    return "secretKeyRef" in (env_var.get("valueFrom") or {})


def _is_secret_volume(volume: dict[str, Any]) -> bool:
    projected = volume.get("projected", {}).get("sources", [])
    return "secret" in volume or any("secret" in source for source in projected)


def _task_config(volume: dict[str, Any], chart_config_name: str) -> dict[str, Any]:
    """The chart's config volume points at its ConfigMap in the platform namespace: the team's copy."""
    if volume.get("configMap", {}).get("name") == chart_config_name:
        return {**volume, "configMap": {**volume["configMap"], "name": TASK_CONFIG_CONFIGMAP}}
    return volume


def task_config_configmap(chart_configmap: dict[str, Any], team: Team) -> dict[str, Any]:
    """The Airflow config a team's task reads, in the team's namespace (no secret is in it: the
    chart passes every secret as an environment variable from a Secret)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": TASK_CONFIG_CONFIGMAP, "namespace": team.namespace, "labels": team.labels},
        "data": {key: chart_configmap["data"][key] for key in TASK_CONFIG_KEYS},
    }


def templates_configmap(templates: dict[str, dict[str, Any]], namespace: str) -> dict[str, Any]:
    """Every team's template, one key per team, in the platform namespace."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": TEAM_TEMPLATES_CONFIGMAP, "namespace": namespace},
        "data": {
            f"{team}.yaml": yaml.safe_dump(pod, sort_keys=False) for team, pod in sorted(templates.items())
        },
    }


def chart_values() -> dict[str, Any]:
    """Mount the templates ConfigMap where the scheduler and the dag-processors read them."""
    volume = {"name": TEMPLATES_VOLUME, "configMap": {"name": TEAM_TEMPLATES_CONFIGMAP}}
    mount = {"name": TEMPLATES_VOLUME, "mountPath": str(TEAM_POD_TEMPLATES_DIR), "readOnly": True}
    return {
        component: {"extraVolumes": [volume], "extraVolumeMounts": [mount]} for component in TEMPLATE_READERS
    }


def render_team_pods(
    chart_objects: list[dict[str, Any]],
    registry: dict[str, RegistryEntry],
    env: Environment,
    *,
    release: str,
    namespace: str,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The templates ConfigMap (platform namespace) and each team's task config ConfigMap."""
    config = chart_config(chart_objects, release)
    chart_template = yaml.safe_load(config["data"][CHART_POD_TEMPLATE_KEY])
    name = config["metadata"]["name"]
    templates = {
        team: team_pod_template(chart_template, entry, env, name) for team, entry in registry.items()
    }
    task_configs = {name: task_config_configmap(config, entry.team) for name, entry in registry.items()}
    return templates_configmap(templates, namespace), task_configs
