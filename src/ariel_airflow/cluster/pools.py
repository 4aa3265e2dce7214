"""One Airflow pool per team, sized from the team's quota: a full team waits in Airflow, not in a 403.

Why. With the KubernetesExecutor every running task is a pod in its team's namespace, and two
things go wrong without per-team pools:

- ``[core] parallelism`` is the only limit, shared by every team: one team's poke sensors can take
  every slot, and the other teams' tasks are never scheduled.
- A pod the namespace's ResourceQuota refuses (403 "exceeded quota") fails its task at once: the
  executor re-queues it only while ``[kubernetes_executor] task_publish_max_retries`` allows, and
  that is 0 by default (``KubernetesExecutor._handle_pod_publish_error``, docs/platform.md).

So each team gets a pool (``Team.pool``) whose slots are what its quota holds of the largest profile
the team may use: min(pods, requests / the profile's requests, limits / the profile's limits, for
CPU and memory). The largest, because any task may use it: then even a pool full of the largest
tasks fits the quota, and the next task waits in the pool. The cluster's ``task_policy`` puts every
task of the team into that pool; the pools together must fit the schedulers' ``parallelism``, or a
team would wait for slots it was promised.

Deploy. ``pools.json`` (``airflow pools import`` format) goes into a ConfigMap the chart creates
(``extraConfigMaps``, a pre-install/pre-upgrade hook), and the chart's own migration job (a
post-install/post-upgrade hook) imports it after ``airflow db migrate``: every ``helm upgrade``
sets each pool's slots to the registry's. Pure Python: no Airflow, no cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ariel_airflow.errors import UserError
from ariel_airflow.profiles import parse_quantity
from ariel_airflow.team import PROFILES_FILE

if TYPE_CHECKING:
    from ariel_airflow.cluster.environments import Environment
    from ariel_airflow.cluster.registry import RegistryEntry
    from ariel_airflow.profiles import ResourceProfile

POOLS_FILE = "pools.json"
# The ConfigMap holding pools.json, and where the migration job mounts it (both templated by the chart).
POOLS_CONFIGMAP = "{{ .Release.Name }}-pools"
POOLS_MOUNT = "/opt/airflow/pools"
# What the chart and Airflow use when the values leave them out.
CHART_SCHEDULER_REPLICAS = 1
AIRFLOW_PARALLELISM = 32
# The quota's resources a pod counts against, as (quota section, resource).
QUOTA_RESOURCES = (("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory"))


@dataclass(frozen=True)
class TeamPool:
    """A team's pool, and how its quota sized it."""

    team: str
    name: str
    slots: int
    largest_profile: str
    by_resource: dict[str, int]  # slots each of the quota's resources allows ("pods", "requests.cpu", ...)

    @property
    def binds(self) -> list[str]:
        """The quota's resources that size the pool."""
        return [resource for resource, slots in self.by_resource.items() if slots == self.slots]

    @property
    def description(self) -> str:
        return (
            f"Team {self.team}: {self.slots} tasks of its largest profile ({self.largest_profile}) fit its "
            "quota. Set by `ariel platform render` from the team registry; edits are reset on deploy."
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "binds": self.binds}


def allowed_profiles(
    entry: RegistryEntry, catalog: Mapping[str, ResourceProfile]
) -> dict[str, ResourceProfile]:
    """The profiles the team may use: the entry's ``profiles``, else the whole catalog."""
    names = entry.profiles if entry.profiles is not None else list(catalog)
    unknown = [name for name in names if name not in catalog]
    if unknown:
        raise UserError(
            f"team {entry.name!r} names the resource profile {unknown[0]!r}, which the catalog lacks",
            where=f"teams/{entry.name}.yaml: profiles",
            fix=f"use profiles of {PROFILES_FILE}: {', '.join(catalog)}",
        )
    return {name: catalog[name] for name in names}


def largest_profile(profiles: Mapping[str, ResourceProfile]) -> str:
    """The profile that asks most of a quota: the most CPU request, then memory (ties: the first)."""

    def asks(name: str) -> tuple[Decimal, Decimal]:
        return _amount(profiles[name], "requests", "cpu"), _amount(profiles[name], "requests", "memory")

    return max(profiles, key=asks)


