"""What the Docker engine needs on the machine: a Docker daemon that answers, and a Compose command.

Checked in that order, because Compose is of no use without a daemon; each missing part has its own
message and the fix for it. ``--engine auto`` uses the same checks and takes the native engine when
one fails.

Setting, from the environment:
  ARIEL_COMPOSE   which Compose runs the stack: ``v2`` (``docker compose``, the CLI plugin),
                  ``v1`` (the standalone ``docker-compose`` command, Compose 1.29), or ``auto``
                  (the default: v2 when the plugin answers, else v1)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests

from ariel_airflow.errors import UserError

COMPOSE_SETTING = "ARIEL_COMPOSE"
COMPOSE_COMMANDS = {"v2": ("docker", "compose"), "v1": ("docker-compose",)}  # auto tries them in this order
NATIVE = "or use `--engine native`"


@dataclass(frozen=True)
class Compose:
    flavour: str  # a key of COMPOSE_COMMANDS
    argv: tuple[str, ...]
    version: str  # as the command reports it, e.g. 2.40.3 or 1.29.2


def docker_client(timeout: int | None = None) -> docker.DockerClient:
    """A client of the daemon that DOCKER_HOST (or the default socket) names, once it answered."""
    try:
        client = docker.from_env(**({"timeout": timeout} if timeout else {}))
        client.ping()
    except (docker.errors.DockerException, requests.RequestException):
        raise _no_daemon() from None
    return client


def _no_daemon() -> UserError:
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if shutil.which("docker") is None:
        return UserError(
            f"Docker is not installed: no `docker` command on PATH and no Docker daemon answers at {host}",
            fix="install Docker with Compose (Docker Desktop, or Docker Engine and its "
            f"`docker-compose-plugin`: https://docs.docker.com/engine/install/) and start it, {NATIVE}",
        )
    return UserError(
        f"no Docker daemon answers at {host}",
        fix="start it (Docker Desktop, or `sudo systemctl start docker`; if DOCKER_HOST is set, it must "
        f"name the running daemon), {NATIVE}",
    )


def find_compose() -> Compose:
    """The Compose command that ARIEL_COMPOSE asks for (by default v2, else v1)."""
    setting = compose_setting()
    for flavour in COMPOSE_COMMANDS if setting == "auto" else [setting]:
        if (found := _probe(flavour)) is not None:
            return found
    if setting == "v2":
        raise UserError(
            f"{COMPOSE_SETTING}=v2 asks for `docker compose`, which does not run here",
            fix=f"install {_plugin_fix()}, or unset {COMPOSE_SETTING}",
        )
    if setting == "v1":
        raise UserError(
            f"{COMPOSE_SETTING}=v1 asks for `docker-compose`, which is not on PATH",
            fix=f"install docker-compose 1.29 (Debian 12: `sudo apt-get install docker-compose`), "
            f"or unset {COMPOSE_SETTING}",
        )
    raise UserError(
        "Docker answers, but Compose is not installed (neither `docker compose` nor `docker-compose` runs)",
        fix=f"install {_plugin_fix()}; or docker-compose 1.29 (Debian 12: `sudo apt-get install "
        f"docker-compose`); {NATIVE}",
    )


def compose_setting() -> str:
    setting = os.environ.get(COMPOSE_SETTING) or "auto"
    if setting != "auto" and setting not in COMPOSE_COMMANDS:
        raise UserError(
            f"unknown Compose {setting!r}",
            where=COMPOSE_SETTING,
            fix=f"set it to auto, {' or '.join(COMPOSE_COMMANDS)}, or unset it",
        )
    return setting


def plugin_path() -> Path:
    """Where the Docker CLI looks first for the ``docker compose`` plugin."""
    config = os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker"
    return Path(config) / "cli-plugins" / "docker-compose"


def _plugin_fix() -> str:
    cli = "" if shutil.which("docker") else "the Docker CLI (`docker`: the plugin runs in it) and "
    return cli + (
        "the Compose v2 plugin: Docker's `docker-compose-plugin` package or your distribution's "
        "(Ubuntu: `docker-compose-v2`), or a Compose v2 release binary saved as "
        f"{plugin_path()} and made executable"
    )


def _probe(flavour: str) -> Compose | None:
    argv = COMPOSE_COMMANDS[flavour]
    if shutil.which(argv[0]) is None:
        return None
    try:
        probe = subprocess.run(
            [*argv, "version", "--short"], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    if probe.returncode != 0 or not probe.stdout.strip():
        return None
    return Compose(flavour, argv, probe.stdout.strip().removeprefix("v"))


def docker_problem() -> UserError | None:
    """Why the Docker engine cannot run here (daemon first, then Compose), or None when it can.
    A wrong ARIEL_COMPOSE is an error, not a reason to take another engine."""
    compose_setting()
    try:
        docker_client(timeout=3)
        find_compose()
    except UserError as problem:
        return problem
    return None
