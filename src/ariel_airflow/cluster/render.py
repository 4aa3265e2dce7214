"""``ariel platform render ENV``: the official Airflow chart with the platform's values, and each team's
namespace objects, written as files for review, GitOps diffs and ``helm upgrade --install -f``.

The chart is rendered in-process by Helm's own Go SDK (``helm-python-sdk``), no ``helm`` binary.
The values are ``platform/helm/values.yaml`` + ``values-<env>.yaml`` + what is computed from the
environment file and the team registry (image, database host, Key Vault, one DAG bundle and one
namespace per team), so each fact keeps its one home.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ariel_airflow.cluster import platform_secrets, pools, task_logs, task_pods
from ariel_airflow.cluster.charts import find_chart
from ariel_airflow.cluster.dag_processors import per_team
from ariel_airflow.cluster.environments import Environment, environment_file, load_environment
from ariel_airflow.cluster.registry import RegistryEntry, load_registry
from ariel_airflow.cluster.release import write_release
from ariel_airflow.errors import UserError
from ariel_airflow.limits import MAX_LIMIT_REQUEST_RATIO
from ariel_airflow.localdev.progress import Progress
from ariel_airflow.pins import airflow_pin
from ariel_airflow.policies import local_settings_source
from ariel_airflow.profiles import ResourceProfile, load_profiles, parse_quantity
from ariel_airflow.team import PROFILES_FILE, TEAM_LABEL
from ariel_airflow.template import KIT_ROOT

PLATFORM_DIR = KIT_ROOT / "platform"
HELM_DIR = "helm"
# What `render --out DIR` writes under DIR (and `validate --rendered DIR` reads).
VALUES_FILE = "values.yaml"
RENDERED_CHART_DIR = "chart"
RENDERED_TEAMS_DIR = "teams"
# The Helm release and the namespace of Airflow's own components (the teams' are in the registry).
RELEASE = "airflow"
NAMESPACE = "airflow"
GIT_BUNDLE = "airflow.providers.git.bundles.git.GitDagBundle"
# People sign in with Entra ID through FAB's OAuth (docs/platform.md says why FAB).
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
CONFIG_DIR = "config"
WEBSERVER_CONFIG = "webserver_config.py"
WORKLOAD_IDENTITY_CLIENT_ID = "azure.workload.identity/client-id"
# The chart's components that run as the platform's managed identity (workload identity);
# PgBouncer's for its token-refresher sidecar (ariel_airflow.pgbouncer_token).
PLATFORM_IDENTITY_COMPONENTS = ("scheduler", "apiServer", "dagProcessor", "triggerer", "pgbouncer")
# The chart's Roles for launching task pods and reading their logs while they run, granted in every
# team namespace to the component that needs each (nobody else: not the chart's airflow-worker).
POD_LAUNCHER_ROLE = "pod-launcher-role"
POD_LOG_READER_ROLE = "pod-log-reader-role"
TEAM_NAMESPACE_ROLES = {POD_LAUNCHER_ROLE: "scheduler", POD_LOG_READER_ROLE: "api-server"}  # component labels
POD_SECURITY_LABEL = "pod-security.kubernetes.io/enforce"
# Task pods run in the team namespaces: the platform's Services by their full names (AKS's domain).
CLUSTER_DOMAIN = "cluster.local"


@dataclass
class Rendered:
    """What ``render`` wrote under ``out``."""

    out: Path
    values: Path
    pools: Path
    chart_objects: list[Path] = field(default_factory=list)
    team_objects: dict[str, list[Path]] = field(default_factory=dict)
    release: Path | None = None  # the umbrella chart `helm upgrade --install` takes
    image_build: str = ""  # the `docker build` line of the platform image's context in out/image


def load_chart(chart: Path) -> Any:
    import helm_python

    try:
        return helm_python.Chart.load(str(chart))
    except helm_python.HelmError as exc:
        raise UserError(
            f"not a Helm chart: {exc}", where=str(chart), fix="point at the chart's folder or .tgz"
        ) from None


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` over ``base``, maps merged key by key, like Helm merges ``-f`` files."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_values(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(
            "values file is missing", where=str(path), fix="pass --platform-dir with the platform folder"
        ) from None
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML: {exc}", where=str(path)) from None
    if not isinstance(data, dict):
        raise UserError("must be a YAML mapping of chart values", where=str(path))
    return data


def values_files(env: str, platform_dir: Path) -> list[Path]:
    return [platform_dir / HELM_DIR / "values.yaml", platform_dir / HELM_DIR / f"values-{env}.yaml"]


def file_values(env_name: str, platform_dir: Path) -> dict[str, Any]:
    """The platform's values files for ENV, merged in order."""
    values: dict[str, Any] = {}
    for path in values_files(env_name, platform_dir):
        values = merge(values, read_values(path))
    return values


