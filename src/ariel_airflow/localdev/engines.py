"""Choosing the engine that runs a team repository's local stack.

The Docker engine's modules (the Docker SDK, requests) are imported only when Docker is asked for
or looked for: a native stack's commands start without them, a few tenths of a second sooner.
"""

from __future__ import annotations

from ariel_airflow.errors import UserError
from ariel_airflow.localdev.native import NativeEngine
from ariel_airflow.localdev.options import Engine
from ariel_airflow.localdev.stack import StackEngine
from ariel_airflow.team import TeamRepo


def engine_named(name: str, repo: TeamRepo) -> StackEngine:
    """The engine ``name`` ("native" or "docker") for the repository."""
    if name == Engine.DOCKER:
        from ariel_airflow.localdev.docker_engine import DockerEngine

        return DockerEngine(repo)
    return NativeEngine(repo)


def engine_for_up(repo: TeamRepo, requested: Engine) -> tuple[StackEngine, str | None]:
    """The requested engine, and why ``auto`` did not take Docker (it does when a daemon and Compose
    answer, else it takes native)."""
    name, why_not_docker = requested.value, None
    if requested is Engine.AUTO:
        from ariel_airflow.localdev.docker_tools import docker_problem

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
    return engine_named(name, repo), why_not_docker


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
        return engine_named(Engine.DOCKER, repo)
    return engine_named(state.engine, repo) if state else native
