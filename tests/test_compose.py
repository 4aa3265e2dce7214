"""localdev/compose.yaml is the stack model rendered, and Compose itself accepts it."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from ariel_airflow.localdev import compose
from ariel_airflow.localdev.docker_engine import compose_command
from ariel_airflow.localdev.state import StackState
from ariel_airflow.localdev.topology import services

from conftest import KIT_ROOT, docker_unavailable


def test_committed_compose_file_is_the_rendered_model() -> None:
    committed = (KIT_ROOT / "localdev" / "compose.yaml").read_text()
    assert committed == compose.render_text(), "localdev/compose.yaml is stale: run `nox -s compose`"


def test_compose_services_follow_the_native_start_order() -> None:
    document = yaml.safe_load(compose.compose_file().read_text())
    plan = services("demo", StackState(), compose.CONTAINER_LAYOUT)
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
    assert len(airflow) == 5
    for key in (
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__CORE__FERNET_KEY",
    ):
        assert len({env[key] for env in airflow}) == 1, key
    assert {env["AIRFLOW__WORKERS__SECRETS_BACKEND"] for env in airflow} == {
        "airflow.secrets.local_filesystem.LocalFilesystemBackend"
    }


@pytest.mark.docker
def test_compose_accepts_the_file(tmp_path) -> None:  # noqa: ANN001
    command = compose_command()
    if command is None:
        docker_unavailable("neither `docker compose` nor `docker-compose` is installed")
    state = StackState(postgres_port=5432, pgbouncer_port=6432).with_new_keys()
    images = {"db": "ariel-local/db:test", "airflow": "ariel-local/airflow:test"}
    env = compose.variables("demo", state, tmp_path, tmp_path / ".ariel" / "docker", images)
    result = subprocess.run(
        [*command, "--file", str(compose.compose_file()), "--project-name", "ariel-config-test", "config"],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert (
        rendered["services"]["api-server"]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] == state.jwt_secret
    )
    assert "WARNING" not in result.stderr  # every variable was set
