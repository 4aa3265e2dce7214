"""`ariel check`: every rule proven to fire on the corpus and to stay quiet on good code."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from ariel_airflow.checks.runner import CheckResult, run_check
from ariel_airflow.rules.base import Finding
from ariel_airflow.template import generate_team_repo

from conftest import KIT_ROOT, run_ariel

CORPUS = KIT_ROOT / "tests" / "corpus"


def team_repo(dest: Path) -> Path:
    return generate_team_repo(dest, "recon", resource_profiles=["small", "medium"])


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CheckResult]:
    repo = team_repo(tmp_path_factory.mktemp("good") / "recon")
    return repo, run_check(repo)


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CheckResult]:
    repo = team_repo(tmp_path_factory.mktemp("bad") / "recon")
    shutil.copytree(CORPUS / "dags", repo / "dags", dirs_exist_ok=True)
    secrets = yaml.safe_load((repo / "secrets.yaml").read_text())
    secrets["variables"]["recon_never_used"] = {"description": "declared, never read"}
    (repo / "secrets.yaml").write_text(yaml.safe_dump(secrets))
    base = repo / "pod_templates" / "base-test.yaml"
    base.write_text(base.read_text().replace("  nodeSelector:", "  nodeSelectr:"))
    return repo, run_check(repo)


def find(result: CheckResult, rule: str, **where: str) -> list[Finding]:
    return [
        f for f in result.findings if f.rule == rule and all(getattr(f, k) == v for k, v in where.items())
    ]


def test_the_generated_repository_is_clean(good: tuple[Path, CheckResult]) -> None:
    _, result = good
    assert result.findings == []
    assert result.exit_code == 0


def test_import_errors_name_file_and_line(bad: tuple[Path, CheckResult]) -> None:
    repo, result = bad
    (error,) = find(result, "ARL001")
    assert error.file == str(repo / "dags" / "broken_syntax.py") and error.line == 3
    assert "SyntaxError" in error.message


def test_poke_sensors_need_a_short_timeout(bad: tuple[Path, CheckResult]) -> None:
    _, result = bad
    assert find(result, "ARL101", task_id="poke_forever")
    for task_id in ("poke_short", "reschedule_long", "reschedule_default"):
        assert not find(result, "ARL101", task_id=task_id)
    assert find(result, "ARL102", task_id="reschedule_default")
    assert not find(result, "ARL102", task_id="reschedule_long")


def test_a_deferrable_task_naming_a_team_connection_is_warned(bad: tuple[Path, CheckResult]) -> None:
    """Its trigger runs in the platform's triggerer, as the platform's identity: the team's vault is
    not readable there."""
    _, result = bad
    (finding,) = find(result, "ARL103")
    assert finding.task_id == "deferred_with_team_connection" and "'recon_blob'" in finding.message
    assert finding.severity == "warning"


def test_catchup_explosion_names_the_number_of_runs(bad: tuple[Path, CheckResult]) -> None:
    _, result = bad
    (storm,) = find(result, "ARL201", dag_id="recon__catchup_storm")
    assert re.search(r"create 9[67] runs", storm.message)  # hourly for four days, the edges inclusive
    assert not find(result, "ARL201", dag_id="recon__catchup_bounded")  # 3 runs


def test_pod_template_typos_are_errors_not_silently_dropped(bad: tuple[Path, CheckResult]) -> None:
    repo, result = bad
    (typo,) = [f for f in find(result, "ARL301") if f.task_id is None]
    assert typo.file == str(repo / "pod_templates" / "base-test.yaml")
    assert "nodeSelectr" in typo.message and "did you mean 'nodeSelector'" in typo.message
    assert typo.line is not None


def test_effective_pod_resources(bad: tuple[Path, CheckResult]) -> None:
    _, result = bad
    (greedy,) = find(result, "ARL302", task_id="greedy")
    assert "limits.cpu 4 is more than 1.5x requests.cpu 1" in greedy.message
    assert not find(result, "ARL302", task_id="with_profile")


def test_pods_stay_in_the_team_namespace_with_its_service_account(bad: tuple[Path, CheckResult]) -> None:
    _, result = bad
    messages = " ".join(f.message for f in find(result, "ARL401", task_id="elsewhere"))
    assert "kube-system" in messages and "'default'" in messages
    assert not find(result, "ARL401", task_id="with_profile")


def test_a_task_with_its_own_pod_template_is_checked_for_placement(bad: tuple[Path, CheckResult]) -> None:
    _, result = bad
    messages = sorted(f.message for f in find(result, "ARL401", task_id="own_template"))
    assert len(messages) == 4, messages  # namespace, two labels, service account
    assert any("names no namespace" in m and "'airflow-recon'" in m for m in messages)
    assert any("ariel.io/team: 'recon'" in m for m in messages)
    assert any("'recon-tasks'" in m for m in messages)
    assert not find(result, "ARL302", task_id="own_template")  # its resources are within the limits
    (missing,) = find(result, "ARL301", task_id="missing_template")
    assert "'/nowhere/pod.yaml' does not exist" in missing.message


def test_undeclared_secrets_are_errors_and_unused_ones_warnings(bad: tuple[Path, CheckResult]) -> None:
    _, result = bad
    undeclared = {f.message.split("'")[1] for f in find(result, "ARL501")}
    assert undeclared == {"recon_undeclared_variable", "recon_templated_conn", "recon_blob"}
    unused = [f for f in find(result, "ARL502") if "recon_never_used" in f.message]
    assert unused and unused[0].severity == "warning"


def test_ownership_and_hygiene(bad: tuple[Path, CheckResult]) -> None:
    _, result = bad
    assert find(result, "ARL603", dag_id="orphan_dag")
    assert find(result, "ARL602", dag_id="orphan_dag")
    assert find(result, "ARL601", task_id="bare")
    assert find(result, "ARL605", task_id="bare")
    assert find(result, "ARL604", task_id="bare")[0].severity == "warning"
    for rule in ("ARL601", "ARL602", "ARL603", "ARL605"):
        assert not find(result, rule, dag_id="recon__sensors")


def test_cli_formats_and_exit_codes(bad: tuple[Path, CheckResult]) -> None:
    repo, result = bad
    as_json = run_ariel("check", str(repo), "--format", "json")
    assert as_json.returncode == 1
    findings = json.loads(as_json.stdout)
    assert len(findings) == len(result.findings)
    assert {"file", "line", "rule", "severity", "message"} <= set(findings[0])
    assert all(not f["file"] or not f["file"].startswith("/") for f in findings)  # relative to the repo
    junit = run_ariel("check", str(repo), "--format", "junit", "--select", "ARL101,catchup-explosion")
    suite = ET.fromstring(junit.stdout)
    assert suite.get("failures") == "2"
    text = run_ariel(
        "check",
        str(repo),
        "--ignore",
        "ARL001,ARL101,ARL201,ARL301,ARL302,ARL401,ARL402,ARL501,ARL601,ARL602,ARL603,ARL605",
    )
    assert text.returncode == 0  # only warnings left
    assert "warning" in text.stdout and "dags/sensors.py" in text.stdout


def test_check_that_cannot_run_exits_2(tmp_path: Path) -> None:
    repo = team_repo(tmp_path / "recon")
    (repo / "secrets.yaml").write_text("connections:\n  x: {colour: blue}\n")
    result = run_ariel("check", str(repo))
    assert result.returncode == 2
    assert "secrets.yaml: connections.x.colour" in result.stderr and "Traceback" not in result.stderr
    assert run_ariel("check", str(repo), "--select", "ARL999").returncode == 2


@pytest.mark.slow
def test_airflows_own_example_dags_do_not_crash_the_check(tmp_path: Path) -> None:
    import airflow.example_dags

    repo = team_repo(tmp_path / "recon")
    shutil.copytree(Path(airflow.example_dags.__file__).parent, repo / "dags" / "airflow_examples")
    result = run_ariel("check", str(repo), "--format", "json")
    assert result.returncode == 1, result.stderr[-2000:]
    findings = json.loads(result.stdout)
    assert any(f["rule"] == "ARL603" for f in findings)  # their dag_ids have no team prefix


def test_a_task_naming_another_pool_is_reported(bad: tuple[Path, CheckResult]) -> None:
    _, result = bad
    for task_id in ("other_team", "own_throttle", "mapped_other_team"):
        (finding,) = find(result, "ARL402", task_id=task_id)
        assert finding.severity == "error" and "'team-recon'" in finding.message
    for task_id in ("own_pool", "no_pool"):
        assert not find(result, "ARL402", task_id=task_id)


def test_cluster_policies_refuse_what_the_check_reports() -> None:
    from airflow.exceptions import AirflowClusterPolicyViolation
    from airflow.providers.standard.sensors.python import PythonSensor
    from airflow.sdk import DAG

    from ariel_airflow import policies

    with DAG("recon__x", schedule=None, tags=["team:recon"]) as dag:
        sensor = PythonSensor(task_id="poke", python_callable=lambda: True, owner="recon", retries=1)
    policies.dag_policy(dag)  # a clean DAG passes
    with pytest.raises(AirflowClusterPolicyViolation, match="ARL101"):
        policies.task_policy(sensor)
    assert (KIT_ROOT / "platform" / "config" / "airflow_local_settings.py").read_text().count(
        "from ariel_airflow.policies import dag_policy, pod_mutation_hook, task_policy"
    ) == 1


def test_pod_mutation_hook_refuses_greedy_or_misplaced_pods(tmp_path: Path) -> None:
    from airflow.exceptions import AirflowClusterPolicyViolation
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    from ariel_airflow import policies

    repo = team_repo(tmp_path / "recon")
    base = PodGenerator.deserialize_model_file(str(repo / "pod_templates" / "base-prod.yaml"))
    policies.pod_mutation_hook(base)  # the team's own template is accepted
    base.spec.containers[0].resources.limits["memory"] = "4Gi"  # 8x the 512Mi request
    with pytest.raises(AirflowClusterPolicyViolation, match="ARL302"):
        policies.pod_mutation_hook(base)
    base.spec.containers[0].resources.limits["memory"] = "768Mi"
    base.spec.service_account_name = "default"
    with pytest.raises(AirflowClusterPolicyViolation, match="ARL401"):
        policies.pod_mutation_hook(base)


def test_declarations_key_vault_cannot_hold(tmp_path: Path) -> None:
    repo = team_repo(tmp_path / "recon")
    shutil.copy(CORPUS / "secrets" / "vault_names.yaml", repo / "secrets.yaml")
    result = run_ariel("check", str(repo), "--format", "json", "--select", "ARL503,ARL504,ARL505")
    assert result.returncode == 1, result.stderr[-2000:]
    found = {(f["rule"], f["line"]): f["message"] for f in json.loads(result.stdout)}
    assert sorted(found) == [("ARL503", 6), ("ARL503", 10), ("ARL504", 7), ("ARL505", 5), ("ARL505", 13)]
    assert all(f["file"] == "secrets.yaml" for f in json.loads(result.stdout))
    assert "'partner.sftp'" in found["ARL503", 6] and "holds '.'" in found["ARL503", 6]
    assert "is 129 characters long; Key Vault allows at most 127" in found["ARL503", 10]
    assert (
        "'recon__legacy' in secrets.yaml becomes 'airflow-connections-recon-recon--legacy'"
        in found["ARL504", 7]
    )
    assert "'my_conn' and 'my-conn'" in found["ARL505", 5] and "rename the other" in found["ARL505", 5]
    assert "'Batch_Size' and 'batch-size'" in found["ARL505", 13]
