"""The platform's release on the local Kubernetes, installed as the README says: Airflow runs on
the database stand-in through PgBouncer with rotating Entra tokens, what Helm installs is exactly
what `validate` checked, and an upgrade keeps Airflow's keys (named Secrets, not generated on each
render)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ariel_airflow.cluster.image import airflow_image

from conftest import CHART, require_docker_daemon, run_ariel

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]

RELEASE, NAMESPACE = "airflow", "airflow"


def program(name: str) -> str:
    from ariel_airflow.localkube.build import build_all

    return str(build_all().programs[name])


def run(*argv: str, kubeconfig: Path) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, env={"KUBECONFIG": str(kubeconfig), "HOME": "/tmp"}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


DEPLOY_TIMEOUT = "600s"
# Run the tests against a cluster already up, with the platform installed by the README's steps
# (its --state-dir), instead of making one: for iterating on the kit.
REUSE_SETTING = "ARIEL_TEST_CLUSTER_STATE"
# What runs once the release is installed.
RUNNING = (
    "airflow-pgbouncer",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-triggerer",
    "airflow-dag-processor-demo",
)


@pytest.fixture(scope="module")
def installed() -> Iterator[tuple[Path, Path]]:
    """A local cluster with the `local` environment's release installed as the README says:
    (kubeconfig, render dir)."""
    reuse = os.environ.get(REUSE_SETTING)
    if reuse:  # a developer's cluster where the README's sequence ran (render in STATE/render)
        yield Path(reuse) / "kubeconfig", Path(reuse) / "render"
        return
    require_docker_daemon()
    state = Path(tempfile.mkdtemp(prefix="k8s-", dir="/tmp"))
    out = state / "render"
    env = {"ARIEL_AIRFLOW_CHART": str(CHART)}
    try:
        up = run_ariel("platform", "cluster", "up", "--state-dir", str(state), "--json", timeout=2400)
        assert up.returncode == 0, up.stderr
        status = json.loads(up.stdout)
        kubeconfig, helm = Path(status["kubeconfig"]), str(Path(status["bin"]) / "helm")  # as the README
        rendered = run_ariel("platform", "render", "local", "--out", str(out), env=env)
        assert rendered.returncode == 0, rendered.stderr
        for step in (["load-images", "--rendered", str(out)], ["standins"]):
            done = run_ariel("platform", "cluster", *step, "--state-dir", str(state), timeout=2400)
            assert done.returncode == 0, done.stderr
        secrets = run_ariel("platform", "bootstrap-secrets", "--kubeconfig", str(kubeconfig))
        assert secrets.returncode == 0, secrets.stderr
        # The migration job is a post-install hook, through PgBouncer: Helm waits for it.
        run(
            helm,
            "upgrade",
            "--install",
            RELEASE,
            str(out / "release"),
            "-n",
            NAMESPACE,
            "--timeout=15m",
            kubeconfig=kubeconfig,
        )
        for deployment in RUNNING:
            run(
                program("kubectl"),
                "-n",
                NAMESPACE,
                "rollout",
                "status",
                f"deployment/{deployment}",
                f"--timeout={DEPLOY_TIMEOUT}",
                kubeconfig=kubeconfig,
            )
        yield kubeconfig, out
    finally:
        run_ariel("platform", "cluster", "down", "--purge", "--state-dir", str(state))
        shutil.rmtree(state, ignore_errors=True)


def api_server_health(kubeconfig: Path) -> dict[str, Any]:
    """The api-server's health endpoint, through the API server's Service proxy."""
    path = f"/api/v1/namespaces/{NAMESPACE}/services/{RELEASE}-api-server:8080/proxy/api/v2/monitor/health"
    return json.loads(run(program("kubectl"), "get", "--raw", path, kubeconfig=kubeconfig))


def entra_tokens(kubeconfig: Path) -> list[str]:
    """The Entra stand-in's log lines of tokens issued for the metadata database."""
    from ariel_airflow.entra import POSTGRES_SCOPE
    from ariel_airflow.localkube import standins

    log = run(
        program("kubectl"),
        "-n",
        standins.NAMESPACE,
        "logs",
        f"deployment/{standins.NAMESPACE}",  # the stand-ins' one pod
        "-c",
        standins.ENTRA_SERVICE,
        kubeconfig=kubeconfig,
    )
    return [
        line
        for line in log.splitlines()
        if " issued to " in line and line.endswith(f"for {POSTGRES_SCOPE}, valid {standins.TOKEN_SECONDS}s")
    ]


