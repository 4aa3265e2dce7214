"""`ariel secrets verify` and `ariel secrets push` against a local Key Vault stand-in.

The CLI runs through its real entry point (``cli.main``) and the real azure-keyvault-secrets
SecretClient, challenge authentication included; only the credential differs from production
(DefaultAzureCredential there, a test TokenCredential here, since no Azure is reachable).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from keyvault_standin import KeyVaultStandin

from ariel_airflow import cli, keyvault
from ariel_airflow.team import ANSWERS_FILE

from conftest import no_traceback, run_ariel

# Distinctive values: none of them may ever reach stdout, stderr or a log record.
PASSWORD = "pw-Zq81-never-print-me"
TOKEN = "tok-7Hx2-never-print-me"
# The names the team's task pods look up (AzureKeyVaultBackend.build_path of the pod template's prefix).
WAREHOUSE = "airflow-connections-recon-recon-warehouse"
EXPORT_PATH = "airflow-variables-recon-export-path"
API_TOKEN = "airflow-variables-recon-api-token"
DECLARED = (WAREHOUSE, EXPORT_PATH, API_TOKEN)


def team_repo(root: Path, vault_url: str) -> Path:
    """A team repository as `copier copy` leaves it, for team "recon" whose vaults are the stand-in."""
    (root / "dags").mkdir(parents=True)
    (root / ANSWERS_FILE).write_text(
        "team_name: recon\n"
        + "".join(f"keyvault_url_{env}: {vault_url}\n" for env in ("dev", "test", "prod"))
    )
    (root / "secrets.yaml").write_text(
        "connections:\n  recon_warehouse: {type: postgres}\nvariables:\n  export_path: {}\n  api_token: {}\n"
    )
    local = root / ".local"
    local.mkdir()
    (local / "connections.yaml").write_text(
        f"recon_warehouse: postgresql://etl:{PASSWORD}@warehouse.example:5432/dw\n"
    )
    (local / "variables.yaml").write_text(f"export_path: /data/exports\napi_token: {TOKEN}\n")
    return root


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyVaultStandin]:
    """The stand-in, and the kit's client factory pointed at it with a test credential."""
    with KeyVaultStandin(tmp_path) as standin:
        monkeypatch.setattr(keyvault, "secret_client", standin.client)
        yield standin


@pytest.fixture
def repo(tmp_path: Path, vault: KeyVaultStandin) -> Path:
    return team_repo(tmp_path / "team-recon", vault.url)


