"""Choosing the engine that runs a team repository's local stack."""

from __future__ import annotations

from typing import Literal

from ariel_airflow.errors import UserError
from ariel_airflow.localdev.native import NativeEngine
from ariel_airflow.localdev.team_repo import TeamRepo

EngineName = Literal["auto", "native", "docker"]


def engine_for_up(repo: TeamRepo, requested: EngineName) -> NativeEngine:
    if requested == "docker":
        raise UserError(
            "the Docker engine is not available in this version of the kit",
            fix="use `--engine native` (needs PostgreSQL server binaries and PgBouncer)",
        )
    # 'auto' means native until the Docker engine exists.
    return NativeEngine(repo)


def engine_of(repo: TeamRepo) -> NativeEngine:
    """The engine that started the repository's stack (for status, logs, trigger, down)."""
    return NativeEngine(repo)