def test_pods_get_workload_identity_as_on_aks(installed: tuple[Path, Path]) -> None:
    """The labelled pods' containers get their service account's client id and the token, as AKS's
    webhook gives them; the Entra stand-in accepted the refresher's (its token is in PgBouncer)."""
    from ariel_airflow.cluster.environments import load_environment
    from ariel_airflow.template import KIT_ROOT

    kubeconfig, _ = installed
    client_id = load_environment("local", KIT_ROOT / "platform").platform_identity.client_id
    pods = json.loads(
        run(
            program("kubectl"),
            "-n",
            NAMESPACE,
            "get",
            "pods",
            "-l",
            "component=pgbouncer",
            "-o",
            "json",
            kubeconfig=kubeconfig,
        )
    )["items"]
    containers = {c["name"]: c for c in pods[0]["spec"]["containers"]}
    env = {e["name"]: e.get("value") for e in containers["token-refresher"]["env"]}
    assert env["AZURE_CLIENT_ID"] == client_id
    assert env["AZURE_FEDERATED_TOKEN_FILE"].startswith("/var/run/secrets/azure/tokens/")
    projected = [
        v for v in pods[0]["spec"]["volumes"] if "projected" in v and v["name"] == "azure-identity-token"
    ]
    sources = projected[0]["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["audience"] == "api://AzureADTokenExchange"


def kubectl_exec(
    kubeconfig: Path, deployment: str, container: str, *command: str, check: bool = True
) -> subprocess.CompletedProcess:
    argv = [
        program("kubectl"),
        "-n",
        NAMESPACE,
        "exec",
        f"deployment/{deployment}",
        "-c",
        container,
        "--",
        *command,
    ]
    result = subprocess.run(
        argv, capture_output=True, text=True, env={"KUBECONFIG": str(kubeconfig), "HOME": "/tmp"}
    )
    assert not check or result.returncode == 0, result.stderr
    return result


def test_the_demo_team_bundle_is_parsed_from_a_git_host_that_wants_its_token(
    installed: tuple[Path, Path],
) -> None:
    """The demo team's dag-processor cloned its repository (generated from the kit's template) with
    the git connection the platform keeps in its Key Vault: its DAG is in the database."""
    kubeconfig, _ = installed
    deadline = time.monotonic() + 300
    dags: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        listed = kubectl_exec(
            kubeconfig, "airflow-scheduler", "scheduler", "airflow", "dags", "list", "-o", "json", check=False
        )
        lines = [line for line in listed.stdout.splitlines() if line.startswith("[")]
        dags = json.loads(lines[-1]) if lines else []
        if any(dag["dag_id"] == "demo__daily_export" for dag in dags):
            break
        time.sleep(10)
    assert any(dag["dag_id"] == "demo__daily_export" for dag in dags), dags
    # Without the team's token, the git host refuses the same repository.
    from ariel_airflow.cluster.registry import load_registry
    from ariel_airflow.template import KIT_ROOT

    url = load_registry(KIT_ROOT / "platform")["demo"].repository.url
    refused = kubectl_exec(
        kubeconfig,
        "airflow-dag-processor-demo",
        "dag-processor",
        "env",
        "GIT_TERMINAL_PROMPT=0",
        "git",
        "ls-remote",
        url,
        check=False,
    )
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0 and ("401" in said or "could not read Username" in said), said


def test_airflow_runs_on_the_database_through_pgbouncer(installed: tuple[Path, Path]) -> None:
    """Migrated (the components' init containers wait for it), healthy, with the Entra stand-in's
    token as PgBouncer's password, which rotates while Airflow keeps working."""
    kubeconfig, _ = installed
    health = api_server_health(kubeconfig)
    assert health["metadatabase"]["status"] == "healthy", health
    assert health["scheduler"]["status"] == "healthy", health
    assert health["triggerer"]["status"] == "healthy", health
    first = entra_tokens(kubeconfig)
    assert first, "PgBouncer never logged in with an Entra token"
    deadline = time.monotonic() + 300
    while len(entra_tokens(kubeconfig)) <= len(first) and time.monotonic() < deadline:
        time.sleep(10)
    assert len(entra_tokens(kubeconfig)) > len(first), "the database password did not rotate"
    # PgBouncer reloads with the new token, which (server TLS on) renews its server connections:
    # the next queries log in with it (the previous one is dead already in the stand-in).
    time.sleep(5)
    assert api_server_health(kubeconfig)["metadatabase"]["status"] == "healthy"


def canonical(objects: list[dict[str, Any]]) -> list[str]:
    """Objects as sorted JSON, hooks left out (Helm keeps them apart from the release's manifest)."""
    kept = [o for o in objects if "helm.sh/hook" not in o["metadata"].get("annotations", {})]
    return sorted(json.dumps(o, sort_keys=True) for o in kept)


def test_helm_installs_exactly_the_objects_validate_checks(installed: tuple[Path, Path]) -> None:
    from ariel_airflow.cluster.render import render_in_memory

    kubeconfig, _ = installed
    manifest = run(program("helm"), "get", "manifest", RELEASE, "-n", NAMESPACE, kubeconfig=kubeconfig)
    on_cluster = [doc for doc in yaml.safe_load_all(manifest) if doc]
    result = render_in_memory("local", chart=CHART)
    checked = [*result.chart_objects, *result.platform_objects()]
    assert canonical(on_cluster) == canonical(checked)
    # And they are there: a team's namespace with its quota, its own dag-processor.
    quota = run(
        program("kubectl"),
        "-n",
        "airflow-demo",
        "get",
        "resourcequota",
        "demo-quota",
        "-o",
        "json",
        kubeconfig=kubeconfig,
    )
    assert json.loads(quota)["spec"]["hard"]["pods"] == "10"
    processor = run(
        program("kubectl"),
        "-n",
        NAMESPACE,
        "get",
        "deployment",
        "airflow-dag-processor-demo",
        "-o",
        "json",
        kubeconfig=kubeconfig,
    )
    assert (
        "--bundle-name demo" in json.loads(processor)["spec"]["template"]["spec"]["containers"][0]["args"][-1]
    )


LONG_TASK_DAG = """\
import time
from datetime import datetime, timedelta

from airflow.sdk import dag, task
from ariel_airflow.profiles import profile


@dag(
    dag_id="demo__long_task",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["team:demo"],
    default_args={"owner": "demo@example.com", "retries": 0, "execution_timeout": timedelta(minutes=10)},
)
def long_task():
    @task(executor_config=profile("small"))
    def sleep_through_an_upgrade() -> None:
        time.sleep(240)  # longer than the upgrade's restarts take here (about 150 s)

    sleep_through_an_upgrade()


long_task()
"""


def wait_for_dag(kubeconfig: Path, dag_id: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while dag_id not in {d["dag_id"] for d in airflow_cli(kubeconfig, "dags", "list")}:
        assert time.monotonic() < deadline, f"{dag_id} was not parsed from the pushed commit"
        time.sleep(10)


def task_state(kubeconfig: Path, dag_id: str, run_id: str, task_id: str) -> str | None:
    states = airflow_cli(kubeconfig, "tasks", "states-for-dag-run", dag_id, run_id)
    return next((s["state"] for s in states if s["task_id"] == task_id), None)


def test_an_upgrade_while_a_task_runs_keeps_airflows_keys_and_the_task_finishes(
    installed: tuple[Path, Path],
) -> None:
    """`helm upgrade` with a changed value restarts the scheduler and the api-server while a task
    runs: the keys stay (named Secrets), so the task's execution-API token stays valid and it ends
    in success."""
    kubeconfig, out = installed
    dag_id, task_id = "demo__long_task", "sleep_through_an_upgrade"
    run_id = f"manual__through_upgrade_{time.strftime('%H%M%S')}"
    push_to_demo_repository(kubeconfig, "dags/demo_long_task.py", LONG_TASK_DAG)
    wait_for_dag(kubeconfig, dag_id)
    kubectl_exec(kubeconfig, "airflow-scheduler", "scheduler", "airflow", "dags", "unpause", dag_id)
    kubectl_exec(
        kubeconfig, "airflow-scheduler", "scheduler", "airflow", "dags", "trigger", dag_id, "--run-id", run_id
    )
    deadline = time.monotonic() + 300
    while task_state(kubeconfig, dag_id, run_id, task_id) != "running":
        assert time.monotonic() < deadline, "the long task never started"
        time.sleep(5)

    def keys() -> dict[str, Any]:
        found = {}
        for name in ("airflow-jwt-secret", "airflow-api-secret-key", "airflow-fernet-key"):
            secret = run(
                program("kubectl"),
                "-n",
                NAMESPACE,
                "get",
                "secret",
                name,
                "-o",
                "json",
                kubeconfig=kubeconfig,
            )
            found[name] = json.loads(secret)["data"]
        scheduler = run(
            program("kubectl"),
            "-n",
            NAMESPACE,
            "get",
            "deployment",
            "airflow-scheduler",
            "-o",
            "json",
            kubeconfig=kubeconfig,
        )
        found["scheduler annotations"] = json.loads(scheduler)["spec"]["template"]["metadata"]["annotations"]
        return found

    before = keys()
    current = kubectl_exec(
        kubeconfig, "airflow-scheduler", "scheduler", "airflow", "config", "get-value", "core", "parallelism"
    )
    parallelism = 31 if current.stdout.strip().splitlines()[-1] != "31" else 30  # a change, run after run
    run(
        program("helm"),
        "upgrade",
        RELEASE,
        str(out / "release"),
        "-n",
        NAMESPACE,
        "--no-hooks",
        "--set",
        f"airflow.config.core.parallelism={parallelism}",
        kubeconfig=kubeconfig,
    )
    for deployment in ("airflow-scheduler", "airflow-api-server"):
        run(
            program("kubectl"), "-n", NAMESPACE, "rollout", "status", f"deployment/{deployment}",
            f"--timeout={DEPLOY_TIMEOUT}", kubeconfig=kubeconfig,
        )  # fmt: skip
    after = keys()
    for name in ("airflow-jwt-secret", "airflow-api-secret-key", "airflow-fernet-key"):
        assert after[name] == before[name], name
    annotations = ("checksum/jwt-secret", "checksum/api-secret-key", "checksum/fernet-key")
    for annotation in annotations:
        if annotation in before["scheduler annotations"]:
            assert after["scheduler annotations"][annotation] == before["scheduler annotations"][annotation]
    assert (
        after["scheduler annotations"]["checksum/airflow-config"]
        != before["scheduler annotations"]["checksum/airflow-config"]
    ), "the changed value did not reach the cluster: the test proves nothing"
    restarted = datetime.now(UTC)  # the scheduler and the api-server are new ones from here
    deadline = time.monotonic() + 600
    while (state := task_state(kubeconfig, dag_id, run_id, task_id)) not in (
        "success",
        "failed",
        "up_for_retry",
    ):
        assert time.monotonic() < deadline, f"the task is still {state}"
        time.sleep(10)
    assert state == "success"
    (entry,) = [
        s
        for s in airflow_cli(kubeconfig, "tasks", "states-for-dag-run", dag_id, run_id)
        if s["task_id"] == task_id
    ]
    assert datetime.fromisoformat(entry["end_date"]) > restarted, "the task ended before the upgrade was over"


@pytest.mark.docker
@pytest.mark.slow
def test_the_platform_image_built_from_the_render_runs_on_the_task_node(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    from ariel_airflow.pins import airflow_pin

    kubeconfig, out = installed  # whose fixture loaded the images, as the README says
    image = airflow_image(yaml.safe_load((out / "values.yaml").read_text()))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "platform-image", "namespace": "airflow-demo"},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"ariel.io/pool": "airflow-tasks"},
            "tolerations": [
                {
                    "key": "ariel.io/pool",
                    "operator": "Equal",
                    "value": "airflow-tasks",
                    "effect": "NoSchedule",
                }
            ],
            "containers": [
                {
                    "name": "base",
                    "image": image,
                    "imagePullPolicy": "Never",  # it came from the node's containerd or nowhere
                    "args": [
                        "python",
                        "-c",
                        "import airflow, ariel_airflow.policies; print(airflow.__version__)",
                    ],
                }
            ],
        },
    }
    kubectl = program("kubectl")
    manifest = tmp_path / "pod.json"
    manifest.write_text(json.dumps(pod))
    run(kubectl, "apply", "-f", str(manifest), kubeconfig=kubeconfig)
    run(
        kubectl,
        "-n",
        "airflow-demo",
        "wait",
        "pod/platform-image",
        "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=300s",
        kubeconfig=kubeconfig,
    )
    logs = run(kubectl, "-n", "airflow-demo", "logs", "platform-image", kubeconfig=kubeconfig)
    assert logs.strip() == airflow_pin()


