"""Cross-checks between the values, the environment file, the registry and the team repositories:
``CROSS_CHECKS``, one small function each, each finding naming the file, the field and the fix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ariel_airflow.cluster.capacity import Amount, core_fit, node_of
from ariel_airflow.cluster.environments import (
    CONNECTION_RESERVE,
    TAINT,
)
from ariel_airflow.cluster.pools import POOLS_CONFIGMAP, pool_findings
from ariel_airflow.cluster.render import (
    RENDERED_TEAMS_DIR,
    VALUES_FILE,
)
from ariel_airflow.cluster.validate.findings import CrossCheck, Finding, Subject
from ariel_airflow.cluster.validate.objects import (
    LONG_RUNNING,
    embedded_pod_templates,
    on_pool,
    pod_requests,
    pod_specs,
    show_amount,
    show_cpu,
    show_mib,
)
from ariel_airflow.cluster.validate.values import source_files, source_of
from ariel_airflow.profiles import load_profiles
from ariel_airflow.team import ANSWERS_FILE, PROFILES_FILE

# ---------------------------------------------------------------- cross-checks


def team_quotas_fit_the_task_pool(subject: Subject) -> Iterator[Finding]:
    """A quota larger than the task pool promises a team room it never gets."""
    env = subject.env
    pool = env.task_pool
    free = node_of(pool, env).free
    room = Amount(free.cpu * pool.count, free.memory * pool.count, free.pods * pool.count)
    shown = {"requests.cpu": show_cpu, "requests.memory": show_mib, "pods": str}
    for name, entry in subject.registry.items():
        quota = entry.quota
        wanted = Amount.of(quota.requests.cpu, quota.requests.memory, quota.pods)
        for key, asked, has in (
            ("requests.cpu", wanted.cpu, room.cpu),
            ("requests.memory", wanted.memory, room.memory),
            ("pods", wanted.pods, room.pods),
        ):
            if asked > has:
                show = shown[key]
                yield Finding(
                    "team-quota",
                    f"team {name}'s quota {key} {show(asked)} is more than the task pool {pool.name!r} holds "
                    f"for task pods ({show(has)} on {pool.count} x {pool.vm_size}, after the kubelet's "
                    "reservations and the daemonsets)",
                    subject.registry_file(name),
                    f"quota.{key}",
                    f"lower quota.{key} to at most {show(has)}, or add nodes to the node pool "
                    f"{pool.name!r} in {subject.environment_file}",
                )


def pgbouncer_pools_fit_the_database(subject: Subject) -> Iterator[Finding]:
    """Every PgBouncer replica opens its pools' server connections; together they must leave the
    database's reserve free, or Airflow gets "too many clients" under load."""
    pgbouncer = subject.chart_values.get("pgbouncer") or {}
    if not pgbouncer.get("enabled"):
        return
    replicas = int(pgbouncer.get("replicas", 1))
    metadata = int(pgbouncer.get("metadataPoolSize", 0))
    result_backend = int(pgbouncer.get("resultBackendPoolSize", 0))
    server = replicas * (metadata + result_backend)
    database = subject.env.database
    usable = database.usable_connections
    if server <= usable:
        return
    source = source_of(["pgbouncer", "metadataPoolSize"], subject.values_sources)
    most = usable // replicas - result_backend
    yield Finding(
        "pgbouncer-connections",
        f"PgBouncer opens up to {replicas} replicas x ({metadata} metadataPoolSize + {result_backend} "
        f"resultBackendPoolSize) = {server} server connections; the database {database.host} takes "
        f"{database.max_connections} minus a reserve of {CONNECTION_RESERVE} = {usable}",
        str(source or source_files(subject.values_sources)),
        "pgbouncer.metadataPoolSize",
        f"lower pgbouncer.metadataPoolSize to at most {max(most, 0)} (or pgbouncer.replicas), or raise "
        f"database.max_connections in {subject.environment_file} with a larger database tier",
    )


def core_components_fit_the_core_pool(subject: Subject) -> Iterator[Finding]:
    """The long-running pods on the core pool, placed by their requests as the scheduler would."""
    env = subject.env
    pool = env.core_pool
    pods = []
    files = {}
    for where, spec_path, obj, pod in pod_specs(subject.objects):
        if obj.get("kind") not in LONG_RUNNING or not on_pool(pod, pool):
            continue
        cpu, memory = pod_requests(pod)
        for replica in range(int(obj["spec"].get("replicas", 1))):
            name = f"{obj['metadata']['name']}#{replica + 1}"
            pods.append((name, cpu, memory))
            files[name] = (where, spec_path)
    node = node_of(pool, env)
    placed = core_fit(pods, node)
    for name in placed.unplaced:
        where, spec_path = files[name]
        yield Finding(
            "core-pool",
            f"{name} finds no room on the core pool {pool.name!r}: its pods request "
            f"{show_amount(placed.requested)} in all; {pool.count} x {pool.vm_size} have "
            f"{show_amount(node.free)} free per node after the kubelet's reservations and the daemonsets",
            where,
            f"{spec_path}.containers[*].resources.requests",
            "lower the component's resources (or replicas) in platform/helm/values*.yaml, or give the "
            f"node pool {pool.name!r} more nodes or a larger vm_size in {subject.environment_file}",
        )


