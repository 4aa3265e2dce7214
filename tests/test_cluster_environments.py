"""The platform's environment files: the committed ones load, bad ones are refused with file, field
path and fix."""

import shutil
from pathlib import Path

import pytest
import yaml

from ariel_airflow.cluster.environments import load_environment
from ariel_airflow.errors import UserError
from ariel_airflow.team import ENVIRONMENTS
from ariel_airflow.template import KIT_ROOT

PLATFORM = KIT_ROOT / "platform"


@pytest.mark.parametrize("name", ENVIRONMENTS)
def test_committed_environment_loads(name: str) -> None:
    env = load_environment(name, PLATFORM)
    assert env.core_pool.taints == ["dedicated=airflow:NoSchedule"]
    # The teams' pod templates select and tolerate the task pool by this label and taint.
    assert env.task_pool.labels["ariel.io/pool"] == "airflow-tasks"
    assert "ariel.io/pool=airflow-tasks:NoSchedule" in env.task_pool.taints
    assert env.allow_secret_push is (name != "prod")


def test_prod_is_the_proposals_sizing() -> None:
    env = load_environment("prod", PLATFORM)
    assert (env.core_pool.vm_size, env.core_pool.count) == ("Standard_D8as_v5", 2)
    assert (env.task_pool.vm_size, env.task_pool.count) == ("Standard_D8as_v5", 2)


def _write_prod_with(tmp_path: Path, edit) -> Path:  # noqa: ANN001 - a function editing the data
    data = yaml.safe_load((PLATFORM / "environments" / "prod.yaml").read_text())
    edit(data)
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "prod.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


def _refusal(tmp_path: Path, edit) -> UserError:  # noqa: ANN001
    platform = _write_prod_with(tmp_path, edit)
    with pytest.raises(UserError) as caught:
        load_environment("prod", platform)
    return caught.value


def test_unknown_key_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    error = _refusal(tmp_path, lambda d: d.__setitem__("node_pool", d["node_pools"]))
    assert error.where == f"{tmp_path / 'environments' / 'prod.yaml'}: node_pool"
    assert "unknown field 'node_pool'" in error.message
    assert "did you mean `node_pools`" in error.fix


def test_unknown_key_inside_a_pool_names_the_pool_fields(tmp_path: Path) -> None:
    error = _refusal(tmp_path, lambda d: d["node_pools"][1].__setitem__("maxPods", 50))
    assert error.where.endswith("prod.yaml: node_pools.1.maxPods")
    assert "did you mean `max_pods`" in error.fix


def test_malformed_taint_is_refused(tmp_path: Path) -> None:
    error = _refusal(tmp_path, lambda d: d["node_pools"][0].__setitem__("taints", ["dedicated=airflow"]))
    assert error.where.endswith("prod.yaml: node_pools.0.taints")
    assert "'dedicated=airflow' is not a taint" in error.message
    assert "key=value:Effect" in error.fix


def test_unknown_vm_size_without_cpu_and_memory_is_refused(tmp_path: Path) -> None:
    error = _refusal(tmp_path, lambda d: d["node_pools"][1].__setitem__("vm_size", "Standard_F8s_v2"))
    assert error.where.endswith("prod.yaml: node_pools.1")
    assert "Standard_F8s_v2" in error.message
    assert "set cpu (vCPUs) and memory" in error.fix and "'tasks'" in error.fix


def test_unknown_vm_size_with_cpu_and_memory_loads(tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        data["node_pools"][1].update(vm_size="Standard_F8s_v2", cpu=8, memory="16Gi")

    env = load_environment("prod", _write_prod_with(tmp_path, edit))
    assert env.task_pool.cpu == 8


def test_unpinned_chart_version_is_refused(tmp_path: Path) -> None:
    error = _refusal(tmp_path, lambda d: d["chart"].__setitem__("version", "^1.19"))
    assert error.where.endswith("prod.yaml: chart.version")
    assert "exact version" in error.fix


def test_missing_task_pool_taint_is_refused(tmp_path: Path) -> None:
    error = _refusal(tmp_path, lambda d: d["node_pools"][1].__setitem__("taints", []))
    assert "airflow-tasks" in error.message
    assert "taints: [ariel.io/pool=airflow-tasks:NoSchedule]" in error.fix


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(UserError) as caught:
        load_environment("staging", PLATFORM)
    assert "unknown environment 'staging'" in caught.value.message
    assert "dev, local, prod, test" in caught.value.fix and "environments/staging.yaml" in caught.value.fix


def test_an_environment_is_added_by_adding_its_file(tmp_path: Path) -> None:
    platform = tmp_path / "platform"
    shutil.copytree(PLATFORM, platform)
    qa = platform / "environments" / "qa.yaml"
    qa.write_text((platform / "environments" / "test.yaml").read_text())
    assert load_environment("qa", platform).name == "qa"
