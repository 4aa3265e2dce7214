"""The team model: its names, how it reads a repository, and that the template generates the same names."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from ariel_airflow.errors import UserError
from ariel_airflow.profiles import load_profiles
from ariel_airflow.team import KEY_VAULT_BACKEND, Team, TeamRepo, is_team_name, profile_pod_templates
from ariel_airflow.template import generate_team_repo

from conftest import KIT_ROOT


def test_a_teams_names() -> None:
    team = Team("team-a", namespace="airflow-team-a", vault_urls={"prod": "https://kv-a.vault.azure.net/"})
    assert team.service_account == "team-a-tasks"
    assert team.dag_id_prefix == "team-a__"
    assert team.tag == "team:team-a"
    assert team.labels == {"ariel.io/team": "team-a", "azure.workload.identity/use": "true"}
    assert team.worker_secrets_backend_kwargs("prod") == {
        "connections_prefix": "airflow-connections-team-a",
        "variables_prefix": "airflow-variables-team-a",
        "vault_url": "https://kv-a.vault.azure.net/",
    }
    multi = Team("team-a", secrets_mode="multi_team")
    # The provider turns "_" into "-": Airflow's team-scoped names are airflow-connections-team-a--<id>
    # (tests/test_secret_names.py runs the provider's lookup).
    assert multi.secrets_prefix("connections") == "airflow-connections-team-a_"


def test_the_team_of_a_dag_or_a_pod_at_run_time() -> None:
    assert Team.from_dag("recon__daily", tags=[]) == Team("recon")
    assert Team.from_dag("daily", tags=["nightly", "team:recon"]) == Team("recon")
    assert Team.from_dag("daily", tags=None) is None
    assert Team.from_dag("Recon__daily", tags=["team:NOT A TEAM"]) is None
    assert Team.from_labels({"ariel.io/team": "recon"}) == Team("recon")
    assert Team.from_labels({}) is None
    with pytest.raises(ValueError, match="not a team name"):
        Team("Recon")


NAMES = {
    "recon": True,
    "team-a": True,
    "a": True,
    "a" * 40: True,
    "a" * 41: False,
    "team--a": False,  # Key Vault and multi-team secret names use "--"
    "Team-a": False,
    "team-": False,
    "1team": False,
    "team_a": False,
}


@pytest.mark.parametrize("name", NAMES)
def test_copier_and_the_model_accept_the_same_team_names(name: str, workdir: Path) -> None:
    from copier import run_copy

    answers = {  # valid whatever the team name, so that only team_name decides
        "team_name": name,
        "namespace": "airflow-x",
        "owner_email": "x@example.com",
        "keyvault_url_test": "https://kv-x-test.vault.azure.net/",
        "keyvault_url_prod": "https://kv-x-prod.vault.azure.net/",
    }
    try:
        run_copy(str(KIT_ROOT), workdir / "repo", data=answers, defaults=True, pretend=True, unsafe=True)
        copier_accepts = True
    except ValueError:
        copier_accepts = False
    assert copier_accepts == is_team_name(name) == NAMES[name]


ANSWERS = {
    "defaults": ("recon", {}),
    "custom": (
        "team-a",
        {
            "namespace": "data-team-a",
            "secrets_mode": "multi_team",
            "keyvault_url_dev": "https://kv-team-a-dev.vault.azure.net/",
            "resource_profiles": ["small", "large"],
        },
    ),
}


@pytest.mark.parametrize("combo", ANSWERS)
def test_every_name_the_template_generates_is_the_models(combo: str, workdir: Path) -> None:
    name, answers = ANSWERS[combo]
    repo = TeamRepo.load(generate_team_repo(workdir / name, name, **answers))
    team = repo.team
    assert team.name == name
    assert team.namespace == answers.get("namespace", f"airflow-{name}")
    environments = {"test", "prod"} | ({"dev"} if "keyvault_url_dev" in answers else set())
    assert set(team.vault_urls) == environments
    for environment in environments:
        pod = yaml.safe_load(repo.base_pod_template(environment).read_text())
        assert pod["metadata"]["namespace"] == team.namespace
        assert pod["metadata"]["labels"] == team.labels
        assert pod["spec"]["serviceAccountName"] == team.service_account
        env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
        assert env["AIRFLOW__WORKERS__SECRETS_BACKEND"] == KEY_VAULT_BACKEND
        kwargs = json.loads(env["AIRFLOW__WORKERS__SECRETS_BACKEND_KWARGS"])
        assert kwargs == team.worker_secrets_backend_kwargs(environment)
    (dag_file,) = repo.dags.glob("*.py")
    dag_id, tags = _dag_id_and_tags(dag_file)
    assert dag_id.startswith(team.dag_id_prefix)
    assert team.tag in tags
    chosen = answers.get("resource_profiles", ["small", "medium"])
    assert sorted(profile_pod_templates(repo.pod_templates)) == sorted(chosen)
    assert sorted(repo.profiles) == sorted(chosen)


def test_copier_offers_the_platforms_profile_catalog(workdir: Path) -> None:
    catalog = load_profiles(KIT_ROOT / "platform" / "resource_profiles.yaml")
    assert {"small", "medium", "large"} <= set(catalog)
    repo = TeamRepo.load(generate_team_repo(workdir / "recon", "recon", resource_profiles=list(catalog)))
    assert repo.profiles == catalog  # the catalog's profiles, requests and limits, unchanged
    with pytest.raises(ValueError, match="'huge' is not in"):
        generate_team_repo(workdir / "other", "other", resource_profiles=["huge"])


def test_a_broken_answers_file_names_the_file_and_field(workdir: Path) -> None:
    repo = generate_team_repo(workdir / "recon", "recon")
    answers = repo / ".copier-answers.yml"
    answers.write_text(answers.read_text().replace("team_name: recon", "team_name: Recon"))
    with pytest.raises(UserError) as error:
        TeamRepo.load(repo)
    assert error.value.where == f"{answers}: team_name"
    assert "'Recon' is not a team name" in error.value.message
    answers.unlink()
    with pytest.raises(UserError, match="file is missing"):
        TeamRepo.load(repo)


def _dag_id_and_tags(path: Path) -> tuple[str, list[str]]:
    """The dag_id and tags of the example DAG's @dag(...) call, read from its source."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dag":
            keywords = {k.arg: k.value for k in node.keywords}
            return ast.literal_eval(keywords["dag_id"]), ast.literal_eval(keywords["tags"])
    raise AssertionError(f"no @dag(...) in {path}")