def pod_templates_agree_with_the_registry(subject: Subject) -> Iterator[Finding]:
    """A team's task pods run where the registry gave the team room: its namespace (quota, limits),
    its service account (workload identity) and the task pool (node selector and toleration)."""
    env = subject.env
    pool = env.task_pool
    for team, (repo, templates) in subject.team_pod_templates.items():
        entry = subject.registry.get(team)
        if entry is None:
            yield Finding(
                "team-pod-template",
                f"team {team!r} is not in the registry of {subject.platform_dir}",
                str(repo.root / ANSWERS_FILE),
                "team_name",
                f"register it: run `ariel platform registry-entry` in {repo.root} and save its output as "
                f"{subject.registry_file(team)}",
            )
            continue
        base = str(repo.base_pod_template(env.name))
        if base not in templates:
            yield Finding(
                "team-pod-template",
                f"no base pod template for {env.name}: the executor would run the team's tasks with the "
                "chart's default pod, outside the team's namespace",
                base,
                "",
                f"answer keyvault_url_{env.name} with `copier update --trust` in {repo.root}: it writes it",
            )
        expected = {
            "metadata.namespace": str(entry.team.namespace),
            "spec.serviceAccountName": entry.team.service_account,
        }
        why = {
            "metadata.namespace": f"the registry's namespace of team {team} ({subject.registry_file(team)})",
            "spec.serviceAccountName": f"team {team}'s task service account, rendered by the platform",
        }
        for where, pod in templates.items():
            is_base = where == base
            for path, value in expected.items():
                head, _, key = path.partition(".")
                actual = (pod.get(head) or {}).get(key)
                if actual != value and (is_base or actual is not None):
                    yield Finding(
                        "team-pod-template",
                        f"{path} is {actual!r}, not {value!r} ({why[path]})",
                        where,
                        path,
                        f"set {path}: {value} (or run `copier update` with the registry's answers)",
                    )
            if not is_base:
                continue
            spec = pod.get("spec") or {}
            selector = spec.get("nodeSelector") or {}
            missing = {k: v for k, v in pool.labels.items() if selector.get(k) != v}
            if missing:
                yield Finding(
                    "team-pod-template",
                    f"spec.nodeSelector {selector} misses the task pool {pool.name!r}: {pool.labels}",
                    where,
                    "spec.nodeSelector",
                    f"set spec.nodeSelector to {pool.labels} ({subject.environment_file})",
                )
            for taint in pool.taints:
                if not any(_tolerates(toleration, taint) for toleration in spec.get("tolerations") or []):
                    yield Finding(
                        "team-pod-template",
                        f"spec.tolerations lack the task pool's taint {taint}: the pods stay Pending",
                        where,
                        "spec.tolerations",
                        f"add {_toleration(taint)} to spec.tolerations",
                    )


def pods_use_labels_and_taints_of_the_pools(subject: Subject) -> Iterator[Finding]:
    """A node selector no pool matches leaves pods Pending; a toleration of a taint no pool has is
    a typo that leaves them off the pool they were meant for."""
    env = subject.env
    pools = env.node_pools
    labels = "; ".join(f"{pool.name}: {pool.labels}" for pool in pools)
    taints = sorted({taint for pool in pools for taint in pool.taints})
    team_templates = {
        where: pod for _, templates in subject.team_pod_templates.values() for where, pod in templates.items()
    }
    objects = {**subject.objects, **embedded_pod_templates(subject.objects), **team_templates}
    for where, spec_path, _obj, pod in pod_specs(objects):
        selector = pod.get("nodeSelector") or {}
        if selector and not any(on_pool(pod, pool) for pool in pools):
            yield Finding(
                "node-pools",
                f"nodeSelector {selector} matches no node pool of {env.name} ({labels}): pods stay Pending",
                where,
                f"{spec_path}.nodeSelector",
                f"select the labels of a pool in {subject.environment_file}, or add the label to a pool",
            )
        for index, toleration in enumerate(pod.get("tolerations") or []):
            if not toleration.get("key"):
                continue  # tolerates every taint: nothing to match
            if not any(_tolerates(toleration, taint) for taint in taints):
                yield Finding(
                    "node-pools",
                    f"tolerates {_show(toleration)}, a taint no pool of {env.name} has: {', '.join(taints)}",
                    where,
                    f"{spec_path}.tolerations[{index}]",
                    f"tolerate the taint of the pool it runs on ({subject.environment_file}), or remove it",
                )


