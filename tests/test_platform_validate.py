"""`ariel platform validate` against the real, unmodified official chart and kubernetes-validate's
real schemas: the platform as the kit ships it passes, and each kind of mistake is named with its
file, field and fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ariel_airflow.cluster.validate import schema_version
from ariel_airflow.template import generate_team_repo

from conftest import KIT_ROOT, no_traceback, run_ariel

CHART = Path(os.environ.get("ARIEL_AIRFLOW_CHART") or KIT_ROOT.parent / "shared" / "airflow-chart" / "chart")
PLATFORM = KIT_ROOT / "platform"

pytestmark = pytest.mark.skipif(
    not CHART.is_dir() and not os.environ.get("ARIEL_AIRFLOW_CHART"),
    reason=f"the official Airflow chart is not at {CHART}: set ARIEL_AIRFLOW_CHART to its folder",
)


@pytest.fixture
def platform_dir(tmp_path: Path) -> Path:
    """A copy of the kit's platform folder, for a test to break."""
    copy = tmp_path / "platform"
    shutil.copytree(PLATFORM, copy)
    return copy


def validate(*args: str, platform_dir: Path = PLATFORM) -> subprocess.CompletedProcess:
    return run_ariel(
        "platform", "validate", *args, "--chart", str(CHART), "--platform-dir", str(platform_dir)
    )


