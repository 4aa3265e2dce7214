"""The Docker engine: the stack's services as Compose containers (``localdev/compose.yaml``).

Compose (``docker compose`` v2 or ``docker-compose`` 1.29) creates and removes the containers; the
Docker SDK builds the images and reads the containers' state and logs, which both Compose versions
label the same way.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import docker
import docker.errors
import requests
from docker.models.containers import Container

from ariel_airflow.errors import UserError
from ariel_airflow.localdev import compose
from ariel_airflow.localdev.docker_tools import compose_setting, docker_client, find_compose
from ariel_airflow.localdev.images import ensure_images
from ariel_airflow.localdev.local_secrets import finish_check, start_check
from ariel_airflow.localdev.options import Engine
from ariel_airflow.localdev.processes import exit_reason, tail
from ariel_airflow.localdev.progress import Progress
from ariel_airflow.localdev.stack import StackEngine
from ariel_airflow.localdev.state import StackState
from ariel_airflow.localdev.topology import Health, Service
from ariel_airflow.team import TeamRepo

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class DockerEngine(StackEngine):
    name = Engine.DOCKER.value

    def __init__(self, repo: TeamRepo) -> None:
        super().__init__(repo)
        self.docker_dir = self.state_dir / "docker"
        # One Compose project per repository, even for two checkouts of the same team.
        self.project = f"ariel-{repo.team.name}-{hashlib.sha256(str(repo.root).encode()).hexdigest()[:6]}"

    # -- model ----------------------------------------------------------------------------------
    def services(self, state: StackState) -> list[Service]:
        return compose.container_services(self.repo.team.bundle_name, state, pool=self.repo.team.pool)

    def host_airflow_home(self) -> Path:
        return self.docker_dir / compose.WRITTEN_DIRS[compose.CONTAINER_LAYOUT.airflow_home]

    @cached_property
    def docker_client(self) -> docker.DockerClient:
        return docker_client()

    def containers(self) -> dict[str, Container]:
        """This stack's containers (running or not), by service name."""
        # ignore_removed: a container Compose removes between the listing and its inspection is gone,
        # not an error (it ended a start-up once in seven with a NotFound traceback).
        found = self.docker_client.containers.list(
            all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}, ignore_removed=True
        )
        return {c.labels[SERVICE_LABEL]: c for c in found}

    def running_services(self) -> list[str]:
        return _running(self.containers())

    def build_images(self, progress: Progress) -> dict[str, str]:
        """Tags of the stack's images, built first where missing (build logs in .ariel/docker/build/)."""
        self.docker_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return ensure_images(self.docker_client, self.repo.root, self.docker_dir / "build", progress)

    # -- up -------------------------------------------------------------------------------------
    def up(
        self, *, ui_port: int, parallelism: int, progress: Progress, supervise: bool = False
    ) -> StackState:
        """Compose starts what is not running; the compose file's restart policy restarts what dies
        (``supervise`` is always on here)."""
        compose_setting()  # a wrong ARIEL_COMPOSE first, then the daemon: without it Compose is of no use
        self.docker_client  # noqa: B018
        command = find_compose().argv
        running = set(self.running_services())
        plan = self.services(self.readable_state() or StackState())
        missing = [s.name for s in plan if s.health is not Health.EXITS_ZERO and s.name not in running]
        if running and not missing:
            raise UserError(
                f"the local stack of this repository is already running ({', '.join(sorted(running))})",
                where=str(self.repo.root),
                fix="see `ariel local status`, or stop it with `ariel local down`",
            )
        first_start = self.state() is None
        # Parsing the secret files imports Airflow, which takes seconds: overlap it with the rest.
        checker = start_check(self.repo.connections_file, self.repo.variables_file)
        starter: subprocess.Popen | None = None
        try:
            if running:  # partly running: its ports and images stay, Compose starts only what is missing
                state = self._require_state()
                progress.info(
                    f"partly running: starting {', '.join(missing)} "
                    f"(keeping port {state.ui_port} and parallelism {state.parallelism})"
                )
            else:
                state = self._prepare_state(ui_port, parallelism)
                images = self.build_images(progress)
                state = state.model_copy(update={"images": images})
                state.save(self.state_file)
            plan = self.services(state)
            self._write_files(plan)
            log = self.docker_dir / "compose.log"
            with log.open("w") as out:
                starter = subprocess.Popen(
                    self._compose_argv(command, "up", "--detach", "--no-build"),
                    env=self._compose_env(state),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            with progress.step("checking the local secret files", "local secret files parse"):
                counts = finish_check(checker)
            progress.info(f"{counts['connections']} connections, {counts['variables']} variables")
            for svc in plan:
                if svc.name in running:
                    continue
                started, finished = svc.step or (f"starting {svc.name}", f"{svc.name} healthy")
                with progress.step(started, finished):
                    self._wait(svc, starter, log)
            if starter.wait() != 0:
                raise UserError(f"compose up failed. Last lines of {log}:\n{tail(log, 25)}")
        except BaseException:
            checker.kill()
            if starter is not None and starter.poll() is None:  # let it stop creating containers
                starter.terminate()
                starter.wait(60)
            kept = self._save_logs()
            if running:  # what ran before stays
                progress.failed(f"start-up failed; the containers' logs are in {kept}")
                raise
            progress.failed(f"start-up failed; stopping what was started (their logs: {kept})")
            # A failed first start leaves no database behind (the logs under .ariel/ stay).
            self._compose_down(command, volumes=first_start)
            raise
        return state

    def _save_logs(self) -> Path:
        """Every container's log, into .ariel/docker/logs/ (Compose removes them with the containers)."""
        folder = self.docker_dir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            for name, container in self.containers().items():
                (folder / f"{name}.log").write_bytes(container.logs(timestamps=True))
        except docker.errors.DockerException:
            pass  # the daemon went away: the error at hand says more
        return folder

    def _write_files(self, plan: list[Service]) -> None:
        """Config files of the services, into the host folders mounted where the model wants them."""
        for folder in compose.WRITTEN_DIRS.values():
            (self.docker_dir / folder).mkdir(exist_ok=True)
            # Read by the db image's postgres user; the folder above (0700) keeps other users out.
            (self.docker_dir / folder).chmod(0o755)
        for svc in plan:
            for name, content in svc.files.items():
                path = self._host_path(PurePosixPath(name))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
                path.chmod(0o644)

    def _host_path(self, container_path: PurePosixPath) -> Path:
        for mount, folder in compose.WRITTEN_DIRS.items():
            if container_path.is_relative_to(mount):
                return self.docker_dir / folder / container_path.relative_to(mount)
        raise ValueError(f"{container_path} is not in a folder the compose file mounts")

    def _wait(self, svc: Service, starter: subprocess.Popen, log: Path) -> None:
        deadline = time.monotonic() + self.timeout(svc.health)
        while True:
            try:
                container = self.containers().get(svc.name)
            except (docker.errors.APIError, requests.RequestException):
                # A daemon busy with other work (builds, other stacks) can time out or fail one
                # listing; that is no answer about the service: ask again until the deadline.
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
                continue
            if container is not None:
                state = container.attrs["State"]
                if svc.health is Health.EXITS_ZERO and state["Status"] == "exited":
                    if state["ExitCode"] == 0:
                        return
                    self._fail(svc, container, f"exited with code {state['ExitCode']}")
                if svc.health is not Health.EXITS_ZERO:
                    health = (state.get("Health") or {}).get("Status")
                    if health == "healthy":
                        return
                    # restarting: it exited, and its restart policy starts it again.
                    if state["Status"] in ("exited", "dead", "restarting"):
                        self._fail(svc, container, "exited during start-up")
                    # Not "unhealthy": that is only 5 checks in a row without an answer after one
                    # success, which a busy machine gives a starting api-server (it failed one start-up
                    # in seven); Docker goes on checking, so wait for "healthy" until the deadline.
            elif starter.poll() not in (None, 0):
                raise UserError(f"compose up failed. Last lines of {log}:\n{tail(log, 25)}")
            if time.monotonic() > deadline:
                if container is None:
                    raise UserError(
                        f"{svc.name} was not created in time. Last lines of {log}:\n{tail(log, 25)}"
                    )
                health = (container.attrs["State"].get("Health") or {}).get("Status")
                self._fail(svc, container, f"{self.not_healthy_in_time(svc.health)} (Docker: {health})")
            time.sleep(0.5)

    def _fail(self, svc: Service, container: Container, why: str) -> None:
        last = container.logs(tail=25).decode(errors="replace")
        raise UserError(
            f"{svc.name} {why}. Last lines of its log:\n{last}",
            fix=f"read the whole log with `ariel local logs {svc.name}`",
        )

    # -- watch, down, status, logs --------------------------------------------------------------
    def watch(self, state: StackState, poll: float = 2.0) -> str:
        names = [s.name for s in self.services(state) if s.health is not Health.EXITS_ZERO]
        while True:
            containers = self.containers()
            for name in names:
                if name not in containers or containers[name].status != "running":
                    return name
            time.sleep(poll)

    def down(self, *, purge: bool, progress: Progress | None = None) -> list[str]:
        """Remove the containers (Compose stops them in dependency order); ``purge`` also the database."""
        order = [s.name for s in self.services(self.readable_state() or StackState())]
        containers = self.containers()
        running = sorted(_running(containers), key=lambda n: -order.index(n) if n in order else 0)
        t0 = time.monotonic()
        if purge or containers:
            self._compose_down(find_compose().argv, volumes=purge)
        if progress and running:
            progress.done(f"stopped {', '.join(running)}", time.monotonic() - t0)
        if purge and self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        else:
            self._note_stopped(running)
        return running

    def _compose_down(self, command: tuple[str, ...], *, volumes: bool) -> None:
        result = subprocess.run(
            self._compose_argv(command, "down", *(["--volumes"] if volumes else [])),
            env=self._compose_env(self.readable_state() or StackState()),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise UserError(f"compose down failed:\n{result.stdout}{result.stderr}", where=self.project)

    def database(self) -> str | None:
        volumes = self.docker_client.volumes.list(filters={"label": f"{PROJECT_LABEL}={self.project}"})
        return f"Docker volume {volumes[0].name}" if volumes else None

    def running_status(self, state: StackState) -> dict[str, Any]:
        report = self.health_report(state)
        containers = self.containers()
        rows = []
        for svc in self.services(state):
            if svc.health is Health.EXITS_ZERO:
                continue
            container = containers.get(svc.name)
            running = container is not None and container.status == "running"
            health = (container.attrs["State"].get("Health") or {}).get("Status") if running else None
            stopped = (
                "restarting" if container is not None and container.status == "restarting" else "stopped"
            )
            rows.append(
                {
                    "service": svc.name,
                    "running": running,
                    "pid": container.attrs["State"]["Pid"] if running else None,
                    "container": container.name if container else None,
                    "port": svc.port,
                    "health": "healthy" if health == "healthy" else ("unhealthy" if running else stopped),
                    "restarts": container.attrs["RestartCount"] if container else 0,
                    "last_exit": self._last_exit(container) if container else None,
                }
            )
        return self._report(rows, state, report)

    def _last_exit(self, container: Container) -> str | None:
        """Why the container last exited: its exit code while it is down; once its restart policy
        started it again (which resets the code), the daemon's last ``die`` event of it, while the
        daemon still has it."""
        state = container.attrs["State"]
        if state["Status"] in ("exited", "dead", "restarting"):
            return _exit_reason(state["ExitCode"])
        if not container.attrs["RestartCount"]:
            return None
        created = datetime.fromisoformat(container.attrs["Created"][:19]).replace(tzinfo=UTC)
        events = self.docker_client.events(
            since=int(created.timestamp()),
            until=int(time.time()) + 1,
            filters={"container": container.id, "event": "die"},
            decode=True,
        )
        codes = [e["Actor"]["Attributes"].get("exitCode") for e in events]
        if codes and codes[-1] is not None:
            return _exit_reason(int(codes[-1]))
        # The daemon keeps its last 256 events only, and health checks make several a second.
        return f"exited at {state['FinishedAt'][:19]}Z (its code has left the daemon's event log)"

    def logs(self, service: str | None, lines: int, follow: bool, write: Callable[[str], None]) -> None:
        containers = self.containers()
        if service is not None:
            if service not in containers:
                raise UserError(
                    f"no log for service {service!r}",
                    fix=f"pick one of: {', '.join(containers) or '(none yet)'}",
                )
            containers = {service: containers[service]}
        label = (lambda name, line: f"{name} | {line}") if len(containers) > 1 else (lambda name, line: line)
        since = int(time.time())
        for name, container in containers.items():
            for line in container.logs(tail=lines).decode(errors="replace").splitlines():
                write(label(name, line))
        if follow:
            _follow(containers, since, lambda name, line: write(label(name, line)))

    # -- compose --------------------------------------------------------------------------------
    def _compose_argv(self, command: tuple[str, ...], *args: str) -> list[str]:
        return [*command, "--file", str(compose.compose_file()), "--project-name", self.project, *args]

    def _compose_env(self, state: StackState) -> dict[str, str]:
        images = state.images or {"db": "ariel-local/db:none", "airflow": "ariel-local/airflow:none"}
        variables = compose.variables(self.repo.team.name, state, self.repo.root, self.docker_dir, images)
        return {**os.environ, **variables}


def _exit_reason(code: int) -> str:
    """A container's exit code in words: 128+N is the signal N (137: SIGKILL)."""
    return exit_reason(-(code - 128) if code > 128 else code)


def _running(containers: dict[str, Container]) -> list[str]:
    return [name for name, c in containers.items() if c.status in ("running", "restarting")]


def _follow(containers: dict[str, Container], since: int, write: Callable[[str, str], None]) -> None:
    """Print new lines of every container's log as they come, until interrupted."""
    lines: queue.Queue[tuple[str, str]] = queue.Queue()

    def pump(name: str, container: Container) -> None:
        buffer = b""
        for chunk in container.logs(stream=True, follow=True, since=since):
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                lines.put((name, line.decode(errors="replace")))

    for name, container in containers.items():
        threading.Thread(target=pump, args=(name, container), daemon=True).start()
    while True:
        try:
            write(*lines.get(timeout=0.5))
        except queue.Empty:
            continue
