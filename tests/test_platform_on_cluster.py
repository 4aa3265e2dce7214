"""The platform's release on the local Kubernetes, installed as the README says: what Helm installs
is exactly what `validate` checked, and an upgrade keeps Airflow's keys (named Secrets, not
generated on each render)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def installed() -> Iterator[tuple[Path, Path]]:
    """A local cluster with the `local` environment's release installed: (kubeconfig, render dir)."""
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
        secrets = run_ariel("platform", "bootstrap-secrets", "--kubeconfig", str(kubeconfig))
        assert secrets.returncode == 0, secrets.stderr
        # Hooks (the migration job) wait for a database, which the local environment lacks so far.
        run(
            helm,
            "upgrade",
            "--install",
            RELEASE,
            str(out / "release"),
            "-n",
            NAMESPACE,
            "--no-hooks",
            kubeconfig=kubeconfig,
        )
        yield kubeconfig, out
    finally:
        run_ariel("platform", "cluster", "down", "--purge", "--state-dir", str(state))
        shutil.rmtree(state, ignore_errors=True)


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


def test_an_upgrade_keeps_airflows_keys(installed: tuple[Path, Path]) -> None:
    kubeconfig, out = installed

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
    run(
        program("helm"),
        "upgrade",
        RELEASE,
        str(out / "release"),
        "-n",
        NAMESPACE,
        "--no-hooks",
        "--set",
        "airflow.config.core.parallelism=16",
        kubeconfig=kubeconfig,
    )
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


@pytest.mark.docker
@pytest.mark.slow
def test_the_platform_image_is_built_from_the_render_and_runs_on_the_task_node(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    from ariel_airflow.pins import airflow_pin

    kubeconfig, out = installed
    state = kubeconfig.parent
    loaded = run_ariel(
        "platform", "cluster", "load-images", "--rendered", str(out), "--state-dir", str(state)
    )
    assert loaded.returncode == 0, loaded.stderr
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