def findings(result: subprocess.CompletedProcess, check: str) -> list[dict[str, Any]]:
    """The findings of one check in `validate --json`'s output, which must have failed with exit 1."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert no_traceback(result)
    report = json.loads(result.stdout)
    assert report["ok"] is False
    return [finding for finding in report["findings"] if finding["check"] == check]


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def render(out: Path, platform_dir: Path = PLATFORM) -> Path:
    result = run_ariel(
        "platform",
        "render",
        "prod",
        "--out",
        str(out),
        "--chart",
        str(CHART),
        "--platform-dir",
        str(platform_dir),
    )
    assert result.returncode == 0, result.stderr
    return out


def test_prod_as_shipped_passes_in_memory(tmp_path: Path) -> None:
    result = validate("prod", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["findings"] == []
    assert report["kubernetes_version"] == "1.31"  # prod.yaml's, bundled by kubernetes-validate
    assert report["objects"] > 30  # the chart's objects and the demo team's were all checked
    assert "objects checked" in result.stderr  # progress on stderr
    assert not (tmp_path / "out").exists()


def test_render_then_validate_the_rendered_files(tmp_path: Path) -> None:
    out = render(tmp_path / "out")
    result = validate("prod", "--rendered", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"prod ({out}): valid" in result.stdout


def test_misspelt_pgbouncer_key_is_named_with_its_full_path(platform_dir: Path) -> None:
    overlay = platform_dir / "helm" / "values-prod.yaml"
    overlay.write_text(
        overlay.read_text().replace("\npgbouncer:\n", "\npgbouncer:\n  maxClientConnn: 200\n", 1)
    )
    (finding,) = findings(validate("prod", "--json", platform_dir=platform_dir), "values-schema")
    assert finding["field"] == "pgbouncer.maxClientConnn"
    assert finding["where"] == str(overlay)  # the overlay, not the base values file
    assert "`maxClientConn`" in finding["fix"]


def test_unknown_top_level_key_is_named(platform_dir: Path) -> None:
    base = platform_dir / "helm" / "values.yaml"
    append(base, "executr: KubernetesExecutor\n")
    (finding,) = findings(validate("prod", "--json", platform_dir=platform_dir), "unknown-key")
    assert finding["field"] == "executr"
    assert finding["where"] == str(base)
    assert "`executor`" in finding["fix"]


def test_unknown_nested_key_the_schema_lets_pass_is_named(platform_dir: Path) -> None:
    # The chart's schema does not close serviceAccount: Helm alone accepts this typo silently.
    overlay = platform_dir / "helm" / "values-prod.yaml"
    values = yaml.safe_load(overlay.read_text())
    values["triggerer"] = {"serviceAccount": {"annotatons": {"a": "b"}}}
    overlay.write_text(yaml.safe_dump(values))
    (finding,) = findings(validate("prod", "--json", platform_dir=platform_dir), "unknown-key")
    assert finding["field"] == "triggerer.serviceAccount.annotatons"
    assert finding["where"] == str(overlay)
    assert "`annotations`" in finding["fix"]


def test_team_quota_larger_than_the_task_pool_is_refused(platform_dir: Path) -> None:
    entry = platform_dir / "teams" / "demo.yaml"
    data = yaml.safe_load(entry.read_text())
    # Two Standard_D8as_v5 task nodes have 16 vCPUs before any reservation: 16 cannot fit.
    data["quota"]["requests"]["cpu"] = "16"
    data["quota"]["limits"]["cpu"] = "16"
    entry.write_text(yaml.safe_dump(data))
    (finding,) = findings(validate("prod", "--json", platform_dir=platform_dir), "team-quota")
    assert finding["where"] == str(entry)
    assert finding["field"] == "quota.requests.cpu"
    assert "team demo's quota requests.cpu 16000m is more than the task pool 'tasks'" in finding["message"]
    assert "lower quota.requests.cpu to at most" in finding["fix"]


def test_pgbouncer_pools_over_the_database_connections_are_refused(platform_dir: Path) -> None:
    overlay = platform_dir / "helm" / "values-prod.yaml"
    overlay.write_text(overlay.read_text().replace("metadataPoolSize: 60", "metadataPoolSize: 500"))
    (finding,) = findings(validate("prod", "--json", platform_dir=platform_dir), "pgbouncer-connections")
    assert finding["where"] == str(overlay)
    assert finding["field"] == "pgbouncer.metadataPoolSize"
    # 2 replicas x (500 + 2) = 1004 > 859 - 20 reserved = 839; at most 839 // 2 - 2 = 417 per pool.
    assert "= 1004 server connections" in finding["message"]
    assert "= 839" in finding["message"]
    assert "at most 417" in finding["fix"]


def test_team_pools_beyond_the_schedulers_parallelism_are_refused(platform_dir: Path) -> None:
    overlay = platform_dir / "helm" / "values-prod.yaml"
    values = yaml.safe_load(overlay.read_text())
    # The demo team's pool has 5 slots (platform/teams/demo.yaml); one scheduler running 4 cannot serve it.
    values["scheduler"]["replicas"] = 1
    values.setdefault("config", {})["core"] = {"parallelism": 4}
    overlay.write_text(yaml.safe_dump(values))
    (finding,) = findings(validate("prod", "--json", platform_dir=platform_dir), "team-pools")
    assert (
        "hold 5 slots" in finding["message"]
        and "4 parallelism x 1 scheduler replicas = 4" in finding["message"]
    )
    assert "config.core.parallelism" in finding["fix"]


def test_core_components_larger_than_the_core_pool_are_refused(platform_dir: Path) -> None:
    overlay = platform_dir / "helm" / "values-prod.yaml"
    values = yaml.safe_load(overlay.read_text())
    assert values["apiServer"]["replicas"] == 2
    values["apiServer"]["resources"] = {"requests": {"cpu": "6"}, "limits": {"cpu": "6"}}
    values["scheduler"]["resources"] = {"requests": {"cpu": "6"}, "limits": {"cpu": "6"}}
    overlay.write_text(yaml.safe_dump(values))
    found = findings(validate("prod", "--json", platform_dir=platform_dir), "core-pool")
    # Two api-servers and two schedulers of 6 CPUs each cannot fit on the two 8-vCPU core nodes.
    assert found and all("finds no room on the core pool 'core'" in f["message"] for f in found)
    assert any(f["where"].startswith("chart/deployment-airflow-") for f in found)


def test_node_selector_of_no_pool_is_refused(platform_dir: Path) -> None:
    overlay = platform_dir / "helm" / "values-prod.yaml"
    append(overlay, "statsd:\n  nodeSelector: {ariel.io/pool: airflow-kore}\n")
    (finding,) = findings(validate("prod", "--json", platform_dir=platform_dir), "node-pools")
    assert finding["where"].startswith("chart/deployment-airflow-statsd.yaml")
    assert finding["field"] == "spec.template.spec.nodeSelector"
    assert "matches no node pool of prod" in finding["message"]


def test_object_invalid_for_kubernetes_is_named(tmp_path: Path) -> None:
    out = render(tmp_path / "out")
    path = out / "chart" / "deployment-airflow-scheduler.yaml"
    deployment = yaml.safe_load(path.read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    path.write_text(yaml.safe_dump(deployment))
    (finding,) = findings(validate("prod", "--rendered", str(out), "--json"), "kubernetes-schema")
    assert finding["where"] == str(path)
    assert finding["field"] == "spec.template.spec.containers[0].resourcez"
    assert "Kubernetes 1.31" in finding["message"]


def test_team_repo_that_agrees_with_the_registry_passes(tmp_path: Path) -> None:
    repo = generate_team_repo(tmp_path / "team-demo", "demo")
    result = validate("prod", "--team-repo", str(repo))
    assert result.returncode == 0, result.stdout + result.stderr


def test_team_pod_template_in_another_namespace_is_refused(tmp_path: Path) -> None:
    repo = generate_team_repo(tmp_path / "team-demo", "demo")
    template = repo / "pod_templates" / "base-prod.yaml"
    template.write_text(template.read_text().replace("namespace: airflow-demo", "namespace: airflow-other"))
    (finding,) = findings(validate("prod", "--team-repo", str(repo), "--json"), "team-pod-template")
    assert finding["where"] == str(template.resolve())
    assert finding["field"] == "metadata.namespace"
    assert "'airflow-other', not 'airflow-demo'" in finding["message"]


def test_rendered_folder_without_values_is_a_user_error(tmp_path: Path) -> None:
    result = validate("prod", "--rendered", str(tmp_path))
    assert result.returncode == 2
    assert "ariel platform render ENV --out DIR" in result.stderr
    assert no_traceback(result)


@pytest.mark.parametrize(("wanted", "used"), [("1.31", "1.31"), ("1.24", "1.25"), ("1.99", "1.37")])
def test_the_nearest_bundled_kubernetes_schemas_are_used_and_said(wanted: str, used: str) -> None:
    version, note = schema_version(wanted)
    assert version.startswith(f"{used}.")  # kubernetes-validate 1.37.0 bundles 1.25 to 1.37
    assert (note is None) == (wanted == used)
    if note:
        assert wanted in note and used in note


def test_prod_keeps_a_replica_of_each_replicated_component_through_a_node_drain(platform_dir: Path) -> None:
    valid = validate("prod", "--json", platform_dir=platform_dir)
    assert valid.returncode == 0 and json.loads(valid.stdout)["ok"] is True, valid.stdout
    environment = platform_dir / "environments" / "prod.yaml"
    environment.write_text(environment.read_text().replace("count: 2", "count: 1", 1))  # the core pool
    overlay = platform_dir / "helm" / "values-prod.yaml"
    values = yaml.safe_load(overlay.read_text())
    del values["scheduler"]["topologySpreadConstraints"]
    values["apiServer"]["podDisruptionBudget"] = {"enabled": False}
    overlay.write_text(yaml.safe_dump(values))
    found = findings(validate("prod", "--json", platform_dir=platform_dir), "high-availability")
    messages = [f["message"] for f in found]
    assert any("airflow-scheduler" in m and "may all land on one node" in m for m in messages)
    assert any("airflow-api-server" in m and "no PodDisruptionBudget" in m for m in messages)
    assert any("airflow-pgbouncer" in m and "node pool 'core', which has one node" in m for m in messages)