def airflow_cli(kubeconfig: Path, *args: str) -> Any:
    """``airflow ... -o json`` in the scheduler's container: its JSON answer."""
    done = kubectl_exec(kubeconfig, "airflow-scheduler", "scheduler", "airflow", *args, "-o", "json")
    lines = [line for line in done.stdout.splitlines() if line.startswith(("[", "{"))]
    return json.loads(lines[-1])


def test_the_demo_teams_dag_runs_in_its_namespace_as_its_identity(installed: tuple[Path, Path]) -> None:
    """A run of the demo team's DAG succeeds on the KubernetesExecutor: each task's pod in the team's
    namespace, as its service account, with its profile's resources and no platform secret, reading
    its variable and connection from the team's vault (the Key Vault stand-in serves them to the
    team's identity only)."""
    kubeconfig, _ = installed
    dag_id, run_id = "demo__daily_export", f"manual__cluster_test_{time.strftime('%H%M%S')}"
    kubectl_exec(kubeconfig, "airflow-scheduler", "scheduler", "airflow", "dags", "unpause", dag_id)
    kubectl_exec(
        kubeconfig, "airflow-scheduler", "scheduler", "airflow", "dags", "trigger", dag_id, "--run-id", run_id
    )
    deadline, state = time.monotonic() + 600, None
    while time.monotonic() < deadline:
        runs = airflow_cli(kubeconfig, "dags", "list-runs", dag_id)
        state = next((r["state"] for r in runs if r["run_id"] == run_id), None)
        if state in ("success", "failed"):
            break
        time.sleep(10)
    pods = json.loads(
        run(program("kubectl"), "-n", "airflow-demo", "get", "pods", "-o", "json", kubeconfig=kubeconfig)
    )
    ran = [p for p in pods["items"] if p["metadata"].get("annotations", {}).get("run_id") == run_id]
    assert state == "success", json.dumps([p["status"] for p in ran], indent=1)[-3000:]
    assert {p["metadata"]["annotations"]["task_id"] for p in ran} == {"wait_for_export", "load_export"}
    for pod in ran:
        assert pod["spec"]["serviceAccountName"] == "demo-tasks"
        assert pod["metadata"]["labels"]["ariel.io/team"] == "demo"
        assert "secretKeyRef" not in json.dumps(pod["spec"])
        assert pod["status"]["phase"] == "Succeeded"
    load = next(p for p in ran if p["metadata"]["annotations"]["task_id"] == "load_export")
    assert load["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "500m",
        "memory": "2Gi",
    }  # medium