def effective_values(
    env: Environment, registry: dict[str, RegistryEntry], platform_dir: Path
) -> dict[str, Any]:
    """The values ``helm upgrade --install -f`` takes: the files, then what render computes (and
    the teams' Airflow pools, created on deploy by the chart's migration job)."""
    values = file_values(env.name, platform_dir)
    api_port = values.get("ports", {}).get("apiServer", 8080)
    teams = [entry.team for entry in registry.values()]
    bundles = [
        {
            "name": entry.team.bundle_name,
            "classpath": GIT_BUNDLE,
            "kwargs": {
                "repo_url": entry.repository.url,
                "tracking_ref": entry.repository.ref,
                # The registry's repositories are private: each team's bundle clones with its own
                # connection (never anonymously, never with another team's token).
                "git_conn_id": entry.team.git_conn_id,
            },
        }
        for entry in registry.values()
    ]
    identity = {"annotations": {WORKLOAD_IDENTITY_CLIENT_ID: env.platform_identity.client_id}}
    identity_values = {component: {"serviceAccount": identity} for component in PLATFORM_IDENTITY_COMPONENTS}
    computed = {
        **identity_values,
        "airflowVersion": airflow_pin(),  # the chart adapts its templates to the Airflow version
        # The cluster policies, from their one home: the chart mounts this file into every component
        # (left unset, it mounts an empty one and no policy runs on the cluster).
        "airflowLocalSettings": local_settings_source(),
        "apiServer": {**identity_values["apiServer"], **sign_in_values(env, platform_dir)},
        # The chart's default image, so its task pod template runs the platform image too (the
        # chart's images.airflow would leave the template on the chart's own Airflow release).
        "defaultAirflowRepository": env.image.repository,
        "defaultAirflowTag": env.image.tag,
        "data": {"metadataConnection": {"host": env.database.host, "db": env.database.database}},
        "config": {
            "core": {
                "auth_manager": FAB_AUTH_MANAGER,
                "execution_api_server_url": f"http://{service_host('api-server')}:{api_port}/execution/",
            },
            "metrics": {"statsd_host": service_host("statsd")},
            "secrets": {"backend_kwargs": json.dumps({"vault_url": env.key_vault.url})},
            "dag_processor": {"dag_bundle_config_list": json.dumps(bundles)},
            "kubernetes_executor": {
                "multi_namespace_mode_namespace_list": ",".join(str(team.namespace) for team in teams)
            },
        },
    }
    for part in (platform_secrets.chart_values(), task_pods.chart_values(), task_logs.chart_values(env)):
        computed = merge(computed, part)
    if env.dag_processor_per_team:
        # The chart's own dag-processor stays, scaled to none: its service account and RBAC serve the
        # per-team copies that render adds beside the chart (dag_processors.py).
        computed["dagProcessor"] = {**computed["dagProcessor"], "replicas": 0}
    team_pools = pools.team_pools(registry, load_profiles(platform_dir / PROFILES_FILE))
    return merge(merge(values, computed), pools.chart_values(team_pools))


def service_host(component: str) -> str:
    """A platform Service's name as pods in other namespaces resolve it."""
    return f"{RELEASE}-{component}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"