def team_pool(entry: RegistryEntry, catalog: Mapping[str, ResourceProfile]) -> TeamPool:
    """The team's pool: as many slots as its quota holds tasks of each profile it may use."""
    profiles = allowed_profiles(entry, catalog)
    by_resource = {"pods": entry.quota.pods}
    for section, resource in QUOTA_RESOURCES:
        quota = parse_quantity(getattr(getattr(entry.quota, section), resource))
        # Per profile, not only the largest by CPU: a profile heavy in memory binds memory.
        by_resource[f"{section}.{resource}"] = min(
            int(quota // _amount(profile, section, resource)) for profile in profiles.values()
        )
    return TeamPool(
        team=entry.name,
        name=entry.team.pool,
        slots=min(by_resource.values()),
        largest_profile=largest_profile(profiles),
        by_resource=by_resource,
    )


def team_pools(
    registry: Mapping[str, RegistryEntry], catalog: Mapping[str, ResourceProfile]
) -> list[TeamPool]:
    return [team_pool(entry, catalog) for entry in registry.values()]


def pools_import(pools: list[TeamPool]) -> dict[str, dict[str, Any]]:
    """The pools in ``airflow pools import`` format. Deferred tasks hold no pod, so no slot either."""
    return {
        pool.name: {"slots": pool.slots, "description": pool.description, "include_deferred": False}
        for pool in pools
    }


def pools_json(pools: list[TeamPool]) -> str:
    return json.dumps(pools_import(pools), indent=2, sort_keys=True) + "\n"


def chart_values(pools: list[TeamPool]) -> dict[str, Any]:
    """Chart values that create the pools on every install and upgrade, with the chart's own hooks:
    a ConfigMap (``extraConfigMaps``), imported by the migration job after it migrates."""
    import_command = f"airflow db migrate && exec airflow pools import {POOLS_MOUNT}/{POOLS_FILE}"
    return {
        "extraConfigMaps": {
            POOLS_CONFIGMAP: {"data": f"{POOLS_FILE}: |\n" + _indent(pools_json(pools), "  ")},
        },
        "migrateDatabaseJob": {
            "args": ["bash", "-c", import_command],
            "extraVolumes": [{"name": "pools", "configMap": {"name": POOLS_CONFIGMAP}}],
            "extraVolumeMounts": [{"name": "pools", "mountPath": POOLS_MOUNT, "readOnly": True}],
        },
    }


def deployed_pools(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The pools the values create on deploy (``chart_values``), by name; {} when they create none."""
    configmap = (values.get("extraConfigMaps") or {}).get(POOLS_CONFIGMAP) or {}
    import yaml

    data = yaml.safe_load(configmap.get("data") or "") or {}
    return json.loads(data.get(POOLS_FILE) or "{}")


def scheduler_slots(values: Mapping[str, Any]) -> tuple[int, int, int]:
    """(parallelism, scheduler replicas, their product): the tasks all schedulers run at once."""
    core = (values.get("config") or {}).get("core") or {}
    parallelism = int(core.get("parallelism", AIRFLOW_PARALLELISM))
    replicas = int((values.get("scheduler") or {}).get("replicas", CHART_SCHEDULER_REPLICAS))
    return parallelism, replicas, parallelism * replicas


def pool_findings(
    env: Environment,
    registry: Mapping[str, RegistryEntry],
    values: Mapping[str, Any],
    catalog: Mapping[str, ResourceProfile] | None = None,
) -> list[str]:
    """What is wrong with the pools the effective ``values`` deploy, each saying what to change:
    a team without its pool, a pool its quota cannot hold, pools over the schedulers' parallelism.

    ``catalog``: the resource profiles (default: the kit's ``platform/resource_profiles.yaml``).
    """
    if catalog is None:
        from ariel_airflow.cluster.render import PLATFORM_DIR
        from ariel_airflow.profiles import load_profiles

        catalog = load_profiles(PLATFORM_DIR / PROFILES_FILE)
    overlay = f"platform/helm/values-{env.name}.yaml"
    deployed = deployed_pools(values)
    findings = []
    total = 0
    for entry in registry.values():
        pool = entry.team.pool
        if pool not in deployed:
            findings.append(
                f"team {entry.name!r} has no pool {pool!r} in the values: its tasks would never be "
                "scheduled; render the values with `ariel platform render` (it adds every team's pool)"
            )
            continue
        slots = int(deployed[pool]["slots"])
        total += slots
        profiles = allowed_profiles(entry, catalog)
        largest = largest_profile(profiles)
        if slots < 1:
            findings.append(
                f"pool {pool!r} has no slot: the quota of team {entry.name!r} cannot hold one task of "
                f"its profile {largest!r}; raise the quota in teams/{entry.name}.yaml or narrow its profiles"
            )
        for problem in _over_quota(entry, slots, profiles):
            findings.append(
                f"pool {pool!r} ({slots} slots) does not fit the quota of team {entry.name!r}: {problem}; "
                f"render again, or raise the quota in teams/{entry.name}.yaml"
            )
    parallelism, replicas, capacity = scheduler_slots(values)
    if total > capacity:
        findings.append(
            f"the teams' pools hold {total} slots, more than the schedulers run at once ({parallelism} "
            f"parallelism x {replicas} scheduler replicas = {capacity}): a team would wait for slots it "
            f"was promised; raise config.core.parallelism or scheduler.replicas in {overlay}, or lower "
            "the teams' quotas"
        )
    return findings


def _over_quota(entry: RegistryEntry, slots: int, profiles: Mapping[str, ResourceProfile]) -> list[str]:
    """Each resource that ``slots`` tasks of one of the team's profiles would take beyond its quota."""
    problems = [f"{slots} pods are more than pods: {entry.quota.pods}"] if slots > entry.quota.pods else []
    for section, resource in QUOTA_RESOURCES:
        written = getattr(getattr(entry.quota, section), resource)
        for name, profile in profiles.items():
            if slots * _amount(profile, section, resource) > parse_quantity(written):
                each = getattr(getattr(profile, section), resource)
                problems.append(f"{slots} x {name} ({each} each) exceed {section}.{resource}: {written}")
    return problems


def _amount(profile: ResourceProfile, section: str, resource: str) -> Decimal:
    return parse_quantity(getattr(getattr(profile, section), resource))


def _indent(text: str, prefix: str) -> str:
    return "".join(prefix + line for line in text.splitlines(keepends=True))


def pools_report(
    env: Environment,
    registry: Mapping[str, RegistryEntry],
    values: Mapping[str, Any],
    catalog: Mapping[str, ResourceProfile],
) -> dict[str, Any]:
    """The teams' pools against the schedulers' slots, for ``ariel capacity`` (table and --json)."""
    pools = team_pools(registry, catalog)
    parallelism, replicas, slots = scheduler_slots(values)
    return {
        "parallelism": parallelism,
        "scheduler_replicas": replicas,
        "scheduler_slots": slots,
        "pool_slots": sum(pool.slots for pool in pools),
        "teams": [pool.as_dict() for pool in pools],
        "findings": pool_findings(env, registry, values, catalog),
    }
