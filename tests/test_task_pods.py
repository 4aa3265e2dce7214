"""Each team's task pod, built on the scheduler's code path: a team's DAG loaded by DagBag with the
platform's cluster policies (as its dag-processor does), serialized and read back (as the scheduler
gets it), handed to the provider's KubernetesExecutor, whose scheduler builds the pod from the
rendered config and team templates. Two teams, so nothing passes by belonging to the only one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ariel_airflow.cluster import task_pods
from ariel_airflow.cluster.render import render_in_memory
from ariel_airflow.policies import LOCAL_SETTINGS_FILE
from ariel_airflow.team import TEAM_POD_TEMPLATES_SETTING
from ariel_airflow.template import generate_team_repo

from conftest import CHART, KIT_ROOT

pytestmark = pytest.mark.skipif(
    not CHART.is_dir() and not os.environ.get("ARIEL_AIRFLOW_CHART"),
    reason=f"the official Airflow chart is not at {CHART}: set ARIEL_AIRFLOW_CHART to its folder",
)

SECOND_TEAM = """\
name: alpha
namespace: alpha-tasks
repository: {url: https://dev.azure.com/example/airflow/_git/team-alpha}
key_vaults: {prod: https://kv-alpha-prod.vault.azure.net/}
quota:
  pods: 4
  requests: {cpu: "2", memory: 8Gi}
  limits: {cpu: "3", memory: 12Gi}
managed_identity_client_id: 00000000-0000-0000-0000-0000000000aa
"""
# The scheduler's side: KubernetesExecutor.execute_async queues the job exactly as the scheduler's
# loop does, and AirflowKubernetesScheduler._build_pod_request builds the pod its run_next creates
# (only the API call is left out: the scheduler object is made without a client or watchers).
BUILD_LIKE_THE_SCHEDULER = """\
import json, queue, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.providers.cncf.kubernetes.executors.kubernetes_executor import KubernetesExecutor
from airflow.providers.cncf.kubernetes.executors.kubernetes_executor_utils import AirflowKubernetesScheduler
from airflow.providers.cncf.kubernetes.kube_config import KubeConfig
from airflow.serialization.serialized_objects import DagSerialization
from kubernetes.client import ApiClient

bag = DagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1], bundle_name=sys.argv[2])
executor = KubernetesExecutor()
executor.task_queue = queue.Queue()
builder = object.__new__(AirflowKubernetesScheduler)
builder.kube_config = KubeConfig()
builder.namespace = builder.kube_config.kube_namespace
builder.scheduler_job_id = "1"
builder.supports_task_instance_uuid = False
pods = {}
for dag in bag.dags.values():
    dag = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    for task in dag.tasks:
        key = TaskInstanceKey(dag.dag_id, task.task_id, "manual__1", 1, -1)
        command = ["airflow", "tasks", "run", dag.dag_id, task.task_id, "manual__1"]
        executor.execute_async(key, command, executor_config=task.executor_config)
        pod = builder._build_pod_request(executor.task_queue.get_nowait())
        pods[task.task_id] = ApiClient().sanitize_for_serialization(pod)
