"""What `ariel local` offers on its command line: the engines and the exit codes of `status`.

Kept apart from the engines so that the CLI starts without importing them (the Docker SDK, httpx
and psycopg take seconds): commands that do not run a stack, such as `ariel capacity`, stay fast.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any


class Engine(StrEnum):
    """The engines ``ariel local up --engine`` offers."""

    AUTO = "auto"  # Docker when a daemon and Compose answer, else native
    NATIVE = "native"
    DOCKER = "docker"


class StatusCode(IntEnum):
    """Exit codes of `ariel local status` (2 stays a user error, as everywhere)."""

    HEALTHY = 0
    UNHEALTHY = 1
    NOT_RUNNING = 3

    @property
    def meaning(self) -> str:
        return {
            StatusCode.HEALTHY: "running and healthy",
            StatusCode.UNHEALTHY: "running, but a service is stopped or unhealthy",
            StatusCode.NOT_RUNNING: "not running (stopped, never started, or purged)",
        }[self]


def status_code(status: dict[str, Any]) -> StatusCode:
    """The exit code of `ariel local status` for the engine's ``status()`` answer."""
    if not status["running"]:
        return StatusCode.NOT_RUNNING
    healthy = all(row["health"] == "healthy" for row in status["services"])
    return StatusCode.HEALTHY if healthy else StatusCode.UNHEALTHY
