"""localdev/compose.yaml is the stack model rendered, and Compose itself accepts it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from ariel_airflow.localdev import compose
from ariel_airflow.localdev.docker_tools import Compose
from ariel_airflow.localdev.state import StackState
from ariel_airflow.localdev.topology import services

from conftest import KIT_ROOT


def test_committed_compose_file_is_the_rendered_model() -> None:
    committed = (KIT_ROOT / "localdev" / "compose.yaml").read_text()
    assert committed == compose.render_text(), "localdev/compose.yaml is stale: run `nox -s compose`"


def test_compose_services_follow_the_native_start_order() -> None:
    document = yaml.safe_load(compose.compose_file().read_text())
    plan = services("demo", StackState(), compose.CONTAINER_LAYOUT, pool="team-demo")
    assert list(document["services"]) == [svc.name for svc in plan]
    started: set[str] = set()
    for svc in plan:
        assert set(document["services"][svc.name].get("depends_on", {})) <= started, svc.name
        started.add(svc.name)
    assert document["services"]["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert document["services"]["api-server"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }


def test_every_component_shares_the_keys_and_the_execution_api() -> None:
    document = yaml.safe_load(compose.compose_file().read_text())
    airflow = [
        spec["environment"] for spec in document["services"].values() if "AIRFLOW_HOME" in spec["environment"]
    ]
    assert len(airflow) == 6  # migrate, pools, api-server, scheduler, dag-processor, triggerer
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