print(json.dumps({"errors": list(bag.import_errors.values()), "pods": pods}))
"""
PLATFORM_SECRET_ENV = (
    "SQL_ALCHEMY_CONN",
    "FERNET_KEY",
    "JWT_SECRET",
    "SECRET_KEY",
    "AIRFLOW_CONN_AIRFLOW_DB",
)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Any:
    platform = tmp_path_factory.mktemp("platform") / "platform"
    shutil.copytree(KIT_ROOT / "platform", platform)
    (platform / "teams" / "alpha.yaml").write_text(SECOND_TEAM)
    return render_in_memory("prod", chart=CHART, platform_dir=platform)


def task_pods_of(team: str, rendered: Any, tmp_path: Path) -> dict[str, Any]:
    """The pods the executor builds for the tasks of ``team``'s example DAG."""
    home, templates = tmp_path / "airflow", tmp_path / "templates"
    (home / "config").mkdir(parents=True)
    templates.mkdir()
    config = task_pods.chart_config(rendered.chart_objects, "airflow")["data"]
    (home / "airflow.cfg").write_text(config["airflow.cfg"])
    (home / "config" / LOCAL_SETTINGS_FILE).write_text(config[LOCAL_SETTINGS_FILE])
    (home / "chart_pod_template.yaml").write_text(config[task_pods.CHART_POD_TEMPLATE_KEY])
    for name, text in rendered.team_pod_templates["data"].items():
        (templates / name).write_text(text)
    repo = generate_team_repo(tmp_path / team, team)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE": str(home / "chart_pod_template.yaml"),
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        TEAM_POD_TEMPLATES_SETTING: str(templates),
    }
    done = subprocess.run(
        [sys.executable, "-c", BUILD_LIKE_THE_SCHEDULER, str(repo / "dags"), team],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    built = json.loads(done.stdout.strip().splitlines()[-1])
    assert built["errors"] == []
    return built["pods"]


@pytest.mark.parametrize("team", ["demo", "alpha"])
def test_a_teams_task_pod_runs_in_its_namespace_as_its_identity(
    team: str, rendered: Any, tmp_path: Path
) -> None:
    entry = rendered.registry[team]
    pods = task_pods_of(team, rendered, tmp_path)
    assert set(pods) == {"wait_for_export", "load_export"}
    profiles = yaml.safe_load((KIT_ROOT / "platform" / "resource_profiles.yaml").read_text())
    sizes = {"wait_for_export": "small", "load_export": "medium"}  # the example DAG's profiles
    for task, pod in pods.items():
        assert pod["metadata"]["namespace"] == entry.team.namespace
        assert pod["metadata"]["labels"]["ariel.io/team"] == team
        assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
        spec = pod["spec"]
        assert spec["serviceAccountName"] == f"{team}-tasks"
        assert spec["automountServiceAccountToken"] is False
        assert spec["nodeSelector"] == {"ariel.io/pool": "airflow-tasks"}
        assert {
            "key": "ariel.io/pool",
            "operator": "Equal",
            "value": "airflow-tasks",
            "effect": "NoSchedule",
        } in (spec["tolerations"])
        (base,) = spec["containers"]
        env = {e["name"]: e.get("value") for e in base["env"]}
        kwargs = json.loads(env["AIRFLOW__WORKERS__SECRETS_BACKEND_KWARGS"])
        assert kwargs["vault_url"] == entry.key_vaults["prod"]
        assert kwargs["variables_prefix"] == f"airflow-variables-{team}"
        profile = profiles[sizes[task]]
        assert base["resources"] == {"requests": profile["requests"], "limits": profile["limits"]}
        assert base["image"] == f"{rendered.env.image.repository}:{rendered.env.image.tag}"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["config"]["configMap"]["name"] == task_pods.TASK_CONFIG_CONFIGMAP


@pytest.mark.parametrize("team", ["demo", "alpha"])
def test_no_platform_secret_reaches_a_teams_task_pod(team: str, rendered: Any, tmp_path: Path) -> None:
    for pod in task_pods_of(team, rendered, tmp_path).values():
        text = json.dumps(pod)
        assert "secretKeyRef" not in text and "secretRef" not in text
        assert not [v for v in pod["spec"]["volumes"] if "secret" in v or "projected" in v]
        names = [e["name"] for c in pod["spec"]["containers"] for e in c.get("env") or []]
        assert not [n for n in names if any(secret in n for secret in PLATFORM_SECRET_ENV)]
    # The config the task mounts, in its namespace, holds none either.
    (task_config,) = [
        o for o in rendered.team_objects[team] if o["metadata"]["name"] == task_pods.TASK_CONFIG_CONFIGMAP
    ]
    cfg = task_config["data"]["airflow.cfg"]
    for option in ("sql_alchemy_conn", "fernet_key", "jwt_secret", "secret_key"):
        assert f"{option} =" not in cfg
    assert (
        "execution_api_server_url = http://airflow-api-server.airflow.svc.cluster.local:8080/execution/"
        in cfg
    )


def test_the_executors_watchers_watch_every_team_namespace(rendered: Any) -> None:
    config = rendered.values["config"]["kubernetes_executor"]
    assert str(config["multi_namespace_mode"]) == "True"
    assert set(config["multi_namespace_mode_namespace_list"].split(",")) == {"airflow-demo", "alpha-tasks"}


def test_the_scheduler_and_the_dag_processors_mount_the_team_templates(rendered: Any) -> None:
    deployments = [
        o for o in [*rendered.chart_objects, *rendered.dag_processors] if o["kind"] == "Deployment"
    ]
    readers = [
        d for d in deployments if d["metadata"]["labels"].get("component") in ("scheduler", "dag-processor")
    ]
    assert len(readers) == 4  # the scheduler, the chart's dag-processor, one per team
    for deployment in readers:
        spec = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes[task_pods.TEMPLATES_VOLUME]["configMap"]["name"] == task_pods.TEAM_TEMPLATES_CONFIGMAP
        mounts = [m for c in spec["containers"] for m in c.get("volumeMounts") or []]
        assert any(m["name"] == task_pods.TEMPLATES_VOLUME for m in mounts)


FOREIGN_DAG = """\
from datetime import timedelta
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
args = {"owner": "alpha@example.com", "retries": 1, "execution_timeout": timedelta(minutes=5)}
with DAG("alpha__in_demos_bundle", schedule=None, tags=["team:alpha"], default_args=args):
    EmptyOperator(task_id="t")
"""
LOAD_LIKE_THE_DAG_PROCESSOR = """\
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1], bundle_name="demo")
print(json.dumps({"errors": list(bag.import_errors.values()), "dags": list(bag.dags)}))
"""


def test_a_dag_in_one_teams_bundle_cannot_run_as_another_team(tmp_path: Path) -> None:
    """Team demo's dag-processor (its Deployment says whose bundle it parses) refuses a DAG that
    names itself into team alpha: it would otherwise run in alpha's namespace with alpha's vault."""
    from ariel_airflow.policies import local_settings_source
    from ariel_airflow.team import BUNDLE_TEAM_SETTING

    home, dags = tmp_path / "airflow", tmp_path / "dags"
    (home / "config").mkdir(parents=True)
    (home / "config" / LOCAL_SETTINGS_FILE).write_text(local_settings_source())
    dags.mkdir()
    (dags / "foreign.py").write_text(FOREIGN_DAG)
    env = {**os.environ, "AIRFLOW_HOME": str(home), BUNDLE_TEAM_SETTING: "demo"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_LIKE_THE_DAG_PROCESSOR, str(dags)],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["dags"] == []
    (error,) = loaded["errors"]
    assert "ARL603" in error and "'demo__'" in error


def test_each_teams_dag_processor_says_whose_bundle_it_parses(rendered: Any) -> None:
    for deployment in rendered.dag_processors:
        team = deployment["metadata"]["labels"]["ariel.io/team"]
        (container,) = [
            c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "dag-processor"
        ]
        assert {"name": "ARIEL_BUNDLE_TEAM", "value": team} in container["env"]


def test_a_team_namespace_enforces_the_baseline_pod_security_standard(rendered: Any) -> None:
    for objects in rendered.team_objects.values():
        (namespace,) = [o for o in objects if o["kind"] == "Namespace"]
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"


def test_task_logs_name_their_account_container_and_prefix_and_reach_every_task_pod(rendered: Any) -> None:
    """Fault 7: the account, the container and the prefix all from the environment file (none left to
    another option's default), the connection keyless (each pod signs in as its own identity), in
    the api-server (reads) and in every team's task pod (writes)."""
    from ariel_airflow.cluster import task_logs

    logs = rendered.env.task_logs
    config = rendered.values["config"]
    assert config["logging"]["remote_base_log_folder"] == "wasb://tasks"
    assert config["logging"]["remote_log_conn_id"] == task_logs.CONNECTION_ID
    assert config["azure_remote_logging"]["remote_wasb_log_container"] == logs.container
    connection = {"conn_type": "wasb", "host": f"https://{logs.storage_account}.blob.core.windows.net"}
    variable = {"name": "AIRFLOW_CONN_WASB_TASK_LOGS", "value": json.dumps(connection)}
    api_server = next(
        o
        for o in rendered.chart_objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "airflow-api-server"
    )
    assert variable in api_server["spec"]["template"]["spec"]["containers"][0]["env"]
    for name, text in rendered.team_pod_templates["data"].items():
        assert variable in yaml.safe_load(text)["spec"]["containers"][0]["env"], name
    assert task_logs.team_prefix(rendered.registry["alpha"].team) == "tasks/dag_id=alpha__"


def test_the_platform_may_run_and_read_pods_in_a_team_namespace_and_the_team_account_may_do_nothing(
    rendered: Any,
) -> None:
    for team, objects in rendered.team_objects.items():
        bindings = {o["roleRef"]["name"]: o["subjects"] for o in objects if o["kind"] == "RoleBinding"}
        roles = {o["metadata"]["name"]: o["rules"] for o in objects if o["kind"] == "Role"}
        assert bindings["airflow-pod-launcher-role"] == [
            {"kind": "ServiceAccount", "name": "airflow-scheduler", "namespace": "airflow"}
        ]
        assert bindings["airflow-pod-log-reader-role"] == [
            {"kind": "ServiceAccount", "name": "airflow-api-server", "namespace": "airflow"}
        ]
        assert {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list"]} in roles[
            "airflow-pod-log-reader-role"
        ]
        every = [o for objs in rendered.team_objects.values() for o in objs] + rendered.chart_objects
        granted = [
            s for o in every if o["kind"] in ("RoleBinding", "ClusterRoleBinding") for s in o["subjects"]
        ]
        assert not [s for s in granted if s["name"] == f"{team}-tasks"]
