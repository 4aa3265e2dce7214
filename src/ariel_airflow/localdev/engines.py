"""Choosing the engine that runs a team repository's local stack."""

from __future__ import annotations

from ariel_airflow.errors import UserError
from ariel_airflow.localdev.docker_engine import DockerEngine
from ariel_airflow.localdev.docker_tools import docker_problem
from ariel_airflow.localdev.native import NativeEngine
from ariel_airflow.localdev.options import Engine
from ariel_airflow.localdev.stack import StackEngine
from ariel_airflow.team import TeamRepo

ENGINES: dict[str, type[StackEngine]] = {Engine.NATIVE: NativeEngine, Engine.DOCKER: DockerEngine}


def engine_for_up(repo: TeamRepo, requested: Engine) -> tuple[StackEngine, str | None]:
    """The requested engine, and why ``auto`` did not take Docker (it does when a daemon and Compose
    answer, else it takes native)."""
    name, why_not_docker = requested.value, None
    if requested is Engine.AUTO:
        problem = docker_problem()
        name = Engine.NATIVE.value if problem else Engine.DOCKER.value
        why_not_docker = problem.message if problem else None
    current = engine_of(repo)
    try:
        running = current.running_services() if current.name != name else []
    except UserError:  # its Docker daemon is gone, and its stack with it
        running = []
    if running:
        raise UserError(
            f"the local stack of this repository is already running on the {current.name} engine "
            f"({', '.join(running)})",
            where=str(repo.root),
            fix="stop it first with `ariel local down`",
        )
    return ENGINES[name](repo), why_not_docker


def engine_of(repo: TeamRepo) -> StackEngine:
    """The engine that last started the repository's stack (for status, logs, trigger, down).

    With an unreadable stack.json, the one whose files are there: pid files are the native
    engine's, a docker/ folder the Docker engine's (so `down` still works)."""
    native = NativeEngine(repo)
    try:
        state = native.state()
    except UserError:
        if list(native.table.run_dir.glob("*.pid")) or not (repo.state_dir / "docker").is_dir():
            return native
        return DockerEngine(repo)
    return ENGINES.get(state.engine if state else Engine.NATIVE, NativeEngine)(repo)
