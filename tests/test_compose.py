"""localdev/compose.yaml is the stack model rendered, and Compose itself accepts it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from ariel_airflow.localdev import airflow_commands, compose
from ariel_airflow.localdev.docker_tools import Compose
from ariel_airflow.localdev.state import StackState
from ariel_airflow.localdev.topology import Health, services

from conftest import KIT_ROOT


def test_committed_compose_file_is_the_rendered_model() -> None:
    committed = (KIT_ROOT / "localdev" / "compose.yaml").read_text()
    assert committed == compose.render_text(), "localdev/compose.yaml is stale: run `nox -s compose`"


def test_compose_services_follow_the_native_start_order() -> None:
    document = yaml.safe_load(compose.compose_file().read_text())
    plan = compose.container_services("demo", StackState(), pool="team-demo")
    assert list(document["services"]) == [svc.name for svc in plan]
    before: set[str] = set()
    for svc in plan:
        assert set(document["services"][svc.name].get("depends_on", {})) <= before, svc.name
        before.add(svc.name)
    healthy, started = {"condition": "service_healthy"}, {"condition": "service_started"}
    assert document["services"]["migrate"]["depends_on"] == {"postgres": healthy}
    # PgBouncer starts with Postgres: it connects to it only when a client comes.
    assert document["services"]["pgbouncer"]["depends_on"] == {"postgres": started}
    # The components start with the migration job and wait for it in their own process (as the
    # chart's pods do), so that importing Airflow overlaps the migrations.
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        spec = document["services"][name]
        assert spec["depends_on"] == {"postgres": healthy, "pgbouncer": started}, name
        assert airflow_commands.commands_of(spec["command"])[0][:2] == ["db", "check-migrations"], name


def test_components_the_engine_starts_after_the_job_run_only_their_own_command() -> None:
    # The native engine forks the components once the job succeeded: no Alembic check in each.
    plan = services(
        "demo", StackState(), compose.CONTAINER_LAYOUT, pool="team-demo", wait_for_migrations=False
    )
    components = {
        svc.name: airflow_commands.commands_of(svc.argv)
        for svc in plan
        if svc.health in (Health.API, Health.HEARTBEAT)
    }
    assert set(components) == {"api-server", "scheduler", "dag-processor", "triggerer"}
    for name, commands in components.items():
        assert commands is not None and [command[0] for command in commands] == [name], name


def test_the_migration_job_creates_the_teams_pool_in_the_same_process() -> None:
    document = yaml.safe_load(compose.compose_file().read_text())
    commands = airflow_commands.commands_of(document["services"]["migrate"]["command"])
    assert commands == [
        ["db", "migrate"],
        ["pools", "set", "${ARIEL_POOL}", "${ARIEL_PARALLELISM}", "The team pool: the local stack slots"],
    ]


def test_every_component_shares_the_keys_and_the_execution_api() -> None:
    document = yaml.safe_load(compose.compose_file().read_text())
    airflow = [
        spec["environment"] for spec in document["services"].values() if "AIRFLOW_HOME" in spec["environment"]
    ]
    assert len(airflow) == 5  # migrate, api-server, scheduler, dag-processor, triggerer
    for key in (
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__CORE__FERNET_KEY",
    ):
        assert len({env[key] for env in airflow}) == 1, key
    assert {env["AIRFLOW__WORKERS__SECRETS_BACKEND"] for env in airflow} == {
        "airflow.secrets.local_filesystem.LocalFilesystemBackend"
    }


def test_compose_fills_every_placeholder_with_the_stacks_values(
    tmp_path: Path, compose_flavour: Compose
) -> None:
    """Compose itself (each version the kit supports) reads the file with one stack's values."""
    state = StackState(
        ui_port=18080,
        postgres_port=15432,
        pgbouncer_port=16432,
        parallelism=3,
        db_password="db-pass-of-the-test",
        jwt_secret="jwt-of-the-test",
        api_secret_key="api-key-of-the-test",
        fernet_key="fernet-of-the-test",
    )
    images = {"db": "ariel-local/db:test", "airflow": "ariel-local/airflow:test"}
    env = compose.variables("demo", state, tmp_path / "team", tmp_path / "stack", images)
    result = subprocess.run(
        [*compose_flavour.argv, "--file", str(compose.compose_file()), "--project-name", "cfg", "config"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "variable is not set" not in result.stderr.lower()  # v1 says WARNING, v2 level=warning
    assert "${" not in result.stdout
    rendered = yaml.safe_load(result.stdout)["services"]
    api, postgres = rendered["api-server"], rendered["postgres"]
    assert api["image"] == "ariel-local/airflow:test" and postgres["image"] == "ariel-local/db:test"
    assert api["user"] == f"{os.getuid()}:{os.getgid()}"
    assert api["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] == "jwt-of-the-test"
    assert api["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://airflow:db-pass-of-the-test@pgbouncer:16432/airflow"
        "?application_name=ariel-api-server"
    )
    assert api["environment"]["AIRFLOW__CORE__PARALLELISM"] == "3"
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "db-pass-of-the-test"
    assert published(api) == ["127.0.0.1:18080->18080"]
    assert published(postgres) == ["127.0.0.1:15432->15432"]
    assert (str(tmp_path / "team"), "/opt/ariel/team") in mounts(api)
    assert (str(tmp_path / "stack" / "airflow"), "/opt/airflow") in mounts(api)
    assert (str(tmp_path / "stack" / "pgbouncer"), "/etc/ariel/pgbouncer") in mounts(rendered["pgbouncer"])


def published(service: dict) -> list[str]:
    """Published ports as host_ip:published->target, from v1's short or v2's long syntax."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, str):  # 127.0.0.1:18080:18080/tcp
            host_ip, host, target = port.removesuffix("/tcp").rsplit(":", 2)
        else:
            host_ip, host, target = port["host_ip"], port["published"], port["target"]
        ports.append(f"{host_ip}:{host}->{target}")
    return ports


def mounts(service: dict) -> list[tuple[str, str]]:
    """(host path, container path) of each bind mount, from v1's short or v2's long syntax."""
    return [
        tuple(volume.split(":")[:2]) if isinstance(volume, str) else (volume["source"], volume["target"])
        for volume in service.get("volumes", [])
    ]


def test_airflow_containers_get_the_developers_azure_credentials_read_only(
    tmp_path: Path, compose_flavour: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AZURE_* variables set where Compose runs, the Azure config folder read-only, a CA bundle inside."""
    azure_dir = tmp_path / "azure-config"
    azure_dir.mkdir()
    (azure_dir / "azureProfile.json").write_text("{}")
    for name in [name for name in os.environ if name.startswith("AZURE_")]:
        monkeypatch.delenv(name)
    for name, value in {
        "AZURE_CONFIG_DIR": str(azure_dir),
        "AZURE_CLIENT_ID": "client-of-the-developer",
        "AZURE_TENANT_ID": "tenant-of-the-developer",
        "AZURE_CLIENT_SECRET": "secret-of-the-developer",
        # A bundle path of the host: the containers must not be told to read it.
        "REQUESTS_CA_BUNDLE": str(tmp_path / "host-only-bundle.pem"),
    }.items():
        monkeypatch.setenv(name, value)
    images = {"db": "ariel-local/db:test", "airflow": "ariel-local/airflow:test"}
    # Real ports: Compose v2 refuses port 0 as a container port.
    state = StackState(postgres_port=15432, pgbouncer_port=16432)
    stack = compose.variables("demo", state, tmp_path / "team", tmp_path / "stack", images)
    result = subprocess.run(
        [*compose_flavour.argv, "--file", str(compose.compose_file()), "--project-name", "cfg", "config"],
        env={**os.environ, **stack},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)["services"]
    airflow = [name for name, spec in rendered.items() if "AIRFLOW_HOME" in spec["environment"]]
    assert set(airflow) == set(rendered) - {"postgres", "pgbouncer"}  # every Airflow component and job
    for name in airflow:
        spec = rendered[name]
        environment = spec["environment"]
        assert environment["AZURE_CLIENT_ID"] == "client-of-the-developer", name
        assert environment["AZURE_TENANT_ID"] == "tenant-of-the-developer", name
        assert environment["AZURE_CLIENT_SECRET"] == "secret-of-the-developer", name
        assert not environment.get("AZURE_FEDERATED_TOKEN_FILE"), name  # not set here: not passed
        assert environment["AZURE_CONFIG_DIR"] == "/opt/ariel/azure", name
        assert environment["REQUESTS_CA_BUNDLE"] == environment["SSL_CERT_FILE"] == str(compose.CA_BUNDLE)
        assert (str(azure_dir), "/opt/ariel/azure", True) in mounts_read_only(spec), name
    for name in ("postgres", "pgbouncer"):  # the databases get no credentials
        assert not any(var.startswith("AZURE_") for var in rendered[name]["environment"]), name


def test_without_an_azure_config_folder_an_empty_one_of_the_stack_is_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker would create a missing ~/.azure as root, which a later `az login` could not write."""
    monkeypatch.delenv("AZURE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    images = {"db": "ariel-local/db:test", "airflow": "ariel-local/airflow:test"}
    stack = compose.variables("demo", StackState(), tmp_path / "team", tmp_path / "stack", images)
    mounted = Path(stack["ARIEL_AZURE_CONFIG_DIR"])
    assert mounted.is_dir() and mounted.is_relative_to(tmp_path / "stack")
    assert not (tmp_path / "home" / ".azure").exists()
    (tmp_path / "home" / ".azure").mkdir(parents=True)
    stack = compose.variables("demo", StackState(), tmp_path / "team", tmp_path / "stack", images)
    assert stack["ARIEL_AZURE_CONFIG_DIR"] == str(tmp_path / "home" / ".azure")


def test_the_ca_bundle_of_the_containers_is_the_one_the_image_builds() -> None:
    dockerfile = (KIT_ROOT / "localdev" / "airflow.Dockerfile").read_text()
    assert "update-ca-certificates" in dockerfile  # writes the system bundle, with ARIEL_EXTRA_CA_CERTS
    assert f"SSL_CERT_FILE={compose.CA_BUNDLE}" in dockerfile


def mounts_read_only(service: dict) -> list[tuple[str, str, bool]]:
    """(host path, container path, read-only) of each bind mount, from v1's or v2's syntax."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            found.append((source, target, mode == ["ro"]))
        else:
            found.append((volume["source"], volume["target"], bool(volume.get("read_only"))))
    return found
