"""AKS capacity: allocatable per node against AKS's published reservations worked out by hand, tasks
at once per request, the core pool's fit, and `ariel capacity` as users run it."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ariel_airflow.cluster.capacity import Amount, capacity, core_fit, fit, node_of
from ariel_airflow.cluster.environments import Environment, load_environment
from ariel_airflow.errors import UserError
from ariel_airflow.template import KIT_ROOT

from conftest import no_traceback

PLATFORM = KIT_ROOT / "platform"
Mi = 2**20


def environment(kubernetes_version: str = "1.31", **task_pool: object) -> Environment:
    """prod.yaml with another Kubernetes version and task pool settings."""
    data = yaml.safe_load((PLATFORM / "environments" / "prod.yaml").read_text())
    data["kubernetes_version"] = kubernetes_version
    data["node_pools"][1].update(task_pool)
    return Environment.model_validate({"name": "prod", **data})


def task_node(env: Environment):  # noqa: ANN201
    return node_of(env.task_pool, env)


def test_allocatable_d8as_v5_from_aks_1_29() -> None:
    node = task_node(environment("1.31", vm_size="Standard_D8as_v5"))
    # 8 vCPU: 8000m - 180m kube-reserved = 7820m. Azure CNI Overlay (AKS's default): 250 pods.
    # 32 GiB = 32768Mi - min(20*250 + 50 = 5050Mi, 25% = 8192Mi) - 100Mi eviction = 27618Mi.
    assert node.allocatable.cpu == 7820
    assert node.allocatable.memory == 27618 * Mi
    assert node.allocatable.pods == 250


@pytest.mark.parametrize(
    ("plugin", "pods", "memory"), [("kubenet", 110, 30418), ("azure-cni-node-subnet", 30, 32018)]
)
def test_max_pods_follow_the_network_plugin(plugin: str, pods: int, memory: int) -> None:
    data = yaml.safe_load((PLATFORM / "environments" / "prod.yaml").read_text())
    env = Environment.model_validate({"name": "prod", **data, "network_plugin": plugin})
    node = task_node(env)
    # 32768Mi - min(20 * pods + 50, 8192) - 100: 30418Mi for 110 pods, 32018Mi for 30.
    assert (node.allocatable.pods, node.allocatable.memory) == (pods, memory * Mi)


def test_allocatable_d8as_v5_before_aks_1_29() -> None:
    node = task_node(environment("1.28", vm_size="Standard_D8as_v5"))
    # 25% of 4096Mi = 1024, 20% of 4096 = 819.2, 10% of 8192 = 819.2, 6% of the last 16384 = 983.04:
    # 3645.44Mi kube-reserved, + 750Mi eviction = 4395.44Mi; 32768 - 4395.44 = 28372.56Mi.
    assert node.allocatable.cpu == 7820
    assert node.allocatable.memory / Mi == pytest.approx(28372.56, abs=0.01)


def test_allocatable_e4s_v5_with_110_pods() -> None:
    node = task_node(environment("1.31", vm_size="Standard_E4s_v5", max_pods=110))
    # 4 vCPU: 4000 - 140 = 3860m. 32 GiB: 32768 - min(20*110 + 50 = 2250, 8192) - 100 = 30418Mi.
    assert node.allocatable.cpu == 3860
    assert node.allocatable.memory == 30418 * Mi


def test_allocatable_d2s_v5_where_a_quarter_of_memory_caps_the_reservation() -> None:
    node = task_node(environment("1.31", vm_size="Standard_D2s_v5", max_pods=110))
    # 2 vCPU: 2000 - 100 = 1900m. 8 GiB: min(2250, 25% of 8192 = 2048) = 2048; 8192 - 2048 - 100 = 6044Mi.
    assert node.allocatable.cpu == 1900
    assert node.allocatable.memory == 6044 * Mi


def test_allocatable_d2s_v5_before_aks_1_29() -> None:
    node = task_node(environment("1.28", vm_size="Standard_D2s_v5"))
    # 25% of 4096 = 1024 + 20% of 4096 = 819.2 -> 1843.2Mi, + 750 eviction: 8192 - 2593.2 = 5598.8Mi.
    assert node.allocatable.memory / Mi == pytest.approx(5598.8, abs=0.01)


def test_explicit_cpu_and_memory_size_an_unknown_vm() -> None:
    node = task_node(environment("1.31", vm_size="Standard_F16s_v2", cpu=16, memory="32Gi"))
    # 16 vCPU: 16000 - 260 = 15740m. 32768 - min(20*250 + 50, 8192) - 100 = 27618Mi.
    assert (node.allocatable.cpu, node.allocatable.memory) == (15740, 27618 * Mi)


def test_the_proposals_example_cpu_binds_below_32_tasks() -> None:
    env = load_environment("prod", PLATFORM)  # tasks on two Standard_D8as_v5, Kubernetes 1.31
    result = fit("example", Amount(cpu=500, memory=1024 * Mi, pods=1), task_node(env))
    # Per node (Azure CNI Overlay: 250 pods), after kubelet (180m, 5050Mi + 100Mi eviction) and
    # daemonsets (100m, 300Mi, 8 pods):
    # cpu    (8000 - 180 - 100) / 500  = 15.44 -> 15
    # memory (32768 - 5150 - 300) / 1024 = 26.68 -> 26
    # pods   250 - 8 = 242
    # 15 per node on 2 nodes: 30 tasks at once, not the 32 of `parallelism`; CPU binds.
    assert result.per_node == {"cpu": 15, "memory": 26, "pods": 242}
    assert result.at_once == 30
    assert result.binds == ["cpu"]


def test_profiles_of_the_catalog_on_prod() -> None:
    from ariel_airflow.profiles import load_profiles

    report = capacity(load_environment("prod", PLATFORM), load_profiles(PLATFORM / "resource_profiles.yaml"))
    small = next(f for f in report.fits if f.name == "small")
    # small requests 250m / 512Mi: cpu 7720 / 250 = 30, memory 27318 / 512 = 53, pods 242: cpu binds.
    assert (small.at_once, small.binds) == (60, ["cpu"])


def test_core_components_fit_or_not() -> None:
    env = load_environment("prod", PLATFORM)
    one_node = env.core_pool.model_copy(update={"count": 1})
    core = node_of(one_node, env)  # one D8as_v5: 7720m and 27318Mi free
    fits = core_fit([("scheduler", "2", "4Gi"), ("api-server", "2", "4Gi"), ("triggerer", "1", "2Gi")], core)
    assert fits.fits and fits.requested == Amount(5000, 10 * 1024 * Mi, 3)
    too_much = core_fit([("scheduler", "4", "8Gi"), ("api-server", "4", "8Gi")], core)  # 8000m > 7720m
    assert not too_much.fits and too_much.unplaced == ["api-server"]


def test_unknown_vm_size_names_the_pool_and_the_fix() -> None:
    env = load_environment("prod", PLATFORM)
    pool = env.task_pool.model_copy(update={"vm_size": "Standard_F8s_v2"})  # past the model's check
    with pytest.raises(UserError) as caught:
        node_of(pool, env)
    assert "'tasks'" in caught.value.message and "set cpu and memory on the pool" in caught.value.fix


def ariel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ariel_airflow", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_json_for_prod_with_the_example_request() -> None:
    result = ariel("capacity", "prod", "--json", "--request", "cpu=500m,memory=1Gi")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    example = next(t for t in report["tasks"] if t["name"] == "cpu=500m,memory=1Gi")
    assert (example["at_once"], example["binds"]) == (30, ["cpu"])  # worked out above
    assert {t["name"] for t in report["tasks"]} >= {"small", "medium", "large"}


def test_cli_table_names_what_binds() -> None:
    result = ariel("capacity", "prod")
    assert result.returncode == 0, result.stderr
    assert "Standard_D8as_v5" in result.stdout and "tasks at once" in result.stdout


def test_cli_unknown_environment_exits_2_without_traceback() -> None:
    result = ariel("capacity", "staging", "--json")
    assert result.returncode == 2
    assert "unknown environment 'staging'" in result.stderr and "fix:" in result.stderr
    assert result.stdout == "" and no_traceback(result)


def test_cli_bad_request_exits_2(tmp_path: Path) -> None:
    result = ariel("capacity", "prod", "--request", "cpu=lots")
    assert result.returncode == 2
    assert "--request" in result.stderr and no_traceback(result)


def test_cli_missing_platform_dir_exits_2(tmp_path: Path) -> None:
    result = ariel("capacity", "prod", "--platform-dir", str(tmp_path))
    assert result.returncode == 2
    assert "environment file is missing" in result.stderr and no_traceback(result)


def test_quotas_within_the_task_pool_are_not_over_committed() -> None:
    env = environment()
    use = capacity(env, {}, quotas={"a": Amount.of("6", "20Gi", 10), "b": Amount.of("9", "30Gi", 30)}).quotas
    # Free for Airflow on two D8as_v5 task nodes: 2 x 7720m, 2 x 27318Mi, 2 x 242 pods.
    assert use.pool == Amount(15440, 2 * 27318 * Mi, 484)
    assert use.total == Amount(15000, 50 * 1024 * Mi, 40)
    assert use.over_committed == []


def test_quotas_beyond_the_task_pool_are_over_committed() -> None:
    env = environment()
    use = capacity(env, {}, quotas={"a": Amount.of("8", "20Gi", 10), "b": Amount.of("8", "20Gi", 480)}).quotas
    assert use.over_committed == ["cpu", "pods"]  # 16000m > 15440m, 490 pods > 484; memory fits


def test_cli_reports_quota_over_commit_of_the_registered_teams(tmp_path: Path) -> None:
    platform = tmp_path / "platform"
    shutil.copytree(PLATFORM, platform)
    (platform / "teams" / "big.yaml").write_text(
        "name: big\nrepository: {url: https://example.com/big.git}\n"
        "quota: {pods: 480, requests: {cpu: '14', memory: 8Gi}, limits: {cpu: '14', memory: 8Gi}}\n"
        "managed_identity_client_id: 00000000-0000-0000-0000-0000000000bb\n"
    )
    report = json.loads(ariel("capacity", "prod", "--json", "--platform-dir", str(platform)).stdout)
    assert set(report["quotas"]["teams"]) == {"demo", "big"}
    assert report["quotas"]["over_committed"] == ["cpu", "pods"]  # 16.5 CPUs, 490 pods > 484
    table = ariel("capacity", "prod", "--platform-dir", str(platform))
    assert "over-committed: cpu and pods" in table.stdout.replace("\n", " ")
