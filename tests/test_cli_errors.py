"""User errors: a clear message on stderr naming what is wrong and the fix, no traceback, nothing started."""

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from ariel_airflow.localdev.state import free_port

from conftest import copy_demo_team, no_traceback, path_without, require_docker_daemon, run_ariel


def test_unknown_team_repo(workdir: Path) -> None:
    result = run_ariel("local", "up", "--engine", "native", "--detach", "--team-repo", str(workdir / "nope"))
    assert result.returncode == 2
    assert "team repository not found" in result.stderr
    assert no_traceback(result)


def test_folder_without_dags_is_not_a_team_repo(workdir: Path) -> None:
    result = run_ariel("local", "up", "--engine", "native", "--detach", "--team-repo", str(workdir))
    assert result.returncode == 2
    assert "no dags/ folder" in result.stderr and "fix:" in result.stderr


@pytest.mark.postgres  # the native engine finds its programs before it reads the secrets
def test_missing_secrets_file_stops_before_anything_starts(workdir: Path) -> None:
    repo = copy_demo_team(workdir / "team")
    (repo / ".local" / "variables.yaml").unlink()
    result = run_ariel(
        "local", "up", "--engine", "native", "--detach", "--port", str(free_port()), "--team-repo", str(repo)
    )
    assert result.returncode == 2
    assert str(repo / ".local" / "variables.yaml") in result.stderr
    assert "missing" in result.stderr and "create it" in result.stderr
    assert no_traceback(result)
    assert not list((repo / ".ariel" / "run").glob("*.pid"))  # nothing left running


@pytest.mark.postgres  # the native engine finds its programs before it reads the secrets
def test_malformed_secrets_file_names_the_line(workdir: Path) -> None:
    repo = copy_demo_team(workdir / "team")
    (repo / ".local" / "connections.yaml").write_text("demo_warehouse: http://h\nbad: [\n")
    result = run_ariel(
        "local", "up", "--engine", "native", "--detach", "--port", str(free_port()), "--team-repo", str(repo)
    )
    assert result.returncode == 2
    assert "connections.yaml" in result.stderr and "line 2" in result.stderr
    assert no_traceback(result)
    assert not list((repo / ".ariel" / "run").glob("*.pid"))


def test_taken_ui_port_is_refused_before_anything_starts(workdir: Path) -> None:
    repo = copy_demo_team(workdir / "team")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_ariel(
            "local", "up", "--engine", "native", "--detach", "--port", str(port), "--team-repo", str(repo)
        )
    assert result.returncode == 2
    assert f"port {port} is already in use" in result.stderr
    assert f"--port {port + 1}" in result.stderr
    assert not (repo / ".ariel" / "run").exists()


def test_trigger_rejects_conf_that_is_not_a_json_object(workdir: Path) -> None:
    repo = copy_demo_team(workdir / "team")
    result = run_ariel("local", "trigger", "demo__daily_export", "--conf", "[1]", "--team-repo", str(repo))
    assert result.returncode == 2
    assert "--conf" in result.stderr and "JSON object" in result.stderr


# The machine states the README describes, made by hiding commands from PATH, pointing DOCKER_HOST at a
# socket nobody serves and DOCKER_CONFIG at an empty folder (no Compose plugin of the user's).
NO_DOCKER = "no Docker CLI, no daemon"
NO_DAEMON = "a Docker CLI, no daemon"
NO_COMPOSE = "a daemon, no Compose"


def machine_state(state: str, workdir: Path) -> dict[str, str]:
    """The environment of a machine in ``state`` (NO_COMPOSE needs a daemon: it skips without one)."""
    env = {"DOCKER_CONFIG": str(workdir / "docker-config"), "ARIEL_COMPOSE": "auto"}
    hidden = ["docker-compose"]
    if state == NO_DOCKER:
        hidden.append("docker")
    if state == NO_DAEMON and shutil.which("docker") is None:
        # This machine has no Docker CLI: one that finds no daemon, as the real one would.
        stand_in = workdir / "docker-cli" / "docker"
        stand_in.parent.mkdir(parents=True)
        stand_in.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
        stand_in.chmod(0o755)
        env["PATH"] = f"{stand_in.parent}{os.pathsep}"
    if state in (NO_DOCKER, NO_DAEMON):
        env["DOCKER_HOST"] = f"unix://{workdir}/no-daemon.sock"
    env["PATH"] = env.get("PATH", "") + path_without(workdir / "bin", *hidden)
    if state == NO_COMPOSE:
        require_docker_daemon()  # skips (or fails under ARIEL_REQUIRE_DOCKER) without a daemon
        with_cli = subprocess.run(
            ["docker", "compose", "version"], env={**os.environ, **env}, capture_output=True, check=False
        )
        if with_cli.returncode == 0:  # a system-wide plugin: only hiding the CLI hides it
            env["PATH"] = path_without(workdir / "bin-without-docker", *hidden, "docker")
    return env


