"""Rules on pods: strict Kubernetes schema, resources, placement.

The Kubernetes client's models know every field of a pod (``attribute_map`` and ``openapi_types``)
but drop unknown keys when deserializing, as ``PodGenerator.deserialize_model_file`` does; the strict
check walks a manifest against those same models and reports what would be silently lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ariel_airflow.profiles import parse_quantity
from ariel_airflow.rules.base import LIMITS, Finding, Limits, TeamContext

TEAM_LABEL = "ariel.io/team"
WORKLOAD_IDENTITY_LABEL = "azure.workload.identity/use"
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


def check_pod(pod: Any, ctx: TeamContext | None, limits: Limits = LIMITS, **where: Any) -> Iterator[Finding]:
    """Resources and placement of a pod (a V1Pod as the executor builds it)."""
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
        elif parse_quantity(limit) > parse_quantity(request) * parse_quantity(str(limits.max_limit_ratio)):
            yield Finding(
                "ARL302",
                f"limits.{resource} {limit} is more than {limits.max_limit_ratio}x "
                f"requests.{resource} {request}",
                **where,
            )
    if ctx is None:
        return
    labels = pod.metadata.labels or {} if pod.metadata else {}
    if ctx.namespace and pod.metadata and pod.metadata.namespace not in (None, ctx.namespace):
        yield Finding(
            "ARL401", f"namespace {pod.metadata.namespace!r} is not the team's {ctx.namespace!r}", **where
        )
    if labels.get(TEAM_LABEL) != ctx.team:
        yield Finding("ARL401", f"label {TEAM_LABEL}: {ctx.team} is missing or changed", **where)
    if labels.get(WORKLOAD_IDENTITY_LABEL) != "true":
        yield Finding("ARL401", f'label {WORKLOAD_IDENTITY_LABEL}: "true" is missing or changed', **where)
    if ctx.service_account and pod.spec.service_account_name != ctx.service_account:
        yield Finding(
            "ARL401",
            f"serviceAccountName {pod.spec.service_account_name!r} is not the team's {ctx.service_account!r}",
            **where,
        )


def _closest(key: str, candidates: dict[str, str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(key, candidates, n=1, cutoff=0.8)
    return found[0] if found else None