def sign_in_values(env: Environment, platform_dir: Path) -> dict[str, Any]:
    """The api-server's sign-in: FAB's OAuth with Entra ID (platform/config/webserver_config.py, its
    one home), the app registration's ids, and its client secret from the Secret the environment names."""
    sign_in = env.sign_in
    secret = {"secretKeyRef": {"name": sign_in.client_secret_secret, "key": "client-secret"}}
    return {
        "apiServerConfig": (platform_dir / CONFIG_DIR / WEBSERVER_CONFIG).read_text(),
        "env": [
            {"name": "ARIEL_ENTRA_TENANT_ID", "value": sign_in.tenant_id},
            {"name": "ARIEL_ENTRA_CLIENT_ID", "value": sign_in.client_id},
            {"name": "ARIEL_ENTRA_CLIENT_SECRET", "valueFrom": secret},
        ],
    }


def schema_problems(chart: Any, values: dict[str, Any]) -> list[str]:
    """Helm's own check of the values against the chart's ``values.schema.json``: one line per
    problem, e.g. ``at '/pgbouncer': additional properties 'maxClientConnn' not allowed``."""
    import helm_python

    try:
        chart.validate_schema(values)
    except helm_python.HelmValuesError as exc:
        lines = [line.strip() for line in str(exc).splitlines()]
        return [line.removeprefix("- ") for line in lines if line.startswith("- ")] or [str(exc)]
    return []


def validate_values(chart: Any, values: dict[str, Any], files: list[Path]) -> None:
    """Refuse values the chart's schema refuses."""
    problems = schema_problems(chart, values)
    if problems:
        raise UserError(
            "values the chart's schema refuses:\n    " + "\n    ".join(problems),
            where=" + ".join(str(path) for path in files),
            fix="correct or remove the key at that path (the chart's values.yaml lists every key)",
        )


def render_chart(chart: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's objects, rendered with ``values`` (empty documents and NOTES.txt dropped)."""
    import helm_python

    try:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    except helm_python.HelmError as exc:
        raise UserError(
            f"the chart does not render: {exc}", where="platform/helm", fix="correct the values it names"
        ) from None
    return manifests_objects(manifests)


def manifests_objects(manifests: dict[str, str]) -> list[dict[str, Any]]:
    """The objects of Helm's rendered templates (empty documents and NOTES.txt dropped)."""
    objects = []
    for template, text in sorted(manifests.items()):
        if template.endswith(".yaml"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def smallest_profile(profiles: dict[str, ResourceProfile]) -> ResourceProfile:
    return min(profiles.values(), key=lambda profile: parse_quantity(profile.requests.cpu))


def team_objects(
    entry: RegistryEntry, default: ResourceProfile, grants: list[tuple[dict[str, Any], dict[str, Any]]]
) -> list[dict[str, Any]]:
    """A team's namespace and what runs its task pods there, within its quota."""
    team = entry.team
    namespace = str(team.namespace)
    labels = {TEAM_LABEL: team.name}
    meta = {"name": namespace, "labels": labels}

    def named(name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "namespace": namespace, "labels": labels, **extra}

    quota = entry.quota
    ratio = str(MAX_LIMIT_REQUEST_RATIO)
    rbac = []
    for role, binding in grants:  # the chart's Role and RoleBinding, in the team's namespace
        rbac.append(
            {
                "apiVersion": role["apiVersion"],
                "kind": "Role",
                "metadata": named(role["metadata"]["name"]),
                "rules": role["rules"],
            }
        )
        rbac.append(
            {
                "apiVersion": binding["apiVersion"],
                "kind": "RoleBinding",
                "metadata": named(binding["metadata"]["name"]),
                "roleRef": binding["roleRef"],
                "subjects": binding["subjects"],
            }
        )
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            # Kubernetes' Pod Security admission: no privileged, host-path or host-network pod, even
            # where a DAG's pod_override asks for one.
            "metadata": {**meta, "labels": {**labels, POD_SECURITY_LABEL: "baseline"}},
        },
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": named(f"{team.name}-quota"),
            "spec": {
                "hard": {
                    "pods": str(quota.pods),
                    "requests.cpu": quota.requests.cpu,
                    "requests.memory": quota.requests.memory,
                    "limits.cpu": quota.limits.cpu,
                    "limits.memory": quota.limits.memory,
                }
            },
        },
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": named(f"{team.name}-limits"),
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        # A container without resources gets the smallest profile, not the quota.
                        "defaultRequest": default.requests.model_dump(),
                        "default": default.limits.model_dump(),
                        # The API server refuses a greedy pod even if it skipped `ariel check`.
                        "maxLimitRequestRatio": {"cpu": ratio, "memory": ratio},
                    }
                ]
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": named(
                team.service_account,
                annotations={WORKLOAD_IDENTITY_CLIENT_ID: entry.managed_identity_client_id},
            ),
        },
        *rbac,
    ]


