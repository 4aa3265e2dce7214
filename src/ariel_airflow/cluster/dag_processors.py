"""One dag-processor per team bundle, so that one team's slow or broken DAG files never delay another
team's parsing.

The official chart renders a single dag-processor Deployment that parses every bundle. With
``dag_processor_per_team`` (the environment file, default on), render replaces it by one copy per
team that runs ``airflow dag-processor --bundle-name <bundle>``: the same image, config, probes and
placement, its own selector (a team label) so the copies' ReplicaSets never adopt each other's pods.
"""

from __future__ import annotations

import copy
import shlex
from collections.abc import Iterable
from typing import Any

from ariel_airflow.team import TEAM_LABEL, Team

COMPONENT = "dag-processor"
CONTAINER = "dag-processor"


def is_chart_dag_processor(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "Deployment" and obj["metadata"].get("labels", {}).get("component") == COMPONENT


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == CONTAINER)


def bundle_names(deployment: dict[str, Any]) -> list[str]:
    """The ``--bundle-name`` arguments of a dag-processor Deployment (empty: it parses every bundle)."""
    words = shlex.split(" ".join(_container(deployment).get("args", [])))
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word in ("--bundle-name", "-B")]


def for_team(chart_deployment: dict[str, Any], team: Team) -> dict[str, Any]:
    """The chart's dag-processor Deployment, for ``team``'s bundle only."""
    deployment = copy.deepcopy(chart_deployment)
    metadata = deployment["metadata"]
    metadata["name"] = f"{metadata['name']}-{team.name}"
    metadata.setdefault("labels", {})[TEAM_LABEL] = team.name
    spec = deployment["spec"]
    spec["selector"]["matchLabels"][TEAM_LABEL] = team.name
    spec["template"]["metadata"]["labels"][TEAM_LABEL] = team.name
    container = _container(deployment)
    # The chart's args are ["bash", "-c", "exec airflow dag-processor"]: extend the command it runs.
    container["args"] = [*container["args"][:-1], f"{container['args'][-1]} --bundle-name {team.bundle_name}"]
    return deployment


def split_per_team(chart_objects: list[dict[str, Any]], teams: Iterable[Team]) -> list[dict[str, Any]]:
    """``chart_objects`` with the chart's dag-processor replaced by one per team, in its place."""
    result: list[dict[str, Any]] = []
    for obj in chart_objects:
        if is_chart_dag_processor(obj):
            result.extend(for_team(obj, team) for team in teams)
        else:
            result.append(obj)
    return result