# A browser's sign-in, run in the api-server's pod (it resolves Azure's names to the stand-ins and
# trusts their CA): the api-server sends it to Entra, Entra back with a code, the api-server
# redeems it and hands the browser its API token (a cookie); then the REST API paths given, as the
# person.
SIGN_IN = """\
import json, sys
import requests

api, login, paths = "http://localhost:8080", sys.argv[1], sys.argv[2:]
browser = requests.Session()
to_entra = browser.get(f"{api}/auth/login/azure", allow_redirects=False).headers["Location"]
answer = browser.get(f"{to_entra}&login_hint={login}", allow_redirects=False)
if answer.status_code != 302:
    print(json.dumps({"entra": answer.status_code, "said": answer.text}))
    sys.exit()
browser.get(answer.headers["Location"], allow_redirects=False)  # the api-server redeems the code
answers = {}
for path in paths:
    got = browser.get(f"{api}{path}", headers={"Accept": "application/json"})
    answers[path] = [got.status_code, got.json() if got.ok else got.text]
print(json.dumps({"entra": 302, "token": "_token" in browser.cookies, "answers": answers}))
"""


def sign_in(kubeconfig: Path, login: str, *paths: str) -> dict[str, Any]:
    """Sign ``login`` in through Entra and GET ``paths`` of the REST API as them."""
    done = kubectl_exec(
        kubeconfig, "airflow-api-server", "api-server", "python", "-c", SIGN_IN, login, *paths
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_person_signs_in_with_entra_id(installed: tuple[Path, Path]) -> None:
    """FAB's OAuth against the Entra stand-in: the platform administrator (app role Airflow.Admin)
    signs in and lists the DAGs through the REST API; someone Entra does not know is refused there."""
    from ariel_airflow.localkube import standins

    kubeconfig, _ = installed
    admin = sign_in(kubeconfig, standins.ADMIN_LOGIN, "/api/v2/dags")
    assert admin["token"], admin
    status, dags = admin["answers"]["/api/v2/dags"]
    assert status == 200 and "demo__daily_export" in [dag["dag_id"] for dag in dags["dags"]], admin
    stranger = sign_in(kubeconfig, "eve@example.com")
    assert stranger["entra"] == 401 and "AADSTS50034" in stranger["said"], stranger


# The proposal's open question, by experiment: a team fills its quota with a storm of poke-mode
# sensors. Twelve "small" sensors ask for more than the demo team's quota holds (10 pods,
# 2500m CPU requested); its pool holds 5 (what the quota holds of its largest profile, medium).
STORM_DAG = """\
from datetime import datetime, timedelta

from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import dag
from ariel_airflow.profiles import profile


@dag(
    dag_id="demo__quota_storm",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["team:demo"],
    default_args={"owner": "demo@example.com", "retries": 0, "execution_timeout": timedelta(minutes=10)},
)
def quota_storm():
    for number in range(12):
        PythonSensor(
            task_id=f"sensor_{number}",
            python_callable=lambda: False,  # never ready: each holds its pod until its timeout
            mode="poke",
            poke_interval=10,
            timeout=30,
            soft_fail=True,  # timed out: skipped, so a failure can only come from the platform
            executor_config=profile("small"),
        )


quota_storm()
"""
STORM_DAG_ID, STORM_TASKS, TEAM_POOL_SLOTS = "demo__quota_storm", 12, 5


def push_to_demo_repository(kubeconfig: Path, path: str, text: str) -> None:
    """Commit a file to the demo team's repository on the git stand-in (as a team member pushes)."""
    from ariel_airflow.localkube import standins

    script = (
        "set -e; rm -rf /tmp/work; git clone -q /tmp/git/example/airflow/_git/team-demo /tmp/work;"
        f" cat > /tmp/work/{path}; cd /tmp/work; git add -A;"
        " git diff --cached --quiet || git -c user.name=demo -c user.email=demo@example.com commit -qm add;"
        " git push -q origin HEAD:main"
    )
    argv = [program("kubectl"), "-n", standins.NAMESPACE, "exec", "-i", f"deployment/{standins.NAMESPACE}"]
    done = subprocess.run(
        [*argv, "-c", standins.GIT_SERVICE, "--", "sh", "-c", script],
        input=text, capture_output=True, text=True, env={"KUBECONFIG": str(kubeconfig), "HOME": "/tmp"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def task_states(kubeconfig: Path, run_id: str) -> dict[str, str]:
    states = airflow_cli(kubeconfig, "tasks", "states-for-dag-run", STORM_DAG_ID, run_id)
    return {entry["task_id"]: entry["state"] for entry in states}


def storm(kubeconfig: Path, run_id: str, seconds: float = 600) -> tuple[list[dict[str, int]], dict[str, str]]:
    """Trigger a storm run and sample its task states every 5 s until it ends."""
    kubectl_exec(
        kubeconfig,
        "airflow-scheduler",
        "scheduler",
        "airflow",
        "dags",
        "trigger",
        STORM_DAG_ID,
        "--run-id",
        run_id,
    )
    samples: list[dict[str, int]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        states = task_states(kubeconfig, run_id)
        counts: dict[str, int] = {}
        for state in states.values():
            counts[str(state)] = counts.get(str(state), 0) + 1
        samples.append(counts)
        if sum(counts.get(s, 0) for s in ("success", "skipped", "failed", "upstream_failed")) == STORM_TASKS:
            return samples, states
        time.sleep(5)
    raise AssertionError(f"the storm run {run_id} did not end: {samples[-3:]}")


def test_a_team_filling_its_quota_waits_in_its_pool_and_without_the_pool_fails(
    installed: tuple[Path, Path],
) -> None:
    """With the team's pool, the storm's tasks beyond its slots wait (scheduled), and none fails.
    Without it (the pool opened wide), the executor creates more pods than the quota admits: the API
    server refuses them (403 exceeded quota), and the executor fails those tasks at once
    (task_publish_max_retries 0). docs/platform.md records what this prints."""
    kubeconfig, _ = installed
    push_to_demo_repository(kubeconfig, "dags/demo_quota_storm.py", STORM_DAG)
    wait_for_dag(kubeconfig, STORM_DAG_ID)
    kubectl_exec(kubeconfig, "airflow-scheduler", "scheduler", "airflow", "dags", "unpause", STORM_DAG_ID)

    stamp = time.strftime("%H%M%S")  # run ids of their own: the test may run again on a kept cluster
    samples, final = storm(kubeconfig, f"storm_with_team_pool_{stamp}")
    print("with the team pool:", samples, final)
    assert max(sample.get("running", 0) for sample in samples) <= TEAM_POOL_SLOTS
    assert any(sample.get("scheduled", 0) >= STORM_TASKS - TEAM_POOL_SLOTS for sample in samples), samples
    assert set(final.values()) == {"skipped"}, final  # every sensor ran to its own timeout; none failed

    pool = airflow_cli(kubeconfig, "pools", "get", "team-demo")
    kubectl_exec(
        kubeconfig, "airflow-scheduler", "scheduler", "airflow", "pools", "set", "team-demo", "100", "open"
    )
    try:
        samples, final = storm(kubeconfig, f"storm_without_team_pool_{stamp}")
    finally:
        slots, description = str(pool[0]["slots"]), pool[0]["description"] or "team pool"
        kubectl_exec(
            kubeconfig,
            "airflow-scheduler",
            "scheduler",
            "airflow",
            "pools",
            "set",
            "team-demo",
            slots,
            description,
        )
    print("without the team pool:", samples, final)
    failed = [task for task, state in final.items() if state == "failed"]
    assert failed, final
    log = run(
        program("kubectl"),
        "-n",
        NAMESPACE,
        "logs",
        "deployment/airflow-scheduler",
        "-c",
        "scheduler",
        kubeconfig=kubeconfig,
    )
    assert "exceeded quota" in log
