"""The team registry (platform/teams/): the team model plus what only the platform knows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ariel_airflow.cluster.registry import load_registry
from ariel_airflow.errors import UserError
from ariel_airflow.team import Team, TeamRepo
from ariel_airflow.template import generate_team_repo

from conftest import KIT_ROOT, no_traceback, run_ariel

CLIENT_ID = "11111111-2222-3333-4444-555555555555"


def test_the_committed_registry_loads_as_team_models() -> None:
    registry = load_registry(KIT_ROOT / "platform")
    demo = registry["demo"]
    assert demo.team == Team(
        "demo",
        namespace="airflow-demo",
        vault_urls={
            "local": "https://kv-demo-local.vault.azure.net/",
            "test": "https://kv-demo-test.vault.azure.net/",
            "prod": "https://kv-demo-prod.vault.azure.net/",
        },
    )
    assert demo.team.service_account == "demo-tasks"


@pytest.fixture
def platform_dir(workdir: Path) -> Path:
    for folder in ("teams", "environments"):  # a team's vaults are per environment of the platform
        shutil.copytree(KIT_ROOT / "platform" / folder, workdir / folder)
    return workdir


def edit(platform_dir: Path, name: str, change: dict, rename: str | None = None) -> Path:
    path = platform_dir / "teams" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(change)
    target = platform_dir / "teams" / f"{rename or name}.yaml"
    path.unlink()
    target.write_text(yaml.safe_dump(data))
    return target


BAD_ENTRIES = {
    "bad name": ({"name": "Demo"}, "Demo", "name", "'Demo' is not a team name"),
    "file named after another team": ({"name": "other"}, None, "name", "is named 'demo.yaml'"),
    "unknown environment": (
        {"key_vaults": {"qa": "https://kv.vault.azure.net/"}},
        None,
        "key_vaults",
        "'qa'",
    ),
    "limits below requests": (
        {
            "quota": {
                "pods": 5,
                "requests": {"cpu": "2", "memory": "4Gi"},
                "limits": {"cpu": "1", "memory": "4Gi"},
            }
        },
        None,
        "quota",
        "limits.cpu must be at least requests.cpu",
    ),
    "client id": ({"managed_identity_client_id": "me"}, None, "managed_identity_client_id", "pattern"),
    "unknown key": ({"quotas": {}}, None, "quotas", "Extra inputs are not permitted"),
}


@pytest.mark.parametrize("case", BAD_ENTRIES)
def test_a_bad_entry_names_its_file_and_field(case: str, platform_dir: Path) -> None:
    change, rename, field, message = BAD_ENTRIES[case]
    path = edit(platform_dir, "demo", change, rename)
    with pytest.raises(UserError) as error:
        load_registry(platform_dir)
    assert error.value.where == f"{path}: {field}"
    assert message in error.value.message and error.value.fix


def test_two_teams_cannot_share_a_namespace(platform_dir: Path) -> None:
    original = yaml.safe_load((platform_dir / "teams" / "demo.yaml").read_text())
    (platform_dir / "teams" / "recon.yaml").write_text(yaml.safe_dump({**original, "name": "recon"}))
    with pytest.raises(UserError) as error:
        load_registry(platform_dir)
    assert "'airflow-demo' is already the namespace of 'demo'" in error.value.message
    assert error.value.where == f"{platform_dir / 'teams' / 'recon.yaml'}: namespace"


def test_a_team_repository_prints_its_own_entry(workdir: Path, platform_dir: Path) -> None:
    repo = generate_team_repo(workdir / "recon", "recon", namespace="data-recon")
    result = run_ariel("platform", "registry-entry", "--team-repo", str(repo), "--client-id", CLIENT_ID)
    assert result.returncode == 2 and "--repository-url" in result.stderr and no_traceback(result)
    result = run_ariel(
        "platform", "registry-entry", "--team-repo", str(repo), "--client-id", CLIENT_ID,
        "--repository-url", "https://git.example.com/recon.git",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (platform_dir / "teams" / "recon.yaml").write_text(result.stdout)
    entry = load_registry(platform_dir)["recon"]  # what the team prints, the platform accepts
    assert entry.team == TeamRepo.load(repo).team
    assert entry.team.namespace == "data-recon"
    assert entry.repository.url == "https://git.example.com/recon.git"
    # A starting quota of ten "small" tasks (250m / 512Mi requests, 375m / 768Mi limits).
    assert entry.quota.model_dump() == {
        "pods": 10,
        "requests": {"cpu": "2500m", "memory": "5Gi"},
        "limits": {"cpu": "3750m", "memory": "7680Mi"},
    }


def test_a_team_may_have_a_vault_in_any_environment_the_platform_has(platform_dir: Path) -> None:
    shutil.copy(platform_dir / "environments" / "test.yaml", platform_dir / "environments" / "qa.yaml")
    edit(platform_dir, "demo", {"key_vaults": {"qa": "https://kv-demo-qa.vault.azure.net/"}})
    assert load_registry(platform_dir)["demo"].team.vault_urls == {
        "qa": "https://kv-demo-qa.vault.azure.net/"
    }


@pytest.mark.parametrize("namespace", ["airflow", "kube-system", "default", "kube-flannel"])
def test_a_namespace_that_is_not_the_teams_own_is_refused(namespace: str, platform_dir: Path) -> None:
    edit(platform_dir, "demo", {"namespace": namespace})
    with pytest.raises(UserError) as error:
        load_registry(platform_dir)
    assert error.value.where.endswith("demo.yaml: namespace")
    assert "is not the team's own" in str(error.value) and "airflow-demo" in (error.value.fix or "")
