"""Team secret names: the names the provider's AzureKeyVaultBackend really looks up, in both modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ariel_airflow.secret_names import declared_secrets, vault_secret_name
from ariel_airflow.team import Team, TeamRepo
from ariel_airflow.template import generate_team_repo

from conftest import run_ariel

# Ids as teams write them: underscores, dashes, capitals and digits.
EXTRA_CONNECTIONS = {"Partner-SFTP_2": {"type": "sftp"}}
EXTRA_VARIABLES = {"batch-size": {}}


class _RecordingClient:
    """Stands in for azure-keyvault-secrets' SecretClient (no vault is reachable): records each name
    the backend asks for and answers "not found", as Key Vault does for an absent secret."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def get_secret(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        self.names.append(name)
        raise ResourceNotFoundError("absent")


def _backend(**kwargs: str):  # noqa: ANN202 - AzureKeyVaultBackend, imported late (Airflow is slow to import)
    from airflow.providers.microsoft.azure.secrets.key_vault import AzureKeyVaultBackend

    backend = AzureKeyVaultBackend(**kwargs)
    backend.__dict__["client"] = _RecordingClient()  # replaces the cached_property's SecretClient
    return backend


def _looked_up(backend, kind: str, id: str, team_name: str | None = None) -> list[str]:  # noqa: ANN001
    getter = backend.get_conn_value if kind == "connection" else backend.get_variable
    assert getter(id, team_name=team_name) is None
    names, backend.client.names = backend.client.names, []
    return names


def _team_repo(dest: Path, name: str, mode: str) -> TeamRepo:
    root = generate_team_repo(dest / name, name, secrets_mode=mode)
    declared = yaml.safe_load((root / "secrets.yaml").read_text())
    declared["connections"].update(EXTRA_CONNECTIONS)
    declared["variables"].update(EXTRA_VARIABLES)
    (root / "secrets.yaml").write_text(yaml.safe_dump(declared, sort_keys=False))
    return TeamRepo.load(root)


def _pod_template_kwargs(repo: TeamRepo, environment: str) -> dict[str, str]:
    pod = yaml.safe_load(repo.base_pod_template(environment).read_text())
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    return json.loads(env["AIRFLOW__WORKERS__SECRETS_BACKEND_KWARGS"])


@pytest.mark.parametrize("mode", ["prefix", "multi_team"])
def test_task_pods_look_up_the_declared_names(mode: str, workdir: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("AIRFLOW__CORE__MULTI_TEAM", str(mode == "multi_team"))
    repo = _team_repo(workdir, "team-a", mode)
    secrets = declared_secrets(repo)
    assert {(s.kind, s.id) for s in secrets} >= {("connection", "Partner-SFTP_2"), ("variable", "batch-size")}
    for environment in ("test", "prod"):
        # What a task pod does: the provider's backend with the kwargs of the team's pod template.
        worker = _backend(**_pod_template_kwargs(repo, environment))
        for secret in secrets:
            assert _looked_up(worker, secret.kind, secret.id) == [secret.vault_names[environment]]


def test_multi_team_names_are_airflows_team_scoped_names(workdir: Path, monkeypatch) -> None:  # noqa: ANN001
    """The API server, scheduler and dag-processor look up with the team (the platform's global backend
    keeps the provider's default prefixes): their first lookup is the name task pods use."""
    monkeypatch.setenv("AIRFLOW__CORE__MULTI_TEAM", "True")
    repo = _team_repo(workdir, "team-a", "multi_team")
    platform = _backend(vault_url="https://kv-ariel-airflow-prod.vault.azure.net/")
    for secret in declared_secrets(repo):
        team_scoped, global_name = _looked_up(platform, secret.kind, secret.id, team_name="team-a")
        assert team_scoped == secret.vault_names["prod"]
        assert "--" in team_scoped and "--" not in global_name


def test_names_in_both_modes() -> None:
    prefix = Team("recon")
    multi = Team("team-a", secrets_mode="multi_team")
    assert (
        vault_secret_name(prefix, "connection", "recon_warehouse")
        == "airflow-connections-recon-recon-warehouse"
    )
    assert vault_secret_name(prefix, "variables", "Batch_Size") == "airflow-variables-recon-Batch-Size"
    assert vault_secret_name(multi, "connection", "my_conn") == "airflow-connections-team-a--my-conn"
    with pytest.raises(ValueError, match="'connection' or 'variable'"):
        vault_secret_name(prefix, "config", "x")


def test_cli_lists_names_per_environment_and_local_keys(workdir: Path) -> None:
    root = generate_team_repo(
        workdir / "recon", "recon", keyvault_url_dev="https://kv-recon-dev.vault.azure.net/"
    )
    listed = run_ariel("secrets", "names", "--team-repo", str(root), "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {
            "kind": "connection",
            "id": "recon_warehouse",
            "local_key": "recon_warehouse",
            "vault_names": {e: "airflow-connections-recon-recon-warehouse" for e in ("dev", "test", "prod")},
        },
        {
            "kind": "variable",
            "id": "recon_export_path",
            "local_key": "recon_export_path",
            "vault_names": {e: "airflow-variables-recon-recon-export-path" for e in ("dev", "test", "prod")},
        },
    ]
    text = run_ariel("secrets", "names", "prod", cwd=root)
    assert text.returncode == 0, text.stderr
    assert "prod   airflow-connections-recon-recon-warehouse" in text.stdout
    assert "test" not in text.stdout and "local key: recon_export_path" in text.stdout


def test_cli_names_an_environment_without_a_vault(workdir: Path) -> None:
    root = generate_team_repo(workdir / "recon", "recon")  # no dev vault by default
    result = run_ariel("secrets", "names", "dev", "--team-repo", str(root))
    assert result.returncode == 2
    assert "keyvault_url_dev" in result.stderr and "test, prod" in result.stderr
    assert "Traceback" not in result.stderr