def team_namespace_grants(chart_objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The chart's pod launcher and pod log reader Roles, each with a RoleBinding to the service
    account of the chart's component that needs it."""
    grants = []
    for suffix, component in TEAM_NAMESPACE_ROLES.items():
        role = next(
            (o for o in chart_objects if o["kind"] == "Role" and o["metadata"]["name"].endswith(suffix)), None
        )
        if role is None:
            raise UserError(
                f"the chart rendered no {suffix} Role",
                where="platform/helm/values.yaml",
                fix="keep rbac.create, allowPodLaunching and the api-server's pod log reading on: "
                "the scheduler launches the task pods, the api-server reads their logs",
            )
        name = role["metadata"]["name"]
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name.removesuffix("-role") + "-rolebinding"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": _service_account(chart_objects, component),
                    "namespace": NAMESPACE,
                }
            ],
        }
        grants.append((role, binding))
    return grants


def _service_account(chart_objects: list[dict[str, Any]], component: str) -> str:
    deployment = next(
        o
        for o in chart_objects
        if o["kind"] == "Deployment" and o["metadata"].get("labels", {}).get("component") == component
    )
    return deployment["spec"]["template"]["spec"]["serviceAccountName"]


class _Dumper(yaml.SafeDumper):
    """Writes every value where it applies: the anchors of values.yaml become copies, no &id001."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def object_file_name(obj: dict[str, Any]) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def chart_object_path(obj: dict[str, Any]) -> str:
    return f"{RENDERED_CHART_DIR}/{object_file_name(obj)}"


def team_object_path(team: str, obj: dict[str, Any]) -> str:
    return f"{RENDERED_TEAMS_DIR}/{team}/{object_file_name(obj)}"


def _write(path: Path, obj: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_yaml(obj))
    return path


@dataclass
class RenderResult:
    """What ``render`` computes, in memory: ``render`` writes it, ``validate`` checks it."""

    env: Environment
    registry: dict[str, RegistryEntry]
    values: dict[str, Any]
    values_files: list[Path]  # the platform's values files merged into ``values``, in order
    chart: Path  # the official chart rendered (a folder or a .tgz)
    chart_objects: list[dict[str, Any]]  # what the official chart renders with ``values``
    dag_processors: list[dict[str, Any]]  # one per team, beside the chart's (scaled to none)
    team_pod_templates: dict[str, Any]  # the ConfigMap of each team's task pod template
    team_objects: dict[str, list[dict[str, Any]]]

    def beside_chart(self) -> list[dict[str, Any]]:
        """The platform-namespace objects the kit adds to the chart's."""
        return [self.team_pod_templates, *self.dag_processors]

    def platform_objects(self) -> list[dict[str, Any]]:
        """What the release installs beside the official chart."""
        teams = [obj for objects in self.team_objects.values() for obj in objects]
        return [*teams, *self.beside_chart()]

    def files(self) -> dict[str, dict[str, Any]]:
        """Every object by the path ``render`` writes it to, relative to ``--out``."""
        files = {chart_object_path(obj): obj for obj in [*self.chart_objects, *self.beside_chart()]}
        for team, objects in self.team_objects.items():
            files.update({team_object_path(team, obj): obj for obj in objects})
        return files


