"""`ariel secrets verify` and `ariel secrets push` against local Key Vault and Entra stand-ins.

Nothing of the kit is replaced: the CLI runs through its real entry point (``cli.main``, or an
``ariel`` process), whose DefaultAzureCredential finds a service principal in AZURE_CLIENT_ID,
AZURE_TENANT_ID and AZURE_CLIENT_SECRET (as a CI job's) and takes its token from the Entra stand-in,
and whose SecretClient reaches the Key Vault stand-in at the vault's real URL
(``https://kv-recon-test.vault.azure.net/``) through the stand-ins' CONNECT proxy, the challenge's
resource verified as against Azure. Only environment variables point the process at them
(tests/standin_network.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from entra_standin import EntraStandIn
from keyvault_standin import SCOPE as VAULT_SCOPE
from keyvault_standin import KeyVaultStandin

from ariel_airflow import cli, keyvault
from ariel_airflow.team import ANSWERS_FILE

from conftest import no_traceback, run_ariel

# Distinctive values: none of them may ever reach stdout, stderr or a log record.
PASSWORD = "pw-Zq81-never-print-me"
TOKEN = "tok-7Hx2-never-print-me"
CLIENT_SECRET = "sp-secret-Wk3d-never-print-me"  # the service principal's, as a CI job has it
TENANT = "3f1c6a2e-0000-4000-8000-00000000a11e"
CLIENT = "8d2b7c4e-0000-4000-8000-0000000c11e7"
# The names the team's task pods look up (AzureKeyVaultBackend.build_path of the pod template's prefix).
WAREHOUSE = "airflow-connections-recon-recon-warehouse"
EXPORT_PATH = "airflow-variables-recon-export-path"
API_TOKEN = "airflow-variables-recon-api-token"
DECLARED = (WAREHOUSE, EXPORT_PATH, API_TOKEN)


def vault_host(environment: str) -> str:
    return f"kv-recon-{environment}.vault.azure.net"


def team_repo(root: Path) -> Path:
    """A team repository as `copier copy` leaves it, for team "recon" with a vault per environment."""
    (root / "dags").mkdir(parents=True)
    (root / ANSWERS_FILE).write_text(
        "team_name: recon\n"
        + "".join(f"keyvault_url_{env}: https://{vault_host(env)}/\n" for env in ("dev", "test", "prod"))
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


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EntraStandIn, KeyVaultStandin]]:
    """Entra and every *.vault.azure.net, once for the module; emptied for each test."""
    with EntraStandIn(tmp_path_factory.mktemp("azure")) as entra, KeyVaultStandin(entra, TENANT) as vault:
        yield entra, vault


@pytest.fixture
def entra(
    standins: tuple[EntraStandIn, KeyVaultStandin], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> EntraStandIn:
    """A CI job's environment: the team's service principal, the company proxy and its CA; no Azure
    settings, proxy exceptions or sign-ins of the machine's own."""
    entra, vault = standins
    for name in [name for name in os.environ if name.startswith("AZURE_")]:
        monkeypatch.delenv(name)
    for name in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name, value in entra.client_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)
    entra.requests.clear()
    entra.access_token = f"kv-token-{uuid.uuid4().hex}"  # this test's: the vault accepts no other
    vault.reset()
    return entra


@pytest.fixture
def vault(standins: tuple[EntraStandIn, KeyVaultStandin], entra: EntraStandIn) -> KeyVaultStandin:
    return standins[1]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return team_repo(tmp_path / "team-recon")


def assert_sent_as_the_service_principal(
    entra: EntraStandIn, vault: KeyVaultStandin, environment: str
) -> None:
    """Entra was asked for a Key Vault token by the environment's service principal, and every call
    went to the environment's vault, under its hostname, with the token Entra issued."""
    assert entra.requests, "no token was asked of Entra"
    for request in entra.requests:
        assert request.tenant == TENANT
        assert request.form["grant_type"] == "client_credentials"
        assert request.form["client_id"] == CLIENT
        assert request.form["client_secret"] == CLIENT_SECRET
        assert request.form["scope"] == VAULT_SCOPE
    assert {r.host for r in vault.requests} == {vault_host(environment)}
    presented = {r.token for r in vault.requests if r.token}
    assert presented == {entra.access_token}
    assert entra.access_token in {r.access_token for r in entra.requests}