def up(repo: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_ariel("local", "up", "--detach", "--team-repo", str(repo), *args, env=env)


def test_docker_engine_without_docker_says_install_it_or_go_native(workdir: Path) -> None:
    repo = copy_demo_team(workdir / "team")
    result = up(repo, "--engine", "docker", env=machine_state(NO_DOCKER, workdir))
    assert result.returncode == 2
    assert "Docker is not installed: no `docker` command on PATH" in result.stderr
    assert "no-daemon.sock" in result.stderr  # where it looked for a daemon
    assert "fix: install Docker with Compose" in result.stderr and "--engine native" in result.stderr
    assert no_traceback(result)
    assert not (repo / ".ariel").exists()  # nothing written


def test_docker_engine_without_a_daemon_says_how_to_go_on(workdir: Path) -> None:
    repo = copy_demo_team(workdir / "team")
    result = up(repo, "--engine", "docker", env=machine_state(NO_DAEMON, workdir))
    assert result.returncode == 2
    assert f"no Docker daemon answers at unix://{workdir}/no-daemon.sock" in result.stderr
    assert "fix: start it" in result.stderr and "systemctl start docker" in result.stderr
    assert "--engine native" in result.stderr
    assert "Compose" not in result.stderr  # the daemon is what is missing first
    assert no_traceback(result)
    assert not (repo / ".ariel").exists()


@pytest.mark.docker
def test_docker_engine_without_compose_says_how_to_install_it(workdir: Path) -> None:
    repo = copy_demo_team(workdir / "team")
    result = up(repo, "--engine", "docker", env=machine_state(NO_COMPOSE, workdir))
    assert result.returncode == 2
    assert "Docker answers, but Compose is not installed" in result.stderr
    fix = result.stderr.split("fix:", 1)[1]
    assert f"{workdir}/docker-config/cli-plugins/docker-compose" in fix  # where this DOCKER_CONFIG wants it
    assert "docker-compose-plugin" in fix and "apt-get install docker-compose" in fix
    assert "--engine native" in fix and "start" not in fix
    assert no_traceback(result)
    assert not (repo / ".ariel").exists()


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (NO_DOCKER, "Docker is not installed"),
        (NO_DAEMON, "no Docker daemon answers"),
        pytest.param(NO_COMPOSE, "Docker answers, but Compose is not installed", marks=pytest.mark.docker),
    ],
)
def test_auto_engine_takes_native_and_says_why(state: str, reason: str, workdir: Path) -> None:
    repo = copy_demo_team(workdir / "team")
    env = machine_state(state, workdir)
    with socket.socket() as sock:  # a taken port stops the native engine before it starts anything
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = up(repo, "--engine", "auto", "--port", str(port), env=env)
    assert "(native engine)" in result.stderr
    assert f"not the docker engine: {reason}" in result.stderr
    assert result.returncode == 2 and f"port {port} is already in use" in result.stderr
    assert no_traceback(result)


def test_unknown_compose_setting_is_refused_whatever_the_engine(workdir: Path) -> None:
    repo = copy_demo_team(workdir / "team")
    for engine in ("auto", "docker"):
        env = {**machine_state(NO_DAEMON, workdir / engine), "ARIEL_COMPOSE": "v3"}
        result = up(repo, "--engine", engine, env=env)
        assert result.returncode == 2, result.stderr
        assert "ARIEL_COMPOSE: unknown Compose 'v3'" in result.stderr
        assert "set it to auto, v2 or v1" in result.stderr
        assert no_traceback(result)
    assert not (repo / ".ariel").exists()


@pytest.mark.docker
def test_compose_v2_asked_for_but_missing_says_how_to_install_it(workdir: Path) -> None:
    repo = copy_demo_team(workdir / "team")
    env = {**machine_state(NO_COMPOSE, workdir), "ARIEL_COMPOSE": "v2"}
    result = up(repo, "--engine", "docker", env=env)
    assert result.returncode == 2
    assert "ARIEL_COMPOSE=v2 asks for `docker compose`, which does not run here" in result.stderr
    assert "docker-compose-plugin" in result.stderr and "unset ARIEL_COMPOSE" in result.stderr
    assert no_traceback(result)
