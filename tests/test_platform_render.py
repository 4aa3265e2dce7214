"""`ariel platform render` against the real, unmodified official chart, in the chart's own helm-test
style: one ``render_chart()`` helper, short tests that each look at one object."""

from __future__ import annotations

import base64
import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from ariel_airflow import pgbouncer_token
from ariel_airflow.cluster import platform_secrets
from ariel_airflow.cluster.environments import CORE_TAINT, load_environment
from ariel_airflow.cluster.registry import load_registry
from ariel_airflow.cluster.render import render

from conftest import CHART, KIT_ROOT, no_traceback, run_ariel

PLATFORM = KIT_ROOT / "platform"

pytestmark = pytest.mark.skipif(
    not CHART.is_dir() and not os.environ.get("ARIEL_AIRFLOW_CHART"),
    reason=f"the official Airflow chart is not at {CHART}: set ARIEL_AIRFLOW_CHART to its folder",
)

SECOND_TEAM = """\
name: alpha
repository: {url: https://dev.azure.com/example/airflow/_git/team-alpha, ref: release}
quota:
  pods: 4
  requests: {cpu: "1", memory: 2Gi}
  limits: {cpu: 1500m, memory: 3Gi}
managed_identity_client_id: 00000000-0000-0000-0000-0000000000aa
"""


@pytest.fixture
def platform_dir(tmp_path: Path) -> Path:
    """A copy of the kit's platform folder with a second team registered next to demo."""
    copy = tmp_path / "platform"
    shutil.copytree(PLATFORM, copy)
    (copy / "teams" / "alpha.yaml").write_text(SECOND_TEAM)
    return copy


def render_chart(platform_dir: Path, out: Path, env: str = "prod") -> Path:
    render(env, out, chart=CHART, platform_dir=platform_dir)
    return out


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def pod_spec(out: Path, deployment: str) -> dict[str, Any]:
    return load(out / "chart" / f"deployment-airflow-{deployment}.yaml")["spec"]["template"]["spec"]


@pytest.mark.parametrize("component", ["scheduler", "api-server"])
def test_core_component_is_guaranteed_on_the_core_pool(
    platform_dir: Path, tmp_path: Path, component: str
) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    spec = pod_spec(out, component)
    for container in spec["containers"] + spec.get("initContainers", []):
        resources = container["resources"]
        assert resources["requests"], container["name"]
        assert resources["requests"] == resources["limits"], container["name"]
    key, rest = CORE_TAINT.split("=")
    value, effect = rest.split(":")
    assert {"key": key, "operator": "Equal", "value": value, "effect": effect} in spec["tolerations"]
    assert spec["nodeSelector"] == load_environment("prod", platform_dir).core_pool.labels


