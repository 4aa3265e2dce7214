"""The copier template: generated team repositories pass their own checks and stay updatable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ariel_airflow.errors import UserError
from ariel_airflow.limits import MAX_LIMIT_REQUEST_RATIO
from ariel_airflow.profiles import load_profiles, parse_quantity
from ariel_airflow.template import generate_team_repo

from conftest import KIT_ROOT


def copier_copy(*args: str) -> subprocess.CompletedProcess:
    """The copier command line, as teams and scripts run it, rendering the working tree."""
    return subprocess.run(
        [sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--vcs-ref", "HEAD", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", message)


def init_repo(repo: Path) -> None:
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "Start from the ARIEL template")


def run_nox(repo: Path, *sessions: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ARIEL_KIT_SOURCE": str(KIT_ROOT)}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        [sys.executable, "-m", "nox", "-s", *sessions],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


COMBINATIONS = {
    "defaults": {},
    "multi-team-no-examples": {
        "secrets_mode": "multi_team",
        "resource_profiles": ["large"],
        "ci_provider": "both",
        "include_examples": False,
        "keyvault_url_dev": "https://kv-team-a-dev.vault.azure.net/",
    },
    "all-profiles-azure": {"resource_profiles": ["small", "medium", "large"], "ci_provider": "azure"},
}
TEAMS = {"defaults": "recon", "multi-team-no-examples": "team-a", "all-profiles-azure": "payments"}


@pytest.mark.slow
@pytest.mark.parametrize("combo", COMBINATIONS)
def test_generated_repo_passes_its_own_lint_tests_and_check(combo: str, workdir: Path) -> None:
    team, answers = TEAMS[combo], COMBINATIONS[combo]
    repo = generate_team_repo(workdir / team, team, **answers)
    init_repo(repo)
    result = run_nox(repo, "lint", "tests", "check")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert git(repo, "status", "--porcelain") == ""  # nothing reformatted, nothing left behind
    assert ".local/" in (repo / ".gitignore").read_text()
    assert not git(repo, "ls-files", ".local")  # local secret values never committed


@pytest.mark.parametrize("combo", COMBINATIONS)
def test_generated_files_follow_the_answers(combo: str, workdir: Path) -> None:
    team, answers = TEAMS[combo], COMBINATIONS[combo]
    repo = generate_team_repo(workdir / team, team, **answers)
    chosen = answers.get("resource_profiles", ["small", "medium"])
    assert sorted(p.name for p in (repo / "pod_templates").glob("profile-*.yaml")) == sorted(
        f"profile-{p}.yaml" for p in chosen
    )
    assert sorted(load_profiles(repo / "resource_profiles.yaml")) == sorted(chosen)
    environments = {"test", "prod"} | ({"dev"} if answers.get("keyvault_url_dev") else set())
    assert {
        p.stem.removeprefix("base-") for p in (repo / "pod_templates").glob("base-*.yaml")
    } == environments
    ci = answers.get("ci_provider", "github")
    assert (repo / ".github/workflows/ci.yml").exists() == (ci in ("github", "both"))
    assert (repo / "azure-pipelines.yml").exists() == (ci in ("azure", "both"))
    dags = list((repo / "dags").glob("*.py"))
    assert bool(dags) == answers.get("include_examples", True)
    declared = yaml.safe_load((repo / "secrets.yaml").read_text())
    local_conns = yaml.safe_load((repo / ".local/connections.yaml").read_text())
    local_vars = yaml.safe_load((repo / ".local/variables.yaml").read_text())
    assert set(declared["connections"]) == set(local_conns)  # a placeholder for each declared entry
    assert set(declared["variables"]) == set(local_vars)
    answers_file = yaml.safe_load((repo / ".copier-answers.yml").read_text())
    assert answers_file["team_name"] == team


def test_pod_templates_are_what_the_executor_reads(workdir: Path) -> None:
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    repo = generate_team_repo(workdir / "recon", "recon", secrets_mode="prefix")
    base = PodGenerator.deserialize_model_file(str(repo / "pod_templates" / "base-prod.yaml"))
    assert base.metadata.namespace == "airflow-recon"
    assert base.metadata.labels["azure.workload.identity/use"] == "true"
    assert base.spec.service_account_name == "recon-tasks"
    assert base.spec.tolerations and base.spec.node_selector
    env = {e.name: e.value for e in base.spec.containers[0].env}
    kwargs = yaml.safe_load(env["AIRFLOW__WORKERS__SECRETS_BACKEND_KWARGS"])
    assert kwargs == {
        "connections_prefix": "airflow-connections-recon",
        "variables_prefix": "airflow-variables-recon",
        "vault_url": "https://kv-recon-prod.vault.azure.net/",
    }
    for path in (repo / "pod_templates").glob("profile-*.yaml"):
        resources = PodGenerator.deserialize_model_file(str(path)).spec.containers[0].resources
        for key in ("cpu", "memory"):
            ratio = parse_quantity(resources.limits[key]) / parse_quantity(resources.requests[key])
            assert ratio <= MAX_LIMIT_REQUEST_RATIO, (path.name, key)


def test_multi_team_mode_uses_the_team_scoped_key_vault_names(workdir: Path) -> None:
    repo = generate_team_repo(workdir / "team-a", "team-a", secrets_mode="multi_team")
    text = (repo / "pod_templates" / "base-prod.yaml").read_text()
    # The provider joins prefix and id with "-" and turns "_" into "-": airflow-connections-team-a--<id>.
    assert '"connections_prefix": "airflow-connections-team-a_"' in text


def test_platform_catalog_profiles_respect_the_ratio(workdir: Path) -> None:
    catalog = KIT_ROOT / "platform" / "resource_profiles.yaml"
    assert load_profiles(catalog)  # raises past the ratio, as a greedy copy of it does:
    greedy = workdir / "resource_profiles.yaml"
    greedy.write_text(catalog.read_text().replace("limits: {cpu: 375m,", "limits: {cpu: 500m,"))
    with pytest.raises(UserError) as error:
        load_profiles(greedy)
    assert error.value.where == f"{greedy}: small"
    assert "limits.cpu / requests.cpu must be above 0 and at most 1.5 (is 500m / 250m)" in error.value.message


def test_copier_cli_with_defaults_needs_only_the_team_name(workdir: Path) -> None:
    result = copier_copy("--data", "team_name=recon", str(KIT_ROOT), str(workdir / "team-recon"))
    assert result.returncode == 0, result.stderr
    answers = yaml.safe_load((workdir / "team-recon" / ".copier-answers.yml").read_text())
    assert answers["namespace"] == "airflow-recon"
    assert answers["keyvault_url_prod"] == "https://kv-recon-prod.vault.azure.net/"
    assert (workdir / "team-recon" / "dags" / "recon_daily_export.py").exists()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("team_name=Team_A!", "team_name must be lower-case letters, digits and single dashes"),
        ("owner_email=not-an-email", "owner_email must be an email address"),
        (
            "keyvault_url_prod=https://example.com/vault",
            "keyvault_url_prod must look like https://<vault-name>.vault.azure.net/",
        ),
        ("keyvault_url_dev=http://kv-x.vault.azure.net/", "keyvault_url_dev must look like"),
    ],
)
def test_bad_answers_fail_with_the_validator_message(answer: str, message: str, workdir: Path) -> None:
    data = [] if answer.startswith("team_name=") else ["--data", "team_name=recon"]
    result = copier_copy(*data, "--data", answer, str(KIT_ROOT), str(workdir / "out"))
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert not (workdir / "out" / "dags").exists()  # nothing half-written


def _kit_release(kit: Path, tag: str) -> None:
    commit_all(kit, f"release {tag}")
    git(kit, "tag", tag)


def _platform_change(kit: Path) -> None:
    """What a later kit release does: a new pod label, a new platform file, a renamed test file."""
    macros = kit / "template_macros" / "pod.jinja"
    macros.write_text(
        macros.read_text().replace(
            "    ariel.io/team: {{ team_name }}\n",
            "    ariel.io/team: {{ team_name }}\n    ariel.io/managed-by: ariel\n",
        )
    )
    (kit / "template" / ".editorconfig").write_text("root = true\n\n[*]\nend_of_line = lf\n")
    tests = kit / "template" / "tests"
    (tests / "test_dag_integrity.py").rename(tests / "test_platform_rules.py")
    config = kit / "copier.yml"
    config.write_text(
        config.read_text()
        + "\n_migrations:\n"
        + "  - version: v0.2.0\n"
        + "    when: \"{{ _stage == 'before' }}\"\n"
        + "    command: [git, mv, tests/test_dag_integrity.py, tests/test_platform_rules.py]\n"
    )


def test_copier_update_keeps_the_team_work_and_brings_the_platform_changes(workdir: Path) -> None:
    from copier import run_copy, run_update

    kit = workdir / "kit"
    shutil.copytree(
        KIT_ROOT,
        kit,
        ignore=shutil.ignore_patterns(".git", ".nox", ".venv", "build", ".ariel", "__pycache__"),
    )
    git(kit, "init", "-q", "-b", "main")
    _kit_release(kit, "v0.1.0")
    _platform_change(kit)
    _kit_release(kit, "v0.2.0")

    repo = workdir / "recon"
    run_copy(
        str(kit), repo, data={"team_name": "recon"}, defaults=True, unsafe=True, vcs_ref="v0.1.0", quiet=True
    )
    init_repo(repo)
    # The team's work: an edited DAG, a new DAG, a newly declared secret, an edited README.
    dag = repo / "dags" / "recon_daily_export.py"
    dag.write_text(dag.read_text().replace("poke_interval=300", "poke_interval=600  # team: slower pokes"))
    (repo / "dags" / "recon_hourly_sync.py").write_text('"""The team\'s own DAG."""\n')
    secrets = yaml.safe_load((repo / "secrets.yaml").read_text())
    secrets["connections"]["recon_sftp"] = {"type": "sftp", "description": "Partner SFTP"}
    (repo / "secrets.yaml").write_text(yaml.safe_dump(secrets, sort_keys=False))
    (repo / "README.md").write_text((repo / "README.md").read_text() + "\nOn call: #recon-oncall\n")
    commit_all(repo, "team work")

    run_update(
        repo, defaults=True, overwrite=True, unsafe=True, vcs_ref="v0.2.0", quiet=True, skip_answered=True
    )

    assert "poke_interval=600  # team: slower pokes" in dag.read_text()
    assert (repo / "dags" / "recon_hourly_sync.py").exists()
    assert "recon_sftp" in yaml.safe_load((repo / "secrets.yaml").read_text())["connections"]
    assert "#recon-oncall" in (repo / "README.md").read_text()
    assert "ariel.io/managed-by: ariel" in (repo / "pod_templates" / "base-prod.yaml").read_text()
    assert (repo / ".editorconfig").exists()
    assert (repo / "tests" / "test_platform_rules.py").exists()
    assert not (repo / "tests" / "test_dag_integrity.py").exists()
    assert yaml.safe_load((repo / ".copier-answers.yml").read_text())["_commit"] == "v0.2.0"
    leftovers = [p for p in repo.rglob("*") if ".git" not in p.parts and p.suffix == ".rej"]
    assert leftovers == []
    conflicted = subprocess.run(
        ["grep", "-rlE", "^(<<<<<<<|>>>>>>>)", "--exclude-dir=.git", str(repo)],
        capture_output=True,
        text=True,
    ).stdout
    assert conflicted == ""
