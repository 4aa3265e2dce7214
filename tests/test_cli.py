"""The command line itself, run as a user runs it: choices, versions, help."""

import re
from pathlib import Path

from conftest import KIT_ROOT, copy_demo_team, no_traceback, run_ariel, status_json


def test_version_prints_the_kit_and_the_pinned_airflow_without_importing_airflow() -> None:
    result = run_ariel("--version", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr
    kit = (KIT_ROOT / "src" / "ariel_airflow" / "VERSION").read_text().strip()
    airflow = re.search(r"^apache-airflow==(\S+)$", (KIT_ROOT / "constraints.txt").read_text(), re.M)
    assert airflow, "constraints.txt pins no apache-airflow"
    assert result.stdout.split("\n")[:2] == [f"ariel-airflow {kit}", f"apache-airflow {airflow[1]}"]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "ariel_airflow.cli" in imported  # the import log works, so what follows means something
    assert not {m for m in imported if m == "airflow" or m.startswith("airflow.")}


def test_engine_is_a_choice_shown_in_help_and_checked_before_anything_runs(workdir: Path) -> None:
    help_text = run_ariel("local", "up", "--help", env={"COLUMNS": "200"}).stdout
    assert "auto|native|docker" in help_text
    repo = copy_demo_team(workdir / "team")
    result = run_ariel("local", "up", "--engine", "podman", "--detach", "--team-repo", str(repo))
    assert result.returncode == 2
    assert "--engine" in result.stderr and "'podman' is not one of" in result.stderr
    assert no_traceback(result)
    assert not (repo / ".ariel").exists()


def test_check_format_is_a_choice_shown_in_help(workdir: Path) -> None:
    help_text = run_ariel("check", "--help", env={"COLUMNS": "200"}).stdout
    assert "text|json|junit" in help_text
    result = run_ariel("check", str(workdir), "--format", "xml")
    assert result.returncode == 2
    assert "--format" in result.stderr and "'xml' is not one of" in result.stderr
    assert no_traceback(result)


def test_status_of_a_stack_never_started_says_it_is_not_running(workdir: Path) -> None:
    repo = copy_demo_team(workdir / "team")
    result = run_ariel("local", "status", "--team-repo", str(repo))
    assert result.returncode == 3, result.stderr
    assert "not running" in result.stdout and "ariel local up" in result.stdout
    status = status_json(repo, exit_code=3)
    assert status["running"] is False and status["database_kept"] is False
    assert not (repo / ".ariel").exists()  # asking wrote nothing