def test_core_priority_class_exists_and_outranks_task_pods(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    name = pod_spec(out, "scheduler")["priorityClassName"]
    priority_class = load(out / "chart" / f"priorityclass-{name}.yaml")
    assert isinstance(priority_class["value"], int) and priority_class["value"] > 0  # task pods: 0


def test_pgbouncer_config_holds_the_pool_sizes(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    secret = load(out / "chart" / "secret-airflow-pgbouncer-config.yaml")
    ini = base64.b64decode(secret["data"]["pgbouncer.ini"]).decode()
    host = "host=ariel-airflow-prod.postgres.database.azure.com"
    assert f"airflow-metadata = {host} dbname=airflow port=5432 pool_size=60" in ini
    assert f"airflow-result-backend = {host} dbname=airflow port=5432 pool_size=2" in ini
    assert "max_client_conn = 200" in ini


def test_pgbouncer_runs_on_the_token_refreshers_config(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    spec = pod_spec(out, "pgbouncer")
    containers = {container["name"]: container for container in spec["containers"]}
    refresher, pgbouncer = containers["token-refresher"], containers["pgbouncer"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert refresher["command"] == ["python", "-m", pgbouncer_token.__name__]
    args = pgbouncer_token.parse_args(refresher["args"])  # as the sidecar's own parser reads them
    token_dir = str(args.out)
    # The token volume: in memory, written by the refresher, read by PgBouncer.
    assert volumes["pgbouncer-token"]["emptyDir"]["medium"] == "Memory"
    assert {"name": "pgbouncer-token", "mountPath": token_dir} in refresher["volumeMounts"]
    assert {"name": "pgbouncer-token", "mountPath": token_dir, "readOnly": True} in pgbouncer["volumeMounts"]
    # The refresher reads the chart's config secret where its --chart-config says.
    chart_config = str(args.chart_config)
    assert {"name": "pgbouncer-config", "mountPath": chart_config, "readOnly": True} in refresher[
        "volumeMounts"
    ]
    assert "secret" in volumes["pgbouncer-config"]
    # PgBouncer runs the refreshed ini, the refresher reloads it on PgBouncer's port, as the
    # metadata user's database role, from the platform image (which holds the kit).
    assert pgbouncer["command"][-1].endswith(f"exec pgbouncer {token_dir}/pgbouncer.ini")
    assert args.port == pgbouncer["ports"][0]["containerPort"]
    values = load(out / "values.yaml")
    assert args.server_user == values["data"]["metadataConnection"]["user"]
    env = load_environment("prod", platform_dir)
    assert refresher["image"] == f"{env.image.repository}:{env.image.tag}"
    # Guaranteed, as every core container; the platform identity through workload identity.
    assert refresher["resources"]["requests"] == refresher["resources"]["limits"]
    labels = load(out / "chart" / "deployment-airflow-pgbouncer.yaml")["spec"]["template"]["metadata"][
        "labels"
    ]
    assert labels["azure.workload.identity/use"] == "true"
    account = load(out / "chart" / f"serviceaccount-{spec['serviceAccountName']}.yaml")
    assert account["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": env.platform_identity.client_id
    }
    # The token goes to Azure as a cleartext password: only to a server the image's CAs vouch for.
    secret = load(out / "chart" / "secret-airflow-pgbouncer-config.yaml")
    ini = base64.b64decode(secret["data"]["pgbouncer.ini"]).decode()
    assert "server_tls_sslmode = verify-full" in ini
    assert "server_tls_ca_file = /etc/ssl/certs/ca-certificates.crt" in ini
    # The clients' login: the metadata Secret the components use, mounted where --clients says.
    mount = next(m for m in refresher["volumeMounts"] if str(args.clients).startswith(m["mountPath"] + "/"))
    assert volumes[mount["name"]]["secret"]["secretName"] == values["data"]["metadataSecretName"]
    assert args.clients.name == platform_secrets.CONNECTION_KEY


def test_every_component_reads_the_metadata_connection_from_the_bootstrapped_secret(
    platform_dir: Path, tmp_path: Path
) -> None:
    """No password in the values (it was an empty --set on every upgrade): the chart renders no
    metadata Secret and every consumer, PgBouncer's exporter too, reads the one bootstrap makes."""
    out = render_chart(platform_dir, tmp_path / "out")
    assert not (out / "chart" / "secret-airflow-metadata.yaml").exists()
    assert not (out / "chart" / "secret-airflow-pgbouncer-stats.yaml").exists()
    made = {secret.name: secret for secret in platform_secrets.PLATFORM_SECRETS}
    keys = made[platform_secrets.METADATA_SECRET].keys("airflow", "airflow")
    references = 0
    for path in (out / "chart").glob("deployment-*.yaml"):
        spec = load(path)["spec"]["template"]["spec"]
        for container in spec["containers"] + spec.get("initContainers", []):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef", {})
                if ref.get("name") == platform_secrets.METADATA_SECRET:
                    assert ref["key"] in keys, (path.name, var)
                    references += 1
    assert references >= 5  # scheduler, api-server, triggerer, their init containers, the exporter
    connection = keys[platform_secrets.CONNECTION_KEY]
    assert connection.startswith("postgresql+psycopg2://airflow:") and connection.endswith(
        "@airflow-pgbouncer.airflow:6543/airflow-metadata?sslmode=require"
    )


def test_task_pods_run_the_platform_image_on_the_task_pool(platform_dir: Path, tmp_path: Path) -> None:
    """The chart's pod template takes the chart's default image, not images.airflow, and the task
    pool's label and taint."""
    out = render_chart(platform_dir, tmp_path / "out")
    env = load_environment("prod", platform_dir)
    config = load(out / "chart" / "configmap-airflow-config.yaml")
    template = yaml.safe_load(config["data"]["pod_template_file.yaml"])
    assert [c["image"] for c in template["spec"]["containers"]] == [f"{env.image.repository}:{env.image.tag}"]
    tasks = next(pool for pool in env.node_pools if pool.name == "tasks")
    assert template["spec"]["nodeSelector"] == tasks.labels
    key, rest = tasks.taints[0].split("=")
    value, effect = rest.split(":")
    assert {"key": key, "operator": "Equal", "value": value, "effect": effect} in template["spec"][
        "tolerations"
    ]


@pytest.mark.parametrize("env", ["dev", "test", "prod"])
def test_pgbouncer_pools_fit_the_database(platform_dir: Path, tmp_path: Path, env: str) -> None:
    pgbouncer = load(render_chart(platform_dir, tmp_path / "out", env) / "values.yaml")["pgbouncer"]
    server_connections = pgbouncer["replicas"] * (
        pgbouncer["metadataPoolSize"] + pgbouncer["resultBackendPoolSize"]
    )
    assert server_connections <= load_environment(env, platform_dir).database.usable_connections


def test_effective_values_bundle_each_registered_team(platform_dir: Path, tmp_path: Path) -> None:
    values = load(render_chart(platform_dir, tmp_path / "out") / "values.yaml")
    bundles = yaml.safe_load(values["config"]["dag_processor"]["dag_bundle_config_list"])
    assert {bundle["name"] for bundle in bundles} == {"demo", "alpha"}
    alpha = next(bundle for bundle in bundles if bundle["name"] == "alpha")
    assert alpha["classpath"] == "airflow.providers.git.bundles.git.GitDagBundle"
    assert alpha["kwargs"] == {
        "repo_url": "https://dev.azure.com/example/airflow/_git/team-alpha",
        "tracking_ref": "release",
        "git_conn_id": "git_alpha",
    }
    namespaces = values["config"]["kubernetes_executor"]["multi_namespace_mode_namespace_list"]
    assert sorted(namespaces.split(",")) == ["airflow-alpha", "airflow-demo"]


def test_each_team_has_a_dag_processor_for_its_bundle_only(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    # The chart's own parses every bundle: scaled to none (its service account serves the copies).
    assert load(out / "chart" / "deployment-airflow-dag-processor.yaml")["spec"]["replicas"] == 0
    selectors = []
    for team in ("demo", "alpha"):
        deployment = load(out / "chart" / f"deployment-airflow-dag-processor-{team}.yaml")
        assert deployment["spec"]["replicas"] == 1
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["bash", "-c", f"exec airflow dag-processor --bundle-name {team}"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        selectors.append(selector)
    assert selectors[0] != selectors[1]  # neither Deployment adopts the other's pods


def test_one_dag_processor_for_all_bundles_when_the_environment_says_so(
    platform_dir: Path, tmp_path: Path
) -> None:
    env_file = platform_dir / "environments" / "prod.yaml"
    env_file.write_text(
        env_file.read_text().replace("dag_processor_per_team: true", "dag_processor_per_team: false")
    )
    out = render_chart(platform_dir, tmp_path / "out")
    container = pod_spec(out, "dag-processor")["containers"][0]
    assert container["args"] == ["bash", "-c", "exec airflow dag-processor"]
    assert not list((out / "chart").glob("deployment-airflow-dag-processor-*.yaml"))


def test_airflow_cfg_holds_the_bundles_and_the_limits(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    cfg = load(out / "chart" / "configmap-airflow-config.yaml")["data"]["airflow.cfg"]
    assert "team-alpha" in cfg and "team-demo" in cfg
    for line in ("parallelism = 32", "worker_pods_creation_batch_size = 4", "refresh_interval = 30"):
        assert line in cfg


def test_team_objects_pass_the_kubernetes_schema(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    version = load_environment("prod", platform_dir).kubernetes_version
    paths = sorted((out / "teams").glob("*/*.yaml"))
    assert len(paths) == 18  # nine objects for each of the two teams
    for path in paths:
        kubernetes_validate.validate(load(path), version, strict=True)


def test_chart_objects_pass_the_kubernetes_schema(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    version = load_environment("prod", platform_dir).kubernetes_version
    for path in sorted((out / "chart").glob("*.yaml")):
        kubernetes_validate.validate(load(path), version, strict=True)


def test_the_schema_check_refuses_an_unknown_field(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    limit_range = load(out / "teams" / "demo" / "limitrange-demo-limits.yaml")
    limit_range["spec"]["limits"][0]["maxLimitRequestRatios"] = {"cpu": "2"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(limit_range, "1.31", strict=True)


def test_limit_range_caps_limit_over_request_at_one_and_a_half(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    (limits,) = load(out / "teams" / "demo" / "limitrange-demo-limits.yaml")["spec"]["limits"]
    assert limits["maxLimitRequestRatio"] == {"cpu": "1.5", "memory": "1.5"}
    # Defaults: the catalog's smallest profile ("small").
    assert limits["defaultRequest"] == {"cpu": "250m", "memory": "512Mi"}
    assert limits["default"] == {"cpu": "375m", "memory": "768Mi"}


def test_resource_quota_is_the_registry_quota(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    quota = load(out / "teams" / "alpha" / "resourcequota-alpha-quota.yaml")
    assert quota["metadata"]["namespace"] == "airflow-alpha"
    assert quota["spec"]["hard"] == {
        "pods": "4",
        "requests.cpu": "1",
        "requests.memory": "2Gi",
        "limits.cpu": "1500m",
        "limits.memory": "3Gi",
    }


def test_task_service_account_has_the_team_client_id(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    account = load(out / "teams" / "alpha" / "serviceaccount-alpha-tasks.yaml")
    assert account["metadata"]["namespace"] == "airflow-alpha"
    annotations = account["metadata"]["annotations"]
    assert annotations == {"azure.workload.identity/client-id": "00000000-0000-0000-0000-0000000000aa"}


@pytest.mark.parametrize("component", ["scheduler", "api-server", "dag-processor", "triggerer"])
def test_core_service_accounts_have_the_platform_identity(
    platform_dir: Path, tmp_path: Path, component: str
) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    account = load(out / "chart" / f"serviceaccount-airflow-{component}.yaml")
    client_id = "10000000-0000-0000-0000-000000000003"  # platform_identity of environments/prod.yaml
    assert account["metadata"]["annotations"] == {"azure.workload.identity/client-id": client_id}


def test_team_role_binding_names_the_schedulers_service_account(platform_dir: Path, tmp_path: Path) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    binding = load(out / "teams" / "demo" / "rolebinding-airflow-pod-launcher-rolebinding.yaml")
    role = load(out / "teams" / "demo" / f"role-{binding['roleRef']['name']}.yaml")
    (subject,) = binding["subjects"]
    assert subject == {
        "kind": "ServiceAccount",
        "name": pod_spec(out, "scheduler")["serviceAccountName"],
        "namespace": "airflow",
    }
    pods = next(rule for rule in role["rules"] if rule["resources"] == ["pods"])
    assert {"create", "watch", "delete"} <= set(pods["verbs"])


def test_misspelt_values_key_fails_the_chart_schema() -> None:
    chart = helm_python.Chart.load(str(CHART))
    with pytest.raises(helm_python.HelmValuesError, match=r"/pgbouncer.*maxClientConnn"):
        chart.validate_schema({"pgbouncer": {"maxClientConnn": 200}})


def test_render_turns_a_misspelt_key_into_a_user_error(platform_dir: Path, tmp_path: Path) -> None:
    overlay = platform_dir / "helm" / "values-prod.yaml"
    text = overlay.read_text()
    assert "\npgbouncer:\n" in text
    overlay.write_text(text.replace("\npgbouncer:\n", "\npgbouncer:\n  maxClientConnn: 200\n", 1))
    result = run_ariel(
        "platform",
        "render",
        "prod",
        "--out",
        str(tmp_path / "out"),
        "--chart",
        str(CHART),
        "--platform-dir",
        str(platform_dir),
    )
    assert result.returncode == 2, result.stderr
    assert "at '/pgbouncer': additional properties 'maxClientConnn' not allowed" in result.stderr
    assert "values-prod.yaml" in result.stderr
    assert no_traceback(result)


@pytest.fixture(scope="module")
def chart_repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Helm chart repository (index.yaml and the packaged chart over HTTP) holding the official
    chart as version 1.19.0, the version the environment files pin."""
    served = tmp_path_factory.mktemp("chart-repo")
    helm_python.package(str(CHART), destination=str(served), version="1.19.0")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_port}"
    helm_python.repo_index_generate(str(served), base_url=url)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield url
    server.shutdown()


def _point_at_repository(platform_dir: Path, url: str) -> None:
    env_file = platform_dir / "environments" / "prod.yaml"
    env_file.write_text(
        env_file.read_text().replace("repository: https://airflow.apache.org", f"repository: {url}")
    )


def test_render_pulls_the_pinned_chart_once_into_the_cache(
    platform_dir: Path, tmp_path: Path, chart_repository: str
) -> None:
    _point_at_repository(platform_dir, chart_repository)
    cache = tmp_path / "cache"
    env = {"ARIEL_AIRFLOW_CHART": "", "ARIEL_CHART_CACHE": str(cache)}
    args = ("platform", "render", "prod", "--platform-dir", str(platform_dir), "--out")
    first = run_ariel(*args, str(tmp_path / "first"), env=env)
    assert first.returncode == 0, first.stderr
    assert f"pulling chart {chart_repository} airflow 1.19.0" in first.stderr
    assert [path.name for path in cache.iterdir()] == ["airflow-1.19.0.tgz"]
    # The second render reads the cache, even with the repository gone.
    _point_at_repository(platform_dir, "http://127.0.0.1:9")
    second = run_ariel(*args, str(tmp_path / "second"), env=env)
    assert second.returncode == 0, second.stderr
    assert "pulling" not in second.stderr
    assert (tmp_path / "second" / "chart" / "deployment-airflow-scheduler.yaml").is_file()


def test_render_with_an_unreachable_chart_repository_says_what_to_do(
    platform_dir: Path, tmp_path: Path
) -> None:
    _point_at_repository(platform_dir, "http://127.0.0.1:9")
    cache = tmp_path / "cache"
    result = run_ariel(
        *("platform", "render", "prod", "--platform-dir", str(platform_dir), "--out", str(tmp_path / "out")),
        env={"ARIEL_AIRFLOW_CHART": "", "ARIEL_CHART_CACHE": str(cache)},
    )
    assert result.returncode == 2
    assert "cannot pull chart http://127.0.0.1:9 airflow 1.19.0" in result.stderr
    assert "prod.yaml: chart" in result.stderr and "ARIEL_AIRFLOW_CHART" in result.stderr
    assert not any(cache.rglob("*.tgz"))  # nothing half-written
    assert no_traceback(result)


def test_render_with_a_missing_chart_folder_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-chart"
    result = run_ariel("platform", "render", "prod", "--out", str(tmp_path / "out"), "--chart", str(missing))
    assert result.returncode == 2
    assert f"--chart={missing}" in result.stderr and "oci://" in result.stderr
    assert no_traceback(result)


def test_render_writes_values_chart_and_teams(tmp_path: Path) -> None:
    result = run_ariel("platform", "render", "prod", "--out", str(tmp_path / "out"), "--chart", str(CHART))
    assert result.returncode == 0, result.stderr
    assert "chart rendered" in result.stderr  # progress on stderr, the summary on stdout
    assert "objects of team demo" in result.stdout
    text = (tmp_path / "out" / "values.yaml").read_text()
    assert "&id" not in text  # each value written where it applies, for review and diffs
    values = yaml.safe_load(text)
    assert values["executor"] == "KubernetesExecutor"
    assert (tmp_path / "out" / "chart" / "deployment-airflow-scheduler.yaml").is_file()
    assert set(load_registry(PLATFORM)) == {path.name for path in (tmp_path / "out" / "teams").iterdir()}


@pytest.mark.parametrize("component", ["scheduler", "api-server", "triggerer", "dag-processor-demo"])
def test_every_component_loads_the_platforms_cluster_policies(
    platform_dir: Path, tmp_path: Path, component: str
) -> None:
    out = render_chart(platform_dir, tmp_path / "out")
    source = load(out / "chart" / "configmap-airflow-config.yaml")["data"]["airflow_local_settings.py"]
    settings: dict[str, Any] = {}
    exec(compile(source, "airflow_local_settings.py", "exec"), settings)  # as Airflow imports it
    assert {"task_policy", "dag_policy", "pod_mutation_hook"} <= settings.keys()
    mounts = [
        mount
        for container in pod_spec(out, component)["containers"]
        for mount in container.get("volumeMounts", [])
        if mount.get("subPath") == "airflow_local_settings.py"
    ]
    assert mounts, f"{component} does not mount the cluster policies"


def test_two_renders_are_byte_identical_and_hold_no_generated_secret(
    platform_dir: Path, tmp_path: Path
) -> None:
    first = render_chart(platform_dir, tmp_path / "first")
    second = render_chart(platform_dir, tmp_path / "second")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file() and "image" not in p.parts)
    assert files == sorted(
        p.relative_to(second) for p in second.rglob("*") if p.is_file() and "image" not in p.parts
    )
    for path in files:
        assert (first / path).read_bytes() == (second / path).read_bytes(), path
    secrets = {load(p)["metadata"]["name"] for p in (first / "chart").glob("secret-*.yaml")}
    for generated in ("airflow-jwt-secret", "airflow-api-secret-key", "airflow-fernet-key"):
        assert generated not in secrets  # named in the values, created once per cluster, never rendered
    env = pod_spec(first, "scheduler")["containers"][0]["env"]
    jwt = next(item for item in env if item["name"] == "AIRFLOW__API_AUTH__JWT_SECRET")
    assert jwt["valueFrom"]["secretKeyRef"] == {"name": "airflow-jwt-secret", "key": "jwt-secret"}


def test_people_sign_in_with_entra_id_through_fab(platform_dir: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    out = render_chart(platform_dir, tmp_path / "out")
    cfg = load(out / "chart" / "configmap-airflow-config.yaml")["data"]["airflow.cfg"]
    assert "auth_manager = airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager" in cfg
    config = load(out / "chart" / "configmap-airflow-api-server-config.yaml")["data"]["webserver_config.py"]
    container = pod_spec(out, "api-server")["containers"][0]
    assert any(m.get("subPath") == "webserver_config.py" for m in container["volumeMounts"])
    env = {item["name"]: item for item in container["env"]}
    prod = load_environment("prod", platform_dir)
    assert env["ARIEL_ENTRA_TENANT_ID"]["value"] == prod.sign_in.tenant_id
    assert (
        env["ARIEL_ENTRA_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]["name"]
        == prod.sign_in.client_secret_secret
    )
    # What FAB reads from it, with the environment the api-server has (the secret: any value).
    for name in ("ARIEL_ENTRA_TENANT_ID", "ARIEL_ENTRA_CLIENT_ID"):
        monkeypatch.setenv(name, env[name]["value"])
    monkeypatch.setenv("ARIEL_ENTRA_CLIENT_SECRET", "from-the-secret")
    settings: dict[str, Any] = {}
    exec(compile(config, "webserver_config.py", "exec"), settings)
    from flask_appbuilder.security.manager import AUTH_OAUTH

    assert settings["AUTH_TYPE"] == AUTH_OAUTH
    (azure,) = settings["OAUTH_PROVIDERS"]
    app = azure["remote_app"]
    assert app["client_id"] == prod.sign_in.client_id and app["client_secret"] == "from-the-secret"
    assert (
        app["access_token_url"]
        == f"https://login.microsoftonline.com/{prod.sign_in.tenant_id}/oauth2/v2.0/token"
    )
    assert settings["AUTH_ROLES_MAPPING"]["Airflow.Admin"] == ["Admin"]