def render_in_memory(
    env_name: str,
    *,
    chart: str | Path | None = None,
    platform_dir: Path = PLATFORM_DIR,
    progress: Progress | None = None,
) -> RenderResult:
    """ENV's effective values and every object, the chart's and the teams', without writing files."""
    progress = progress or Progress()
    env = load_environment(env_name, platform_dir)
    chart_path = find_chart(chart, env, environment_file(env_name, platform_dir), progress)
    registry = load_registry(platform_dir)
    default = smallest_profile(load_profiles(platform_dir / PROFILES_FILE))
    values = effective_values(env, registry, platform_dir)
    files = values_files(env_name, platform_dir)

    with progress.step(f"rendering the chart {chart_path}", "chart rendered"):
        loaded = load_chart(chart_path)
        validate_values(loaded, values, files)
        chart_objects = render_chart(loaded, values)
    processors: list[dict[str, Any]] = []
    if env.dag_processor_per_team:
        replicas = file_values(env_name, platform_dir).get("dagProcessor", {}).get("replicas", 1)
        processors = per_team(chart_objects, [entry.team for entry in registry.values()], replicas)

    grants = team_namespace_grants(chart_objects)
    templates, task_configs = task_pods.render_team_pods(
        chart_objects, registry, env, release=RELEASE, namespace=NAMESPACE
    )
    team_objects_ = {
        name: [*team_objects(entry, default, grants), task_configs[name]] for name, entry in registry.items()
    }
    return RenderResult(
        env, registry, values, files, chart_path, chart_objects, processors, templates, team_objects_
    )


def render(
    env_name: str,
    out: Path,
    *,
    chart: str | Path | None = None,
    platform_dir: Path = PLATFORM_DIR,
    progress: Progress | None = None,
) -> Rendered:
    """Render ENV into ``out``: values.yaml, chart/<object>.yaml, teams/<team>/<object>.yaml, and
    image/, the build context of the platform's Airflow image."""
    progress = progress or Progress()
    result = render_in_memory(env_name, chart=chart, platform_dir=platform_dir, progress=progress)

    # Replace what an earlier render wrote: an object gone from the chart must not linger.
    for stale in (RENDERED_CHART_DIR, RENDERED_TEAMS_DIR):
        shutil.rmtree(out / stale, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    values_path = out / VALUES_FILE
    values_path.write_text(
        f"# Effective values for {env_name}: `ariel platform render {env_name}` wrote this; do not edit.\n"
        + dump_yaml(result.values)
    )
    pools_path = out / pools.POOLS_FILE  # for review and `airflow pools import` by hand
    catalog = load_profiles(platform_dir / PROFILES_FILE)
    pools_path.write_text(pools.pools_json(pools.team_pools(result.registry, catalog)))
    rendered = Rendered(out=out, values=values_path, pools=pools_path)
    chart_objects = [*result.chart_objects, *result.beside_chart()]
    rendered.chart_objects = [_write(out / chart_object_path(obj), obj) for obj in chart_objects]
    for team, objects in result.team_objects.items():
        rendered.team_objects[team] = [_write(out / team_object_path(team, obj), obj) for obj in objects]
    progress.info(f"{len(rendered.chart_objects)} chart objects in {out / RENDERED_CHART_DIR}")
    for name, entry in result.registry.items():
        count = len(rendered.team_objects.get(name, []))
        progress.info(f"team {name}: {count} objects in namespace {entry.team.namespace}")
    rendered.release = write_release(out, result.chart, result.env, result.values, result.platform_objects())
    progress.info(f"the release to install: {rendered.release} (`helm upgrade --install`)")
    from ariel_airflow.cluster.image import write_image_context  # the Docker SDK: not for capacity

    rendered.image_build = write_image_context(out / "image", result.env)
    return rendered
