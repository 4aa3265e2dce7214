"""The local Kubernetes from upstream parts (`ariel platform cluster`), on this machine for real:
pods reach the API and each other through Services and cluster DNS, the node pools' labels and
taints are on the nodes, a ResourceQuota refuses a pod, and `down` leaves nothing behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ariel_airflow.errors import UserError

from conftest import KIT_ROOT, no_traceback, require_docker_daemon, run_ariel

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(2400)]

PLATFORM = KIT_ROOT / "platform"
BASE_IMAGE_ENV = "ARIEL_BASE_IMAGE"  # the Debian base image CI builds with debootstrap


def host_snapshot() -> dict[str, set[str]]:
    """What a cluster could leave on the host, read independently of the kit's own record."""
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    iptables = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    netns = [p.name for d in (Path("/run/netns"), Path("/var/run/netns")) if d.is_dir() for p in d.iterdir()]
    cgroups = [str(p) for p in Path("/sys/fs/cgroup").glob("*/ariel-*")]
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    return {
        "mounts": {line.split()[4] for line in mountinfo},
        "links": {p.name for p in Path("/sys/class/net").iterdir()},
        "iptables": {
            line for line in iptables.splitlines() if line.startswith(("-A", ":")) and "DOCKER" not in line
        },
        "netns": set(netns),
        "cgroups": set(cgroups),
        "processes": {p for p in processes if "ariel/cluster" in p or "containerd-shim" in p},
    }


@pytest.fixture(scope="module")
def state() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="k8s-", dir="/tmp"))  # short: containerd's socket path
    yield path
    run_ariel("platform", "cluster", "down", "--purge", "--state-dir", str(path))
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def before(state: Path) -> dict[str, set[str]]:
    return host_snapshot()


@pytest.fixture
def cluster(state: Path, before: dict[str, set[str]]) -> Path:
    """The cluster up (started once for the module; `up` on a running cluster only checks it)."""
    require_docker_daemon()  # the pause and CoreDNS images are built with Docker
    result = run_ariel("platform", "cluster", "up", "--state-dir", str(state), "--json", timeout=2400)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["up"] is True
    return Path(status["kubeconfig"])


def kubectl(
    kubeconfig: Path, *args: str, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    from ariel_airflow.localkube.build import build_all

    binary = build_all().programs["kubectl"]  # from the cache: the cluster test built it
    result = subprocess.run(
        [str(binary), f"--kubeconfig={kubeconfig}", *args], input=input, capture_output=True, text=True
    )
    assert not check or result.returncode == 0, result.stderr
    return result


def base_image_loaded(state: Path) -> str:
    """The Debian base image (debootstrap, as CI builds it) in every node's containerd."""
    import os

    from ariel_airflow.cluster.environments import load_environment
    from ariel_airflow.localkube.images import load_images
    from ariel_airflow.localkube.layout import Layout

    image = os.environ.get(BASE_IMAGE_ENV, "ariel-base/debian:bookworm")
    client = require_docker_daemon()
    if not client.images.list(name=image):
        pytest.fail(f"no image {image}: build it with localdev/debootstrap-base.sh {image}")
    layout = Layout.of(state, load_environment("local", PLATFORM))
    load_images([image], layout.nodes, state / "images")
    return image


def pod(name: str, image: str, script: str, pool: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"ariel.io/pool": pool},
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["bash", "-c", script],
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "16Mi"},
                        "limits": {"cpu": "10m", "memory": "16Mi"},
                    },
                }
            ],
        },
    }


def wait_for_phase(kubeconfig: Path, name: str, namespace: str = "default", timeout: float = 120) -> str:
    result = kubectl(
        kubeconfig,
        "-n",
        namespace,
        "wait",
        f"pod/{name}",
        "--for=jsonpath={.status.phase}=Succeeded",
        f"--timeout={int(timeout)}s",
        check=False,
    )
    phase = kubectl(kubeconfig, "-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}").stdout
    assert result.returncode == 0 or phase in ("Succeeded", "Failed"), result.stderr
    return phase


def test_nodes_carry_the_node_pools_labels_and_taints(cluster: Path) -> None:
    nodes = json.loads(kubectl(cluster, "get", "nodes", "-o", "json").stdout)["items"]
    pools = yaml.safe_load((PLATFORM / "environments" / "local.yaml").read_text())["node_pools"]
    assert len(nodes) == len(pools)
    by_pool = {node["metadata"]["labels"].get("ariel.io/pool"): node for node in nodes}
    for pool in pools:
        node = by_pool[pool["labels"]["ariel.io/pool"]]
        taints = [f"{t['key']}={t.get('value', '')}:{t['effect']}" for t in node["spec"].get("taints", [])]
        assert taints == pool["taints"]
        assert node["status"]["nodeInfo"]["kubeletVersion"].startswith(
            "v" + yaml.safe_load((PLATFORM / "environments" / "local.yaml").read_text())["kubernetes_version"]
        )