def ariel(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run the `ariel` entry point in this process (where the stand-in's client is set up)."""
    monkeypatch.setattr(sys, "argv", ["ariel", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def assert_no_value(*texts: str) -> None:
    for text in texts:
        for value in (PASSWORD, TOKEN):
            assert value not in text


def test_verify_all_present_exits_0(vault, repo, monkeypatch, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    vault.add(WAREHOUSE, f"postgresql://etl:{PASSWORD}@warehouse.example:5432/dw")
    vault.add(EXPORT_PATH, "/data/exports")
    vault.add(API_TOKEN, TOKEN)
    vault.add("airflow-connections-other-team-db", "x")  # another team's secret: not ours to report
    code, out, err = ariel(monkeypatch, capsys, "secrets", "verify", "test", "--team-repo", str(repo))
    assert code == 0, out + err
    assert all(name in out for name in DECLARED)
    assert "missing" not in out and "unexpected" not in out
    assert_no_value(out, err, caplog.text)
    # Names and properties only: the listing was paged (page size 2, 4 secrets) and no secret was read.
    assert [path for method, path, _ in vault.requests if method == "GET"] == ["/secrets"] * 3
    assert not any(path.startswith("/secrets/") for _, path, _ in vault.requests)


def test_verify_missing_exits_1_naming_it(vault, repo, monkeypatch, capsys) -> None:
    vault.add(WAREHOUSE, "postgresql://etl:x@h/dw")
    vault.add(EXPORT_PATH, "/data/exports")
    code, out, err = ariel(
        monkeypatch, capsys, "secrets", "verify", "test", "--team-repo", str(repo), "--json"
    )
    assert code == 1, out + err
    report = json.loads(out)
    assert report["ok"] is False
    assert report["missing"] == [{"name": API_TOKEN, "kind": "variable", "id": "api_token"}]
    assert {f["name"] for f in report["present"]} == {WAREHOUSE, EXPORT_PATH}
    code, out, _ = ariel(monkeypatch, capsys, "secrets", "verify", "test", "--team-repo", str(repo))
    assert code == 1
    assert any("missing" in line and API_TOKEN in line for line in out.splitlines())


def test_verify_reports_disabled(vault, repo, monkeypatch, capsys) -> None:
    vault.add(WAREHOUSE, "postgresql://etl:x@h/dw", enabled=False)
    vault.add(EXPORT_PATH, "/data/exports")
    vault.add(API_TOKEN, TOKEN)
    code, out, err = ariel(
        monkeypatch, capsys, "secrets", "verify", "test", "--team-repo", str(repo), "--json"
    )
    report = json.loads(out)
    assert [f["name"] for f in report["disabled"]] == [WAREHOUSE]
    assert report["missing"] == []
    # A disabled secret fails the task that reads it (Key Vault answers 403), so it fails verify too.
    assert code == 1
    assert_no_value(out, err)


def test_verify_reports_unexpected(vault, repo, monkeypatch, capsys) -> None:
    for name in DECLARED:
        vault.add(name, "v")
    stale = "airflow-connections-recon-old-ftp"
    vault.add(stale, "ftp://u:p@h")
    code, out, err = ariel(
        monkeypatch, capsys, "secrets", "verify", "test", "--team-repo", str(repo), "--json"
    )
    assert code == 0, out + err  # an undeclared secret is worth a look, not a failed deployment
    assert json.loads(out)["unexpected"] == [{"name": stale, "kind": "", "id": ""}]
    _, text, _ = ariel(monkeypatch, capsys, "secrets", "verify", "test", "--team-repo", str(repo))
    assert any("unexpected" in line and stale in line for line in text.splitlines())


def test_verify_without_a_vault_for_env_names_the_answer(tmp_path, monkeypatch, capsys) -> None:
    root = team_repo(tmp_path / "team", "https://kv-recon-test.vault.azure.net/")
    answers = root / ANSWERS_FILE
    answers.write_text(
        answers.read_text().replace("keyvault_url_dev: https://kv-recon-test.vault.azure.net/\n", "")
    )
    code, out, err = ariel(monkeypatch, capsys, "secrets", "verify", "dev", "--team-repo", str(root))
    assert code == 2
    assert "keyvault_url_dev" in err and "copier update" in err
    assert "Traceback" not in err


def push_back(vault: KeyVaultStandin, repo: Path, name: str, kind: str, secret_id: str) -> str | None:
    """A value as the team's task pods read it: the provider's AzureKeyVaultBackend with the pod
    template's prefixes, its SecretClient pointed at the stand-in."""
    from airflow.providers.microsoft.azure.secrets.key_vault import AzureKeyVaultBackend

    from ariel_airflow.team import TeamRepo

    team = TeamRepo.load(repo).team
    backend = AzureKeyVaultBackend(**team.worker_secrets_backend_kwargs("dev"))
    backend.__dict__["client"] = vault.client()  # the cached client, with the test credential
    if kind == "connection":
        return backend.get_conn_value(secret_id)
    return backend.get_variable(secret_id)


def test_push_to_dev_writes_the_values(vault, repo, monkeypatch, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    code, out, err = ariel(monkeypatch, capsys, "secrets", "push", "dev", "--team-repo", str(repo))
    assert code == 0, out + err
    assert all(name in out for name in DECLARED)
    assert_no_value(out, err, caplog.text)
    from airflow.models.connection import Connection

    conn = Connection.from_json(push_back(vault, repo, WAREHOUSE, "connection", "recon_warehouse"))
    assert (conn.conn_type, conn.host, conn.login, conn.password, conn.port, conn.schema) == (
        "postgres",
        "warehouse.example",
        "etl",
        PASSWORD,
        5432,
        "dw",
    )
    assert push_back(vault, repo, API_TOKEN, "variable", "api_token") == TOKEN
    assert push_back(vault, repo, EXPORT_PATH, "variable", "export_path") == "/data/exports"


def test_push_from_ci_variables(vault, repo, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RECON_WAREHOUSE", f"postgresql://ci:{PASSWORD}@db.ci:5432/dw")
    monkeypatch.setenv("AIRFLOW_VAR_API_TOKEN", TOKEN)
    monkeypatch.delenv("AIRFLOW_VAR_EXPORT_PATH", raising=False)
    code, out, err = ariel(
        monkeypatch, capsys, "secrets", "push", "test", "--from", "env", "--team-repo", str(repo)
    )
    assert code == 1, out + err  # export_path has no CI variable
    assert vault.secrets[WAREHOUSE].value == f"postgresql://ci:{PASSWORD}@db.ci:5432/dw"
    assert vault.secrets[API_TOKEN].value == TOKEN
    assert EXPORT_PATH not in vault.secrets
    assert any(EXPORT_PATH in line and "AIRFLOW_VAR_EXPORT_PATH" in line for line in out.splitlines())
    assert_no_value(out, err)


def test_env_variable_names_are_airflows_own() -> None:
    from airflow.secrets.environment_variables import CONN_ENV_PREFIX, VAR_ENV_PREFIX

    assert keyvault.env_var_name("connection", "recon_warehouse") == CONN_ENV_PREFIX + "RECON_WAREHOUSE"
    assert keyvault.env_var_name("variable", "api_token") == VAR_ENV_PREFIX + "API_TOKEN"


def test_push_to_prod_is_refused_naming_the_setting(vault, repo) -> None:
    # A real `ariel` process: the refusal comes before any vault is contacted.
    done = run_ariel("secrets", "push", "prod", "--team-repo", str(repo), timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "allow_secret_push" in done.stderr
    assert "environments/prod.yaml" in done.stderr
    assert no_traceback(done)
    assert vault.requests == []


def test_push_partial_failure_names_written_and_unwritten(vault, repo, monkeypatch, capsys) -> None:
    vault.refuse[API_TOKEN] = 403
    code, out, err = ariel(monkeypatch, capsys, "secrets", "push", "dev", "--team-repo", str(repo), "--json")
    assert code == 1, out + err
    report = json.loads(out)
    assert {f["name"] for f in report["written"]} == {WAREHOUSE, EXPORT_PATH}
    assert list(report["failed"]) == [API_TOKEN]
    assert report["failed"][API_TOKEN].startswith("403")
    assert set(vault.secrets) == {WAREHOUSE, EXPORT_PATH}
    assert_no_value(out, err)
    code, text, err = ariel(monkeypatch, capsys, "secrets", "push", "dev", "--team-repo", str(repo))
    lines = text.splitlines()
    assert any("not written" in line and API_TOKEN in line and "403" in line for line in lines)
    assert all(any("written" in line and name in line for line in lines) for name in (WAREHOUSE, EXPORT_PATH))
    assert_no_value(text, err)


def test_generated_ci_verifies_secrets_after_the_checks(tmp_path: Path) -> None:
    """Both CI providers run `ariel secrets verify` for each environment with a vault, after the checks
    and through the generated repository's own nox session."""
    import subprocess

    import yaml

    from ariel_airflow.template import generate_team_repo

    repo = generate_team_repo(
        tmp_path / "recon",
        "recon",
        ci_provider="both",
        keyvault_url_dev="https://kv-recon-dev.vault.azure.net/",
    )
    github = yaml.safe_load((repo / ".github/workflows/ci.yml").read_text())["jobs"]
    assert github["secrets"]["needs"] == "checks"
    assert github["secrets"]["strategy"]["matrix"]["environment"] == ["dev", "test", "prod"]
    assert github["secrets"]["permissions"]["id-token"] == "write"
    runs = [step.get("run", "") for step in github["secrets"]["steps"]]
    assert runs[-1] == "nox -s verify_secrets -- ${{ matrix.environment }}"
    azure = yaml.safe_load((repo / "azure-pipelines.yml").read_text())["steps"]
    scripts = [step.get("script") or step.get("inputs", {}).get("inlineScript") for step in azure]
    assert scripts.index("nox -s lint tests check") < scripts.index("nox -s verify_secrets -- test")
    assert [s for s in scripts if s and "verify_secrets" in s] == [
        f"nox -s verify_secrets -- {env}" for env in ("dev", "test", "prod")
    ]
    # The session exists in the generated noxfile and passes ENV on to `ariel secrets verify`.
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "-l"], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert "verify_secrets" in listed.stdout, listed.stdout + listed.stderr
    assert 'session.run("ariel", "secrets", "verify", *session.posargs' in (repo / "noxfile.py").read_text()
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "noxfile.py"], cwd=repo, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout  # the generated repository's own lint (line length 100)
