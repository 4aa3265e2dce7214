"""Rules on pods: strict Kubernetes schema, resources, placement.

The Kubernetes client's models know every field of a pod (``attribute_map`` and ``openapi_types``)
but drop unknown keys when deserializing, as ``PodGenerator.deserialize_model_file`` does; the strict
check walks a manifest against those same models and reports what would be silently lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ariel_airflow.limits import LIMITS, Limits
from ariel_airflow.profiles import parse_quantity
from ariel_airflow.rules.base import Finding
from ariel_airflow.team import Team

PRIMITIVES = {"str", "int", "float", "bool", "object", "datetime", "date"}


def schema_errors(data: Any, model: str = "V1Pod", path: str = "") -> Iterator[str]:
    """Paths and reasons where ``data`` is not a ``model`` (unknown keys, wrong types)."""
    import kubernetes.client.models as models

    list_of = re.fullmatch(r"list\[(.+)\]", model)
    dict_of = re.fullmatch(r"dict\[str, (.+)\]|dict\(str, (.+)\)", model)
    if list_of:
        if not isinstance(data, list):
            yield f"{path or '.'}: expected a list"
            return
        for i, item in enumerate(data):
            yield from schema_errors(item, list_of.group(1), f"{path}[{i}]")
    elif dict_of:
        if not isinstance(data, dict):
            yield f"{path or '.'}: expected a mapping"
            return
        for key, value in data.items():
            yield from schema_errors(value, dict_of.group(1) or dict_of.group(2), f"{path}.{key}")
    elif model in PRIMITIVES:
        if model == "str" and isinstance(data, (dict, list)):
            yield f"{path}: expected a string"
    else:
        cls = getattr(models, model)
        if not isinstance(data, dict):
            yield f"{path or '.'}: expected a mapping ({model})"
            return
        fields = {json_key: attr for attr, json_key in cls.attribute_map.items()}
        for key, value in data.items():
            if key not in fields:
                close = _closest(key, fields)
                hint = f" (did you mean {close!r}?)" if close else ""
                yield f"{path}.{key}: unknown field of {model}{hint}"
            elif value is not None:
                yield from schema_errors(value, cls.openapi_types[fields[key]], f"{path}.{key}")


def check_pod(pod: Any, team: Team | None, limits: Limits = LIMITS, **where: Any) -> Iterator[Finding]:
    """Resources and placement of a pod (a V1Pod as the executor builds it).

    Placement is checked where the team is known; its namespace only where that is known too (at
    run time a pod tells only its team's name).
    """
    base = next((c for c in (pod.spec.containers or []) if c.name == "base"), None)
    if base is None:
        yield Finding("ARL301", "the pod has no container named 'base'", **where)
        return
    resources = base.resources
    for resource in ("cpu", "memory"):
        request = (resources.requests or {}).get(resource) if resources else None
        limit = (resources.limits or {}).get(resource) if resources else None
        if request is None or limit is None:
            yield Finding(
                "ARL302",
                f"container 'base' needs requests.{resource} and limits.{resource}: "
                "use executor_config=profile(...)",
                **where,
            )
        elif parse_quantity(limit) > parse_quantity(request) * limits.max_limit_ratio:
            yield Finding(
                "ARL302",
                f"limits.{resource} {limit} is more than {limits.max_limit_ratio}x "
                f"requests.{resource} {request}",
                **where,
            )
    if team is None:
        return
    yield from (Finding("ARL401", problem, **where) for problem in placement_problems(pod, team))


def placement_problems(pod: Any, team: Team) -> Iterator[str]:
    """Where a pod leaves the team's namespace, labels or service account."""
    namespace = pod.metadata.namespace if pod.metadata else None
    if team.namespace and namespace != team.namespace:
        yield (
            f"namespace {namespace!r} is not the team's {team.namespace!r}"
            if namespace
            else f"the pod names no namespace: it must run in the team's {team.namespace!r}"
        )
    labels = (pod.metadata.labels if pod.metadata else None) or {}
    for key, value in team.labels.items():
        if labels.get(key) != value:
            yield f"label {key}: {value!r} is missing or changed"
    if pod.spec.service_account_name != team.service_account:
        yield (
            f"serviceAccountName {pod.spec.service_account_name!r} is not the team's {team.service_account!r}"
        )


def _closest(key: str, candidates: dict[str, str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(key, candidates, n=1, cutoff=0.8)
    return found[0] if found else None
