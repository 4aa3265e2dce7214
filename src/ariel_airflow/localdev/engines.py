"""Choosing the engine that runs a team repository's local stack."""

from __future__ import annotations

from enum import StrEnum

from ariel_airflow.errors import UserError
from ariel_airflow.localdev.docker_engine import DockerEngine, daemon_answers
from ariel_airflow.localdev.native import NativeEngine
from ariel_airflow.localdev.stack import StackEngine
from ariel_airflow.team import TeamRepo


class Engine(StrEnum):
    """The engines ``ariel local up --engine`` offers."""

    AUTO = "auto"  # Docker when a daemon answers, else native
    NATIVE = NativeEngine.name
    DOCKER = DockerEngine.name


ENGINES: dict[str, type[StackEngine]] = {Engine.NATIVE: NativeEngine, Engine.DOCKER: DockerEngine}


def engine_for_up(repo: TeamRepo, requested: Engine) -> StackEngine:
    """The requested engine; ``auto`` is Docker when a daemon answers, else native."""
    if requested is Engine.AUTO:
        requested = Engine.DOCKER if daemon_answers() else Engine.NATIVE
    name = requested.value
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
    return ENGINES[name](repo)


def engine_of(repo: TeamRepo) -> StackEngine:
    """The engine that last started the repository's stack (for status, logs, trigger, down)."""
    state = NativeEngine(repo).state()
    return ENGINES.get(state.engine if state else "native", NativeEngine)(repo)
