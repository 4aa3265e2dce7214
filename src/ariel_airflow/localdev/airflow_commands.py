"""Run Airflow CLI commands one after the other in one process, stopping at the first that fails.

    python -m ariel_airflow.localdev.airflow_commands db migrate ";" pools set team-x 4 "its pool"

The stack's one-shot job migrates the metadata database and then creates the team's pool, and on
Docker each component first waits for the migrations (``db check-migrations``). As separate ``airflow``
commands, each would import Airflow again: seconds of CPU on the start-up's critical path (on the
Docker engine, a container more). Airflow's own CLI parses and runs each command here, exactly as
``airflow ...`` would.
"""

from __future__ import annotations

import sys

MODULE = "ariel_airflow.localdev.airflow_commands"
SEPARATOR = ";"
# Modules a command needs, imported before the first command runs: while a component waits for
# the migrations (its first command), and once, so that the processes it forks find them loaded
# instead of importing them again, for seconds, each time. The dag-processor forks a parser per
# DAG file, whose profile() builds Kubernetes models, and the scheduler's executor forks each task,
# which parses its DAG file too. (The native engine's launcher has loaded them before forking.)
KUBERNETES = ("airflow.providers.cncf.kubernetes.pod_generator", "ariel_airflow.profiles")
API = (
    "airflow.api_fastapi.app",
    "airflow.api_fastapi.core_api.routes.public",
    "airflow.api_fastapi.core_api.routes.ui",
    "airflow.api_fastapi.execution_api.routes",
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager",
    "uvicorn",
)
MODULES_OF_COMMAND = {"scheduler": KUBERNETES, "dag-processor": KUBERNETES, "api-server": API}


def argv(*commands: list[str]) -> list[str]:
    """The command line running these Airflow commands (each without ``airflow``) in one process."""
    joined: list[str] = []
    for command in commands:
        joined += [SEPARATOR, *command] if joined else command
    return ["python", "-m", MODULE, *joined]


def commands_of(command_line: list[str]) -> list[list[str]] | None:
    """The Airflow commands a command line runs (``airflow ...`` or ``argv()``'s), else None."""
    if command_line[:1] == ["airflow"]:
        words = command_line[1:]
    elif command_line[:3] == argv()[:3]:
        words = command_line[3:]
    else:
        return None
    commands: list[list[str]] = [[]]
    for arg in words:
        if arg == SEPARATOR:
            commands.append([])
        else:
            commands[-1].append(arg)
    return [command for command in commands if command]


def run(commands: list[list[str]]) -> int:
    """Run each command with Airflow's CLI, in order; the exit code of the first that fails, or 0."""
    import importlib

    from airflow.__main__ import main as airflow_main

    for command in commands:
        for module in MODULES_OF_COMMAND.get(command[0], ()):
            importlib.import_module(module)
    for command in commands:
        if len(commands) > 1:
            print(f"--- airflow {' '.join(command)}", file=sys.stderr, flush=True)
        sys.argv = ["airflow", *command]
        try:
            airflow_main()
        except SystemExit as exc:
            if exc.code not in (0, None):
                return exc.code if isinstance(exc.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(run(commands_of(argv()[:3] + sys.argv[1:]) or []))
