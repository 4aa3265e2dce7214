"""``ariel platform validate ENV``: what ``render`` produces (in memory, or the files a previous
``render --out DIR`` wrote), checked before anything reaches the cluster.

1. The values: Helm's own check against the chart's ``values.schema.json``, plus the keys that schema
   lets through because it does not describe them (``executr:`` at the top level).
2. Every object, the chart's and the teams' (and the team repositories' pod templates), against the
   Kubernetes OpenAPI schemas of the environment's Kubernetes version, offline (kubernetes-validate).
3. Cross-checks between the values, the environment file, the registry and the team repositories:
   ``CROSS_CHECKS``, one small function each. Every finding names the file, the field and the fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from ariel_airflow.cluster.capacity import Amount, core_fit, node_of
from ariel_airflow.cluster.charts import find_chart
from ariel_airflow.cluster.environments import (
    CONNECTION_RESERVE,
    TAINT,
    Environment,
    NodePool,
    environment_file,
    load_environment,
)
from ariel_airflow.cluster.pools import POOLS_CONFIGMAP, pool_findings
from ariel_airflow.cluster.registry import TEAMS_DIR, RegistryEntry, load_registry
from ariel_airflow.cluster.render import (
    PLATFORM_DIR,
    RENDERED_CHART_DIR,
    RENDERED_TEAMS_DIR,
    VALUES_FILE,
    effective_values,
    load_chart,
    read_values,
    render_in_memory,
    schema_problems,
    values_files,
)
from ariel_airflow.errors import UserError
from ariel_airflow.localdev.progress import Progress
from ariel_airflow.profiles import load_profiles, parse_quantity
from ariel_airflow.team import ANSWERS_FILE, PROFILES_FILE, TeamRepo

# The workloads whose pods run all the time (Jobs run once, before the components start).
LONG_RUNNING = ("Deployment", "StatefulSet", "DaemonSet")
# The chart's default pod template for KubernetesExecutor tasks, inside its config ConfigMap.
POD_TEMPLATE_KEY = "pod_template_file.yaml"


@dataclass(frozen=True)
class Finding:
    """One problem: what is wrong, in which file and field, and what to change."""

    check: str
    message: str
    where: str  # the file
    field: str  # the field path inside it ("" for the whole file)
    fix: str


@dataclass
class Subject:
    """What is validated: ``render``'s result (in memory or read back from its files) and the
    platform's description it came from. Cross-checks read only this."""

    env: Environment
    registry: dict[str, RegistryEntry]
    platform_dir: Path
    values: dict[str, Any]  # the effective values
    chart_values: dict[str, Any]  # the same, coalesced with the chart's defaults (what the chart uses)
    values_sources: list[tuple[Path, dict[str, Any]]]  # the files the values came from, in order
    objects: dict[str, dict[str, Any]]  # every rendered object, by its file
    team_pod_templates: dict[str, tuple[TeamRepo, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    rendered: Path | None = None  # --rendered DIR

    def registry_file(self, team: str) -> str:
        return str(self.platform_dir / TEAMS_DIR / f"{team}.yaml")

    @property
    def environment_file(self) -> str:
        return str(environment_file(self.env.name, self.platform_dir))


CrossCheck = Callable[[Subject], Iterable[Finding]]


@dataclass
class Report:
    environment: str
    kubernetes_version: str  # the schemas' version the objects were checked against
    source: str  # "in memory" or the --rendered folder
    objects: int = 0
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "kubernetes_version": self.kubernetes_version,
            "source": self.source,
            "objects": self.objects,
            "ok": self.ok,
            "notes": self.notes,
            "findings": [asdict(finding) for finding in self.findings],
        }

    def text(self) -> str:
        lines = [f"note: {note}" for note in self.notes]
        for finding in self.findings:
            where = f"{finding.where}: {finding.field}" if finding.field else finding.where
            lines += [f"✘ [{finding.check}] {where}", f"    {finding.message}", f"    fix: {finding.fix}"]
        checked = (
            f"{self.objects} objects against Kubernetes {self.kubernetes_version}"
            if self.objects
            else "objects not checked"
        )
        if self.ok:
            lines.append(f"✔ {self.environment} ({self.source}): valid; values, {checked}, cross-checks")
        else:
            lines.append(f"✘ {self.environment} ({self.source}): {len(self.findings)} finding(s); {checked}")
        return "\n".join(lines)


# ---------------------------------------------------------------- the values


def dotted(parts: Iterable[str | int]) -> str:
    """A field path as a reader writes it: ``pgbouncer.maxClientConnn``, ``tolerations[0].key``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _source_of(parts: list[str | int], sources: list[tuple[Path, dict[str, Any]]]) -> Path | None:
    """The last values file that sets ``parts`` (the overlay wins, so it is the one to edit)."""
    for path, data in reversed(sources):
        node: Any = data
        for part in parts:
            found = isinstance(node, dict) and part in node
            if found or (isinstance(node, list) and isinstance(part, int) and part < len(node)):
                node = node[part]
            else:
                break
        else:
            return path
    return None


HELM_PROBLEM = re.compile(r"at '(?P<at>[^']*)': (?P<what>.*)")
ADDITIONAL = re.compile(r"additional propert(?:y|ies) (?P<keys>.+) not allowed")


def helm_schema_findings(
    chart: Any, subject_values: dict[str, Any], sources: list[tuple[Path, dict]]
) -> list[Finding]:
    """Helm's schema check of the merged values, each problem traced to the file that sets it."""
    schema = chart.schema or {}
    findings = []
    for problem in schema_problems(chart, subject_values):
        match = HELM_PROBLEM.match(problem)
        if not match:
            findings.append(Finding("values-schema", problem, _files(sources), "", _SCHEMA_FIX))
            continue
        parts: list[str | int] = [
            int(p) if p.isdigit() else p.replace("~1", "/").replace("~0", "~")
            for p in match["at"].strip("/").split("/")
            if p
        ]
        extra = ADDITIONAL.fullmatch(match["what"])
        for key in re.findall(r"'([^']*)'", extra["keys"]) if extra else [None]:
            path = [*parts, key] if key is not None else parts
            source = _source_of(path, sources)
            fix = _SCHEMA_FIX
            if key is not None:
                fix = _rename_fix(key, _schema_properties(schema, parts))
            findings.append(
                Finding(
                    "values-schema",
                    f"the chart's schema refuses it: {match['what']}",
                    str(source) if source else _computed(sources),
                    dotted(path),
                    fix,
                )
            )
    return findings


_SCHEMA_FIX = (
    "correct the value to what the chart's values.schema.json takes (its values.yaml shows every key)"
)


def _files(sources: list[tuple[Path, dict]]) -> str:
    return " + ".join(str(path) for path, _ in sources)


def _computed(sources: list[tuple[Path, dict]]) -> str:
    return (
        f"computed by `ariel platform render` from the environment and the registry, over {_files(sources)}"
    )


def _rename_fix(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean `{close[0]}`? " if close else ""
    return f"{hint}rename or remove `{key}` (the chart's values.yaml lists every key it reads)"


def _resolve(node: Any, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """A schema node as its alternatives: ``$ref`` followed, ``allOf``/``anyOf``/``oneOf`` flattened."""
    if not isinstance(node, dict):
        return []
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _resolve(target, schema)
    branches = [node]
    for combinator in ("allOf", "anyOf", "oneOf"):
        for branch in node.get(combinator, []):
            branches += _resolve(branch, schema)
    return branches


def _schema_at(schema: dict[str, Any], parts: list[str | int]) -> list[dict[str, Any]]:
    nodes = _resolve(schema, schema)
    for part in parts:
        children = []
        for node in nodes:
            if isinstance(part, int):
                children += _resolve(node.get("items"), schema)
            else:
                children += _resolve(node.get("properties", {}).get(part), schema)
                additional = node.get("additionalProperties")
                children += _resolve(additional, schema) if isinstance(additional, dict) else []
        nodes = children
    return nodes


def _schema_properties(schema: dict[str, Any], parts: list[str | int]) -> list[str]:
    return sorted({key for node in _schema_at(schema, parts) for key in node.get("properties", {})})


def _for_objects(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind is None or kind == "object" or (isinstance(kind, list) and "object" in kind)


def unknown_keys(schema: dict[str, Any], data: Any, parts: list[str | int] | None = None) -> Iterator[list]:
    """Paths in ``data`` where the schema lists the keys of an object but not this one, and still
    lets it through (no ``additionalProperties: false`` there, so Helm says nothing)."""
    parts = parts or []
    nodes = _schema_at(schema, parts)
    if isinstance(data, list):
        for index, item in enumerate(data):
            yield from unknown_keys(schema, item, [*parts, index])
        return
    if not isinstance(data, dict):
        return
    objects = [node for node in nodes if _for_objects(node)]
    described = [node for node in objects if "properties" in node or "patternProperties" in node]
    free = [n for n in objects if n not in described and n.get("additionalProperties") is not False]
    refused = any(node.get("additionalProperties") is False for node in objects)
    for key, value in data.items():
        known = any(key in node.get("properties", {}) for node in described) or any(
            re.search(pattern, str(key))
            for node in described
            for pattern in node.get("patternProperties", {})
        )
        open_ = free or any(isinstance(node.get("additionalProperties"), dict) for node in described)
        if known or open_:
            yield from unknown_keys(schema, value, [*parts, key])
        elif described and not refused:
            yield [*parts, key]


def unknown_key_findings(schema: dict[str, Any], sources: list[tuple[Path, dict[str, Any]]]) -> list[Finding]:
    findings = []
    for path, data in sources:
        for parts in unknown_keys(schema, data):
            findings.append(
                Finding(
                    "unknown-key",
                    f"the chart has no value `{dotted(parts)}`: its schema passes it, the chart ignores it",
                    str(path),
                    dotted(parts),
                    _rename_fix(str(parts[-1]), _schema_properties(schema, parts[:-1])),
                )
            )
    return findings


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


def _requests(pod: dict[str, Any]) -> tuple[Decimal, Decimal]:
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


def _on_pool(pod: dict[str, Any], pool: NodePool) -> bool:
    selector = pod.get("nodeSelector") or {}
    return bool(selector) and all(pool.labels.get(key) == value for key, value in selector.items())


def _cpu(millicores: int) -> str:
    return f"{millicores}m"


def _mib(memory: int) -> str:
    return f"{memory / 2**20:.0f}Mi"


def _amount(amount: Amount) -> str:
    return f"{_cpu(amount.cpu)} CPU, {_mib(amount.memory)} and {amount.pods} pods"


# ---------------------------------------------------------------- cross-checks


def team_quotas_fit_the_task_pool(subject: Subject) -> Iterator[Finding]:
    """A quota larger than the task pool promises a team room it never gets."""
    env = subject.env
    pool = env.task_pool
    free = node_of(pool, env).free
    room = Amount(free.cpu * pool.count, free.memory * pool.count, free.pods * pool.count)
    shown = {"requests.cpu": _cpu, "requests.memory": _mib, "pods": str}
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
    source = _source_of(["pgbouncer", "metadataPoolSize"], subject.values_sources)
    most = usable // replicas - result_backend
    yield Finding(
        "pgbouncer-connections",
        f"PgBouncer opens up to {replicas} replicas x ({metadata} metadataPoolSize + {result_backend} "
        f"resultBackendPoolSize) = {server} server connections; the database {database.host} takes "
        f"{database.max_connections} minus a reserve of {CONNECTION_RESERVE} = {usable}",
        str(source or _files(subject.values_sources)),
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
        if obj.get("kind") not in LONG_RUNNING or not _on_pool(pod, pool):
            continue
        cpu, memory = _requests(pod)
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
            f"{_amount(placed.requested)} in all; {pool.count} x {pool.vm_size} have {_amount(node.free)} "
            "free per node after the kubelet's reservations and the daemonsets",
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
        if selector and not any(_on_pool(pod, pool) for pool in pools):
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


CROSS_CHECKS: list[CrossCheck] = [
    team_quotas_fit_the_task_pool,
    pgbouncer_pools_fit_the_database,
    core_components_fit_the_core_pool,
    pod_templates_agree_with_the_registry,
    pods_use_labels_and_taints_of_the_pools,
    rendered_teams_match_the_registry,
    team_pools_fit_quotas_and_parallelism,
]


# ---------------------------------------------------------------- putting it together


def _read_object(path: Path) -> dict[str, Any]:
    try:
        obj = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML: {exc}", where=str(path), fix="render it again") from None
    if not isinstance(obj, dict):
        raise UserError("is not a Kubernetes object", where=str(path), fix="render it again")
    return obj


def read_rendered(folder: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The values and objects a previous ``render --out folder`` wrote."""
    values_path = folder / VALUES_FILE
    if not values_path.is_file():
        raise UserError(
            f"no {VALUES_FILE} here: not the output of `ariel platform render`",
            where=str(folder),
            fix="pass --rendered the folder `ariel platform render ENV --out DIR` wrote",
        )
    paths = sorted((folder / RENDERED_CHART_DIR).glob("*.yaml")) + sorted(
        (folder / RENDERED_TEAMS_DIR).glob("*/*.yaml")
    )
    return read_values(values_path), {str(path): _read_object(path) for path in paths}


def team_pod_templates(repo: TeamRepo) -> dict[str, dict[str, Any]]:
    return {str(path): _read_object(path) for path in sorted(repo.pod_templates.glob("*.yaml"))}


def validate(
    env_name: str,
    *,
    rendered: Path | None = None,
    team_repos: Iterable[Path] = (),
    chart: str | Path | None = None,
    platform_dir: Path = PLATFORM_DIR,
    progress: Progress | None = None,
) -> Report:
    """Validate ENV as ``render`` makes it (in memory), or the files in ``rendered``."""
    progress = progress or Progress()
    repos = [TeamRepo.load(path) for path in team_repos]
    env = load_environment(env_name, platform_dir)
    chart_path = find_chart(chart, env, environment_file(env_name, platform_dir), progress)
    registry = load_registry(platform_dir)
    loaded = load_chart(chart_path)
    version, note = schema_version(env.kubernetes_version)
    report = Report(env_name, version.rsplit(".", 1)[0], str(rendered) if rendered else "rendered in memory")
    if note:
        report.notes.append(note)
        progress.info(note)

    if rendered is not None:
        values, objects = read_rendered(rendered)
        sources = [(rendered / VALUES_FILE, values)]
    else:
        values = effective_values(env, registry, platform_dir)
        sources = [(path, read_values(path)) for path in values_files(env_name, platform_dir)]
        objects = {}

    with progress.step("checking the values against the chart's schema", "values checked"):
        report.findings += helm_schema_findings(loaded, values, sources)
        refused = bool(report.findings)
        report.findings += unknown_key_findings(loaded.schema or {}, sources)
    if refused:
        report.notes.append(
            "the objects were not checked: the chart renders nothing from values its schema refuses"
        )
        return report

    if rendered is None:
        result = render_in_memory(env_name, chart=chart_path, platform_dir=platform_dir, progress=progress)
        objects = {f"{name} (rendered in memory)": obj for name, obj in result.files().items()}
    subject = Subject(
        env=env,
        registry=registry,
        platform_dir=platform_dir,
        values=values,
        chart_values=loaded.merge_values(values),
        values_sources=sources,
        objects=objects,
        team_pod_templates={repo.team.name: (repo, team_pod_templates(repo)) for repo in repos},
        rendered=rendered,
    )
    checked = {**objects, **embedded_pod_templates(objects)}
    for _, templates in subject.team_pod_templates.values():
        checked.update(templates)
    report.objects = len(checked)
    with progress.step(
        f"checking {len(checked)} objects against Kubernetes {report.kubernetes_version}", "objects checked"
    ):
        report.findings += kubernetes_findings(checked, version)
    with progress.step(f"{len(CROSS_CHECKS)} cross-checks", "cross-checks done"):
        for check in CROSS_CHECKS:
            report.findings += check(subject)
    return report