def rendered_teams_match_the_registry(subject: Subject) -> Iterator[Finding]:
    """Committed files older than the registry: a team added or removed since the last render."""
    if subject.rendered is None:
        return
    folder = subject.rendered / RENDERED_TEAMS_DIR
    rendered = {path.name for path in folder.iterdir() if path.is_dir()} if folder.is_dir() else set()
    registered = set(subject.registry)
    for team in sorted(rendered ^ registered):
        state = (
            "is registered but was not rendered"
            if team in registered
            else "was rendered but is not registered"
        )
        yield Finding(
            "stale-render",
            f"team {team!r} {state}",
            str(folder),
            team,
            f"render again: ariel platform render {subject.env.name} --out {subject.rendered}",
        )


def _tolerates(toleration: dict[str, Any], taint: str) -> bool:
    match = TAINT.fullmatch(taint)
    assert match  # taints are checked when the environment is loaded
    if toleration.get("key") != match["key"]:
        return False
    if toleration.get("effect") and toleration["effect"] != match["effect"]:
        return False
    return toleration.get("operator", "Equal") == "Exists" or toleration.get("value") == (
        match["value"] or ""
    )


def _toleration(taint: str) -> str:
    match = TAINT.fullmatch(taint)
    assert match
    return f"{{key: {match['key']}, operator: Equal, value: {match['value']}, effect: {match['effect']}}}"


def _show(toleration: dict[str, Any]) -> str:
    value = f"={toleration['value']}" if toleration.get("value") else ""
    return f"{toleration.get('key')}{value}:{toleration.get('effect', '*')}"


# More checks join this list (each takes the Subject and yields Findings).
def team_pools_fit_quotas_and_parallelism(subject: Subject) -> Iterator[Finding]:
    """Each team's Airflow pool fits its quota, and all pools fit the schedulers' parallelism, so a
    busy team waits in Airflow, never in a 403 "exceeded quota" (cluster/pools.py)."""
    catalog = load_profiles(subject.platform_dir / PROFILES_FILE)
    where = (
        str(subject.rendered / VALUES_FILE)
        if subject.rendered
        else "the effective values (rendered in memory)"
    )
    for text in pool_findings(subject.env, subject.registry, subject.values, catalog):
        message, _, fix = text.rpartition("; ")  # pool_findings writes "what is wrong; what to change"
        yield Finding("team-pools", message or text, where, f"extraConfigMaps.{POOLS_CONFIGMAP}", fix)


HOSTNAME = "kubernetes.io/hostname"


def replicated_components_survive_a_node(subject: Subject) -> Iterator[Finding]:
    """In a highly available environment, a component with two replicas or more keeps one through
    the loss or drain of a node: a PodDisruptionBudget, replicas spread over nodes, and a pool with
    at least two nodes for them."""
    env = subject.env
    if not env.high_availability:
        return
    budgets = [
        obj["spec"].get("selector", {}).get("matchLabels", {})
        for obj in subject.objects.values()
        if obj.get("kind") == "PodDisruptionBudget"
    ]
    for where, spec_path, obj, pod in pod_specs(subject.objects):
        replicas = int(obj.get("spec", {}).get("replicas", 1))
        if obj.get("kind") not in LONG_RUNNING or replicas < 2:
            continue
        name = obj["metadata"]["name"]
        labels = obj["spec"]["template"]["metadata"].get("labels", {})
        component = labels.get("component", name)
        values = f"the {component} section of platform/helm/values*.yaml"
        if not any(selector and selector.items() <= labels.items() for selector in budgets):
            yield Finding(
                "high-availability",
                f"{name} runs {replicas} replicas and no PodDisruptionBudget covers them: a node drain "
                "may evict every replica at once",
                where,
                "podDisruptionBudget",
                f"set podDisruptionBudget: {{enabled: true, config: {{maxUnavailable: 1}}}} in {values}",
            )
        spread = [
            c
            for c in pod.get("topologySpreadConstraints") or []
            if c.get("topologyKey") == HOSTNAME and c.get("whenUnsatisfiable") == "DoNotSchedule"
        ]
        if not spread:
            yield Finding(
                "high-availability",
                f"{name} runs {replicas} replicas that may all land on one node: no topology spread "
                f"over {HOSTNAME} with whenUnsatisfiable DoNotSchedule",
                where,
                f"{spec_path}.topologySpreadConstraints",
                f"set topologySpreadConstraints (maxSkew 1, topologyKey {HOSTNAME}, whenUnsatisfiable "
                f"DoNotSchedule, its pods' labels) in {values}",
            )
        for pool in env.node_pools:
            if on_pool(pod, pool) and pool.count < 2:
                yield Finding(
                    "high-availability",
                    f"{name} runs {replicas} replicas on node pool {pool.name!r}, which has one node",
                    str(subject.environment_file),
                    "node_pools",
                    f"set count: 2 or more on node pool {pool.name!r}",
                )


CROSS_CHECKS: list[CrossCheck] = [
    team_quotas_fit_the_task_pool,
    pgbouncer_pools_fit_the_database,
    core_components_fit_the_core_pool,
    pod_templates_agree_with_the_registry,
    pods_use_labels_and_taints_of_the_pools,
    rendered_teams_match_the_registry,
    team_pools_fit_quotas_and_parallelism,
    replicated_components_survive_a_node,
]