def ariel(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run the `ariel` entry point in this process (its log records reach caplog)."""
    monkeypatch.setattr(sys, "argv", ["ariel", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def assert_no_value(*texts: str) -> None:
    for text in texts:
        for value in (PASSWORD, TOKEN, CLIENT_SECRET):
            assert value not in text


def test_verify_all_present_exits_0(entra, vault, repo, monkeypatch, capsys, caplog) -> None:
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
    assert [(r.method, r.path) for r in vault.requests if r.token] == [("GET", "/secrets")] * 2
    assert not any(r.path.startswith("/secrets/") for r in vault.requests)
    assert_sent_as_the_service_principal(entra, vault, "test")


def test_verify_missing_exits_1_naming_it(entra, vault, repo, monkeypatch, capsys) -> None:
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
    assert_sent_as_the_service_principal(entra, vault, "test")
    # As the generated CI runs it: an `ariel` process, pointed at Azure by its environment alone.
    entra.requests.clear()
    vault.requests.clear()
    done = run_ariel("secrets", "verify", "test", "--team-repo", str(repo), timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert any("missing" in line and API_TOKEN in line for line in done.stdout.splitlines())
    assert no_traceback(done)
    assert_sent_as_the_service_principal(entra, vault, "test")
    assert_no_value(done.stdout, done.stderr)


def test_verify_reports_disabled(entra, vault, repo, monkeypatch, capsys) -> None:
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
    assert_sent_as_the_service_principal(entra, vault, "test")


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
    root = team_repo(tmp_path / "team")
    answers = root / ANSWERS_FILE
    answers.write_text(answers.read_text().replace(f"keyvault_url_dev: https://{vault_host('dev')}/\n", ""))
    code, out, err = ariel(monkeypatch, capsys, "secrets", "verify", "dev", "--team-repo", str(root))
    assert code == 2
    assert "keyvault_url_dev" in err and "copier update" in err
    assert "Traceback" not in err


def push_back(repo: Path, kind: str, secret_id: str) -> str | None:
    """A value as the team's task pods read it: the provider's AzureKeyVaultBackend with the pod
    template's settings, its own client and DefaultAzureCredential (the service principal here)."""
    from airflow.providers.microsoft.azure.secrets.key_vault import AzureKeyVaultBackend

    from ariel_airflow.team import TeamRepo

    team = TeamRepo.load(repo).team
    backend = AzureKeyVaultBackend(**team.worker_secrets_backend_kwargs("dev"))
    if kind == "connection":
        return backend.get_conn_value(secret_id)
    return backend.get_variable(secret_id)


def test_push_to_dev_writes_the_values(entra, vault, repo, monkeypatch, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    code, out, err = ariel(monkeypatch, capsys, "secrets", "push", "dev", "--team-repo", str(repo))
    assert code == 0, out + err
    assert all(name in out for name in DECLARED)
    assert_no_value(out, err, caplog.text)
    assert_sent_as_the_service_principal(entra, vault, "dev")
    assert [(r.method, r.path) for r in vault.requests if r.token] == [
        ("PUT", f"/secrets/{n}") for n in DECLARED
    ]
    from airflow.models.connection import Connection

    conn = Connection.from_json(push_back(repo, "connection", "recon_warehouse"))
    assert (conn.conn_type, conn.host, conn.login, conn.password, conn.port, conn.schema) == (
        "postgres",
        "warehouse.example",
        "etl",
        PASSWORD,
        5432,
        "dw",
    )
    assert push_back(repo, "variable", "api_token") == TOKEN
    assert push_back(repo, "variable", "export_path") == "/data/exports"


def test_push_from_ci_variables(entra, vault, repo, monkeypatch, capsys) -> None:
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
    assert_sent_as_the_service_principal(entra, vault, "test")


def test_env_variable_names_are_airflows_own() -> None:
    from airflow.secrets.environment_variables import CONN_ENV_PREFIX, VAR_ENV_PREFIX

    assert keyvault.env_var_name("connection", "recon_warehouse") == CONN_ENV_PREFIX + "RECON_WAREHOUSE"
    assert keyvault.env_var_name("variable", "api_token") == VAR_ENV_PREFIX + "API_TOKEN"


def test_push_to_prod_is_refused_naming_the_setting(entra, vault, repo) -> None:
    # A real `ariel` process: the refusal comes before any vault is contacted.
    done = run_ariel("secrets", "push", "prod", "--team-repo", str(repo), timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "allow_secret_push" in done.stderr
    assert "environments/prod.yaml" in done.stderr
    assert no_traceback(done)
    assert vault.requests == []
    assert entra.requests == []


def test_push_partial_failure_names_written_and_unwritten(entra, vault, repo, monkeypatch, capsys) -> None:
    vault.refuse[API_TOKEN] = 403
    code, out, err = ariel(monkeypatch, capsys, "secrets", "push", "dev", "--team-repo", str(repo), "--json")
    assert code == 1, out + err
    report = json.loads(out)
    assert {f["name"] for f in report["written"]} == {WAREHOUSE, EXPORT_PATH}
    assert list(report["failed"]) == [API_TOKEN]
    assert report["failed"][API_TOKEN].startswith("403")
    assert set(vault.secrets) == {WAREHOUSE, EXPORT_PATH}
    assert_no_value(out, err)
    assert_sent_as_the_service_principal(entra, vault, "dev")
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
