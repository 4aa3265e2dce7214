"""The cluster DNS add-on: Kubernetes' own CoreDNS manifest from the pinned release's source
(``cluster/addons/dns/coredns/coredns.yaml.base``), filled in as its Makefile would, running the
CoreDNS built from ``tools/coredns`` as a local image."""

from __future__ import annotations

from typing import Any

import yaml

from ariel_airflow.localkube.build import kubernetes_source
from ariel_airflow.localkube.components import LOCAL_REGISTRY
from ariel_airflow.localkube.layout import CLUSTER_DOMAIN, DNS_SERVICE_IP
from ariel_airflow.localkube.parts import coredns_version

MANIFEST = "cluster/addons/dns/coredns/coredns.yaml.base"
DNS_MEMORY_LIMIT = "170Mi"  # the value Kubernetes' own cluster scripts use


def coredns_image() -> str:
    return f"{LOCAL_REGISTRY}/coredns:{coredns_version()}"


def coredns_objects(rewrites: dict[str, str]) -> list[dict[str, Any]]:
    """The add-on's objects; the DNS answers each name of ``rewrites`` as the name it maps to."""
    text = (kubernetes_source() / MANIFEST).read_text()
    for placeholder, value in {
        "__DNS__DOMAIN__": CLUSTER_DOMAIN,
        "__DNS__SERVER__": DNS_SERVICE_IP,
        "__DNS__MEMORY__LIMIT__": DNS_MEMORY_LIMIT,
    }.items():
        text = text.replace(placeholder, value)
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            lines = "".join(f"    rewrite name exact {name} {target}\n" for name, target in rewrites.items())
            corefile = obj["data"]["Corefile"]
            obj["data"]["Corefile"] = corefile.replace(".:53 {\n", ".:53 {\n" + lines, 1)
        if obj["kind"] == "Deployment":
            pod = obj["spec"]["template"]["spec"]
            container = pod["containers"][0]
            container["image"] = coredns_image()
            container["imagePullPolicy"] = "Never"  # built here; no registry to pull from
            # Every node of the local cluster is a tainted node pool: DNS runs on whichever has room.
            pod["tolerations"] = [{"operator": "Exists", "effect": "NoSchedule"}]
    return objects