def test_pods_reach_the_api_and_each_other_through_services_and_dns(cluster: Path, state: Path) -> None:
    image = base_image_loaded(state)
    dns_pod_ip = kubectl(
        cluster,
        "-n",
        "kube-system",
        "get",
        "pods",
        "-l",
        "k8s-app=kube-dns",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ).stdout
    assert dns_pod_ip.startswith("10.244.")
    script = (
        "set -e; getent hosts kubernetes.default.svc.cluster.local; "
        "getent hosts kube-dns.kube-system; "
        "exec 3<>/dev/tcp/kubernetes.default/443 && echo api-by-service; "
        f"exec 4<>/dev/tcp/{dns_pod_ip}/53 && echo dns-pod-by-ip"
    )
    for pool in ("airflow-core", "airflow-tasks"):  # from each node's bridge
        name = f"reach-{pool}"
        kubectl(cluster, "delete", "pod", name, "--ignore-not-found", "--wait=true")
        kubectl(cluster, "apply", "-f", "-", input=json.dumps(pod(name, image, script, pool)))
        assert wait_for_phase(cluster, name) == "Succeeded", kubectl(
            cluster, "logs", name, check=False
        ).stdout
        logs = kubectl(cluster, "logs", name).stdout  # through the API server and the node's kubelet
        assert "10.96.0.1" in logs and "10.96.0.10" in logs
        assert "api-by-service" in logs and "dns-pod-by-ip" in logs


def test_resource_quota_refuses_a_pod_with_403(cluster: Path, state: Path) -> None:
    image = base_image_loaded(state)
    kubectl(cluster, "create", "namespace", "quota-test", check=False)
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "one-pod", "namespace": "quota-test"},
        "spec": {"hard": {"pods": "1"}},
    }
    kubectl(cluster, "apply", "-f", "-", input=json.dumps(quota))
    kubectl(
        cluster,
        "apply",
        "-f",
        "-",
        input=json.dumps(pod("first", image, "sleep 60", "airflow-tasks", "quota-test")),
    )
    refused = kubectl(
        cluster,
        "apply",
        "-f",
        "-",
        input=json.dumps(pod("second", image, "true", "airflow-tasks", "quota-test")),
        check=False,
    )
    assert refused.returncode != 0
    assert "exceeded quota" in refused.stderr and "Forbidden" in refused.stderr


def test_status_and_up_again_report_a_running_cluster(cluster: Path, state: Path) -> None:
    result = run_ariel("platform", "cluster", "status", "--state-dir", str(state), "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert {"etcd", "kube-apiserver", "kube-proxy"} <= set(status["processes"])
    assert all(status["processes"].values()) and all(status["nodes"].values())
    t0 = time.monotonic()
    again = run_ariel("platform", "cluster", "up", "--state-dir", str(state))
    assert again.returncode == 0 and "already up" in again.stderr
    assert time.monotonic() - t0 < 60


def test_down_stops_everything_and_leaves_nothing_behind(
    cluster: Path, state: Path, before: dict[str, set[str]]
) -> None:
    during = host_snapshot()
    assert during["links"] - before["links"], "the cluster made no network device: nothing was tested"
    assert during["mounts"] - before["mounts"] and during["processes"] - before["processes"]
    # A device another program made while the cluster ran (a Docker network, say) is not the cluster's.
    subprocess.run(["ip", "link", "add", "notours0", "type", "veth", "peer", "name", "notours1"], check=True)
    try:
        result = run_ariel("platform", "cluster", "down", "--state-dir", str(state), "--json")
        assert result.returncode == 0, result.stderr
        assert Path("/sys/class/net/notours0").exists(), "down removed a device it did not make"
    finally:
        subprocess.run(["ip", "link", "delete", "notours0"], capture_output=True)
    after = host_snapshot()
    for kind in after:
        assert after[kind] - before[kind] == set(), kind
    status = run_ariel("platform", "cluster", "status", "--state-dir", str(state))
    assert status.returncode == 1 and no_traceback(status)
    again = run_ariel("platform", "cluster", "down", "--state-dir", str(state))
    assert again.returncode == 0 and "nothing was running" in again.stdout


def test_a_state_dir_too_long_for_containerd_is_refused_with_the_fix() -> None:
    from ariel_airflow.localkube.cluster import LocalCluster

    with pytest.raises(UserError) as refused:
        LocalCluster(Path("/tmp") / ("x" * 100), PLATFORM)
    assert "--state-dir" in str(refused.value)
