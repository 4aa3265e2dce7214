"""Several Airflow CLI commands in one process (localdev/airflow_commands.py), with the real Airflow."""

from __future__ import annotations

import subprocess
import sys

from ariel_airflow.localdev import airflow_commands
from ariel_airflow.localdev.launcher import LAST_STAGE, STAGE_OF_COMMAND, stage_needed


def run(*commands: list[str], home, python_options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    argv = airflow_commands.argv(*commands)
    return subprocess.run(
        [sys.executable, *python_options, *argv[1:]],
        capture_output=True,
        text=True,
        env={"AIRFLOW_HOME": str(home), "PATH": "/usr/bin:/bin", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"},
        timeout=120,
        check=False,
    )


def test_the_command_line_reads_back_as_its_commands() -> None:
    commands = [["db", "migrate"], ["pools", "set", "team-x", "4", "a pool; with a semicolon"]]
    assert airflow_commands.commands_of(airflow_commands.argv(*commands)) == commands
    assert airflow_commands.commands_of(["airflow", "scheduler"]) == [["scheduler"]]
    assert airflow_commands.commands_of(["postgres", "-D", "x"]) is None
    assert airflow_commands.commands_of(["airflow"]) == []  # nothing to run, not an empty command


def test_each_command_runs_in_order_in_one_process(tmp_path) -> None:
    result = run(["version"], ["config", "get-value", "core", "load_examples"], home=tmp_path)
    assert result.returncode == 0, result.stderr
    version, load_examples = result.stdout.split()[-2:]
    assert version.startswith("3.") and load_examples == "False"
    assert result.stderr.index("--- airflow version") < result.stderr.index("--- airflow config get-value")


def test_the_first_failing_command_stops_the_rest_and_sets_the_exit_code(tmp_path) -> None:
    # A database never migrated: the wait the components run first gives up after a second.
    result = run(["db", "check-migrations", "--migration-wait-timeout", "1"], ["version"], home=tmp_path)
    assert result.returncode != 0
    assert "unapplied migrations" in result.stderr + result.stdout
    assert "--- airflow version" not in result.stderr


def test_what_the_component_needs_is_imported_while_it_waits_for_the_migrations(tmp_path) -> None:
    # Never migrated: the wait gives up, and the api-server does not run, but its modules were
    # imported before the wait began (on Docker, while the migration job runs).
    wait = ["db", "check-migrations", "--migration-wait-timeout", "1"]
    result = run(wait, ["api-server"], home=tmp_path, python_options=("-X", "importtime"))
    assert result.returncode != 0
    assert "--- airflow api-server" not in result.stderr
    imported = result.stderr.index("airflow.api_fastapi.core_api.routes.public.assets\n")
    assert imported < result.stderr.index("--- airflow db check-migrations")


def test_each_forked_command_waits_only_for_the_preload_stage_it_needs() -> None:
    migrate = airflow_commands.argv(["db", "migrate"], ["pools", "set", "p", "1", "d"])
    wait = ["db", "check-migrations", "--migration-wait-timeout", "300"]
    assert stage_needed(migrate) == 0
    api_server = stage_needed(airflow_commands.argv(wait, ["api-server"]))
    assert api_server == STAGE_OF_COMMAND["api-server"] < LAST_STAGE
    assert stage_needed(airflow_commands.argv(wait, ["scheduler", "--skip-serve-logs"])) == LAST_STAGE
