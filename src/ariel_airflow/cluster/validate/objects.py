"""Every object, the chart's and the teams' (and the team repositories' pod templates), against the
Kubernetes OpenAPI schemas of the environment's Kubernetes version, offline (kubernetes-validate),
and the pods in them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import yaml

from ariel_airflow.cluster.capacity import Amount
from ariel_airflow.cluster.environments import (
    NodePool,
)
from ariel_airflow.cluster.validate.findings import Finding
from ariel_airflow.cluster.validate.values import dotted
from ariel_airflow.profiles import parse_quantity

# The workloads whose pods run all the time (Jobs run once, before the components start).
LONG_RUNNING = ("Deployment", "StatefulSet", "DaemonSet")
# The chart's default pod template for KubernetesExecutor tasks, inside its config ConfigMap.
POD_TEMPLATE_KEY = "pod_template_file.yaml"


# ---------------------------------------------------------------- the Kubernetes schemas


def schema_version(wanted: str) -> tuple[str, str | None]:
    """The Kubernetes version of the bundled schemas closest to ``wanted``, and a note if not exact."""
    from kubernetes_validate.utils import all_versions
    from kubernetes_validate.version import __version__

    def minor(version: str) -> int:
        return int(version.split(".")[1])

    bundled = sorted(set(all_versions()), key=minor)
    nearest = min(bundled, key=lambda version: (abs(minor(version) - minor(wanted)), minor(version)))
    if minor(nearest) == minor(wanted):
        return nearest, None
    return nearest, (
        f"kubernetes-validate {__version__} has no schemas for Kubernetes {wanted}; "
        f"checked against the nearest it has, {nearest.rsplit('.', 1)[0]}"
    )


def kubernetes_findings(objects: dict[str, dict[str, Any]], version: str) -> list[Finding]:
    """Each object against the strict OpenAPI schema (unknown fields fail, as the API server's
    field validation and kubectl's do)."""
    import kubernetes_validate

    findings = []
    label = version.rsplit(".", 1)[0]
    for where, obj in objects.items():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            unexpected = re.findall(r"'([^']+)' (?:was|were) unexpected", exc.message)
            parts = [*exc.path, *unexpected[:1]]
            kind = obj.get("kind", "?")
            findings.append(
                Finding(
                    "kubernetes-schema",
                    f"{kind} {obj.get('metadata', {}).get('name', '')} is not valid for Kubernetes {label}: "
                    f"{exc.message}",
                    where,
                    dotted(parts),
                    f"correct or remove the field (`kubectl explain {kind.lower()}` lists the fields); "
                    "for the chart's objects, change the value that sets it in platform/helm",
                )
            )
        except (kubernetes_validate.SchemaNotFoundError, KeyError, TypeError) as exc:
            findings.append(
                Finding(
                    "kubernetes-schema",
                    f"Kubernetes {label} has no schema for it ({getattr(exc, 'message', exc)})",
                    where,
                    "apiVersion",
                    f"use an apiVersion and kind that Kubernetes {label} serves",
                )
            )
    return findings


# ---------------------------------------------------------------- pods in the objects


def pod_specs(
    objects: dict[str, dict[str, Any]],
) -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(file, field path of the pod spec, the object, the pod spec) of every pod the objects run."""
    for where, obj in objects.items():
        kind = obj.get("kind")
        spec = obj.get("spec") or {}
        if kind == "Pod":
            yield where, "spec", obj, spec
        elif kind == "CronJob":
            yield (
                where,
                "spec.jobTemplate.spec.template.spec",
                obj,
                spec["jobTemplate"]["spec"]["template"]["spec"],
            )
        elif isinstance(spec.get("template"), dict):
            yield where, "spec.template.spec", obj, spec["template"].get("spec") or {}


def embedded_pod_templates(objects: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The chart's default task pod template (a file inside its config ConfigMap), as a Pod."""
    found = {}
    for where, obj in objects.items():
        if obj.get("kind") == "ConfigMap" and POD_TEMPLATE_KEY in (obj.get("data") or {}):
            pod = yaml.safe_load(obj["data"][POD_TEMPLATE_KEY])
            if isinstance(pod, dict):
                found[f"{where} (data.{POD_TEMPLATE_KEY})"] = pod
    return found


def pod_requests(pod: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """CPU (cores) and memory (bytes) the scheduler reserves for the pod: its containers' requests,
    or its largest init container's if that is more."""

    def total(containers: list[dict[str, Any]], resource: str) -> Decimal:
        return sum(
            (parse_quantity(c.get("resources", {}).get("requests", {}).get(resource, 0)) for c in containers),
            Decimal(0),
        )

    def largest_init(resource: str) -> Decimal:
        return max((total([c], resource) for c in pod.get("initContainers") or []), default=Decimal(0))

    containers = pod.get("containers") or []
    return (
        max(total(containers, "cpu"), largest_init("cpu")),
        max(total(containers, "memory"), largest_init("memory")),
    )


def on_pool(pod: dict[str, Any], pool: NodePool) -> bool:
    selector = pod.get("nodeSelector") or {}
    return bool(selector) and all(pool.labels.get(key) == value for key, value in selector.items())


def show_cpu(millicores: int) -> str:
    return f"{millicores}m"


def show_mib(memory: int) -> str:
    return f"{memory / 2**20:.0f}Mi"


def show_amount(amount: Amount) -> str:
    return f"{show_cpu(amount.cpu)} CPU, {show_mib(amount.memory)} and {amount.pods} pods"
