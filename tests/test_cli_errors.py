"""User errors: a clear message on stderr naming what is wrong and the fix, no traceback, nothing started."""

import socket
from pathlib import Path

from ariel_airflow.localdev.state import free_port

from conftest import copy_demo_team, no_traceback, run_ariel


def test_unknown_team_repo(workdir: Path) -> None:
    result = run_ariel("local", "up", "--engine", "native", "--detach", "--team-repo", str(workdir / "nope"))
    assert result.returncode == 2
    assert "team repository not found" in result.stderr
    assert no_traceback(result)


def test_folder_without_dags_is_not_a_team_repo(workdir: Path) -> None:
    result = run_ariel("local", "up", "--engine", "native", "--detach", "--team-repo", str(workdir))
    assert result.returncode == 2
    assert "no dags/ folder" in result.stderr and "fix:" in result.stderr


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


def test_docker_engine_without_a_daemon_says_how_to_go_on(workdir: Path) -> None:
    repo = copy_demo_team(workdir / "team")
    result = run_ariel(
        "local",
        "up",
        "--engine",
        "docker",
        "--team-repo",
        str(repo),
        env={"DOCKER_HOST": f"unix://{workdir}/no-daemon.sock"},
    )
    assert result.returncode == 2
    assert "no Docker daemon answers" in result.stderr and "--engine native" in result.stderr
    assert no_traceback(result)
    assert not (repo / ".ariel").exists()  # nothing written
