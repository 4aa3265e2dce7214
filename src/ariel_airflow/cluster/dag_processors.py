"""One dag-processor per team bundle, so that one team's slow or broken DAG files never delay another
team's parsing.

The official chart renders a single dag-processor Deployment that parses every bundle. With
``dag_processor_per_team`` (the environment file, default on), render scales it to none and adds one
copy per team that runs ``airflow dag-processor --bundle-name <bundle>``: the same image, config,
probes, service account and placement, its own selector (a team label) so the copies' ReplicaSets
never adopt each other's pods. The copies are installed beside the chart by the release.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from ariel_airflow.team import BUNDLE_TEAM_SETTING, TEAM_LABEL, Team

COMPONENT = "dag-processor"
CONTAINER = "dag-processor"


def is_chart_dag_processor(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "Deployment" and obj["metadata"].get("labels", {}).get("component") == COMPONENT


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == CONTAINER)


def for_team(chart_deployment: dict[str, Any], team: Team, replicas: int) -> dict[str, Any]:
    """The chart's dag-processor Deployment, for ``team``'s bundle only."""
    deployment = copy.deepcopy(chart_deployment)
    metadata = deployment["metadata"]
    metadata["name"] = f"{metadata['name']}-{team.name}"
    metadata.setdefault("labels", {})[TEAM_LABEL] = team.name
    spec = deployment["spec"]
    spec["replicas"] = replicas
    spec["selector"]["matchLabels"][TEAM_LABEL] = team.name
    spec["template"]["metadata"]["labels"][TEAM_LABEL] = team.name
    container = _container(deployment)
    # The chart's args are ["bash", "-c", "exec airflow dag-processor"]: extend the command it runs.
    container["args"] = [*container["args"][:-1], f"{container['args'][-1]} --bundle-name {team.bundle_name}"]
    # The cluster policies take the team from here, not from what the DAG files say.
    container["env"] = [*container.get("env", []), {"name": BUNDLE_TEAM_SETTING, "value": team.name}]
    return deployment


def per_team(
    chart_objects: list[dict[str, Any]], teams: Iterable[Team], replicas: int
) -> list[dict[str, Any]]:
    """One copy of the chart's dag-processor per team, with ``replicas`` each."""
    chart_deployment = next(obj for obj in chart_objects if is_chart_dag_processor(obj))
    return [for_team(chart_deployment, team, replicas) for team in teams]
