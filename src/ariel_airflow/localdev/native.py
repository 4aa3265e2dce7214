"""The native engine: the stack's services as local processes (Postgres and PgBouncer binaries,
Airflow from the kit's own virtual environment)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ariel_airflow.errors import UserError
from ariel_airflow.localdev import airflow_commands, binaries
from ariel_airflow.localdev import logs as log_files
from ariel_airflow.localdev.launcher import NAME as LAUNCHER
from ariel_airflow.localdev.launcher import Launcher, stage_needed
from ariel_airflow.localdev.options import Engine
from ariel_airflow.localdev.processes import ProcessTable, Tracked, as_user, tail
from ariel_airflow.localdev.progress import Progress
from ariel_airflow.localdev.stack import StackEngine, component_status, connect_db, sql_ok
from ariel_airflow.localdev.state import StackState
from ariel_airflow.localdev.topology import (
    DB_NAME,
    DB_USER,
    Health,
    Layout,
    Service,
    airflow_env,
    services,
)
from ariel_airflow.team import TeamRepo

# Seconds between health probes during `up`: a probe is one query or HTTP request, and each service
# becomes healthy on average half an interval before `up` sees it.
PROBE_INTERVAL = 0.1


class NativeEngine(StackEngine):
    name = Engine.NATIVE.value

    def __init__(self, repo: TeamRepo) -> None:
        super().__init__(repo)
        self.table = ProcessTable(self.state_dir / "run", self.state_dir / "logs")

    # -- model ----------------------------------------------------------------------------------
    def layout(self) -> Layout:
        return Layout(
            dags=self.repo.dags,
            connections_file=self.repo.connections_file,
            variables_file=self.repo.variables_file,
            airflow_home=self.state_dir / "airflow",
            pgdata=self.state_dir / "pgdata",
            pgbouncer_dir=self.state_dir / "pgbouncer",
        )

    def host_airflow_home(self) -> Path:
        return Path(self.layout().airflow_home)

    def services(self, state: StackState) -> list[Service]:
        return services(
            self.repo.team.bundle_name,
            state,
            self.layout(),
            pool=self.repo.team.pool,
            wait_for_migrations=False,
        )

    # -- up -------------------------------------------------------------------------------------
    def up(
        self, *, ui_port: int, parallelism: int, progress: Progress, supervise: bool = False
    ) -> StackState:
        """Start what is not running (everything, on a stopped stack); ``supervise``: leave the
        launcher running as the stack's supervisor, which restarts what dies (a detached stack)."""
        running = self._running_components()
        supervisor = self.table.get(LAUNCHER)
        if running or (supervisor is not None and supervisor.alive()):  # the supervisor may be backing off
            return self._heal(running, supervise, progress)
        self.table.forget()  # stale pid files of a stack that died: the restarts count from here
        state = self._prepare_state(ui_port, parallelism)
        try:
            self._start_missing(state, set(), supervise, progress)
        except BaseException:
            progress.failed("start-up failed; stopping what was started")
            self.down(purge=False)
            raise
        return state

    def _heal(self, running: set[str], supervise: bool, progress: Progress) -> StackState:
        """``up`` on a partly running stack: start only what is missing, as ``docker compose up -d``."""
        state = self._require_state()
        plan = self.services(state)
        missing = [s.name for s in plan if s.health is not Health.EXITS_ZERO and s.name not in running]
        supervisor = self.table.get(LAUNCHER)
        supervised = supervisor is not None and supervisor.alive()
        if not missing and (supervised or not supervise):
            raise UserError(
                f"the local stack of this repository is already running ({', '.join(sorted(running))})",
                where=str(self.repo.root),
                fix="see `ariel local status`, or stop it with `ariel local down`",
            )
        progress.info(
            f"partly running: starting {', '.join(missing) or 'its supervisor'} "
            f"(keeping port {state.ui_port} and parallelism {state.parallelism})"
        )
        if supervised:
            assert supervisor is not None
            os.kill(supervisor.pid, signal.SIGUSR1)  # it starts them now instead of after its back-off
            for name in missing:
                with progress.step(f"{name}: started again by the supervisor", f"{name} healthy"):
                    self._wait_restarted(next(s for s in plan if s.name == name), state)
            return state
        self._start_missing(state, running, supervise, progress)
        return state

    def _start_missing(
        self, state: StackState, running: set[str], supervise: bool, progress: Progress
    ) -> None:
        """Start the services not in ``running`` (and on a fresh start the one-shot job) through one
        launcher; it exits, or with ``supervise`` stays as the supervisor of every service.

        The launcher imports Airflow on one core while Postgres and PgBouncer start on the other.
        """
        binaries.airflow_path()  # the launcher is this environment's Python: it must hold Airflow
        programs = {
            "postgres": binaries.postgres_bin_dir() / "postgres",
            "pgbouncer": binaries.pgbouncer_path(),
        }
        user = binaries.unprivileged_user()
        if user:
            binaries.check_reachable(self.layout().pgdata, user)
        plan = {s.name: s for s in self.services(state)}
        self._write_files(list(plan.values()), user)
        launcher = Launcher.start(
            self.table,
            env={**os.environ, **airflow_env(self.repo.team.bundle_name, state, self.layout(), "launcher")},
            cwd=self.state_dir,
            secrets={
                "connections": str(self.repo.connections_file),
                "variables": str(self.repo.variables_file),
            },
        )
        try:
            if not running:
                self._init_database(programs["postgres"].parent, state, user, progress)
            commands = {
                name: self._command(launcher, "start", svc, programs, user)
                for name, svc in plan.items()
                if svc.health is not Health.EXITS_ZERO
            }
            jobs = [s for s in plan.values() if s.health is Health.EXITS_ZERO] if not running else []
            if "postgres" not in running:
                with progress.step("starting postgres", "postgres healthy"):
                    self._wait(plan["postgres"], launcher.start_service(commands["postgres"]), state)
                    _ensure_database(state)
            if "pgbouncer" not in running:
                with progress.step("starting pgbouncer", "pgbouncer healthy"):
                    self._wait(plan["pgbouncer"], launcher.start_service(commands["pgbouncer"]), state)
            with progress.step("checking the local secret files", "local secret files parse"):
                counts = launcher.checked()
            progress.info(f"{counts['connections']} connections, {counts['variables']} variables")
            # The job is forked once the launcher has imported Airflow's core, the components once
            # it succeeded, in the order of what they need imported (stage_needed): the api-server
            # first, which builds its app while the launcher imports what the others need.
            for job in jobs:
                launcher.run(self._command(launcher, "run", job, programs, user))
                doing, did = job.step or (f"running {job.name}", f"{job.name} done")
                with progress.step(doing, did):
                    if code := launcher.wait(job.name):
                        self._fail(job, f"exited with code {code}")
            components = (n for n, s in plan.items() if s.health in (Health.API, Health.HEARTBEAT))
            airflow = [n for n in components if n not in running]
            airflow.sort(key=lambda n: stage_needed(plan[n].argv))
            progress.info("starting " + ", ".join(airflow))
            started = {name: launcher.start_service(commands[name]) for name in airflow}
            for name, tracked in started.items():
                t0 = time.monotonic()
                self._wait(plan[name], tracked, state)
                progress.done(f"{name} healthy", time.monotonic() - t0)
            if supervise:
                launcher.supervise(list(commands.values()))
                progress.info("a supervisor restarts what dies (`ariel local status` counts the restarts)")
            else:
                launcher.close()
        except BaseException:
            launcher.close()
            raise

    def _command(
        self, launcher: Launcher, op: str, svc: Service, programs: dict[str, Path], user: str | None
    ) -> dict:
        """How the launcher starts (``op`` "start"; its supervisor restarts) or runs ("run") a service."""
        if airflow_commands.commands_of(svc.argv):  # a fork of the launcher, which has imported Airflow
            return launcher.command(op, svc.name, svc.argv, svc.env, fork=True)
        argv = [str(programs[svc.argv[0]]), *svc.argv[1:]]
        user = user if svc.needs_unprivileged_user else None
        return launcher.command(op, svc.name, argv, {**os.environ, **svc.env}, fork=False, user=user)

    def _wait_restarted(self, svc: Service, state: StackState) -> None:
        probe = self._probe(svc, state)
        deadline = time.monotonic() + self.timeout(svc.health)
        while not probe():
            if time.monotonic() > deadline:
                self._fail(svc, self.not_healthy_in_time(svc.health))
            time.sleep(PROBE_INTERVAL)

    def _running_components(self) -> set[str]:
        return {t.name for t in self.table.running() if t.name != LAUNCHER}

    def _write_files(self, plan: list[Service], user: str | None) -> None:
        for svc in plan:
            for name, content in svc.files.items():
                path = Path(name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
                path.chmod(0o600)
                if user and svc.needs_unprivileged_user:
                    shutil.chown(path.parent, user)
                    shutil.chown(path, user)

    def _init_database(self, bin_dir: Path, state: StackState, user: str | None, progress: Progress) -> None:
        pgdata = Path(self.layout().pgdata)
        if (pgdata / "PG_VERSION").exists():
            return
        with progress.step("creating the metadata database cluster (initdb)", "database cluster created"):
            pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
            pwfile = self.state_dir / "run" / "initdb.pw"
            pwfile.parent.mkdir(parents=True, exist_ok=True)
            pwfile.write_text(state.db_password + "\n")
            pwfile.chmod(0o600)
            if user:
                shutil.chown(pgdata, user)
                shutil.chown(pwfile, user)
            try:
                result = subprocess.run(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(pgdata),
                        "-U",
                        DB_USER,
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "--encoding=UTF8",
                        "--no-locale",
                        "--no-instructions",
                    ],
                    cwd=self.state_dir,
                    capture_output=True,
                    text=True,
                    **as_user(user),
                )
            finally:
                pwfile.unlink(missing_ok=True)
            if result.returncode != 0:
                shutil.rmtree(pgdata, ignore_errors=True)
                raise UserError(f"initdb failed:\n{result.stdout}{result.stderr}", where=str(pgdata))

    def _wait(self, svc: Service, tracked: Tracked, state: StackState) -> None:
        probe = self._probe(svc, state)
        deadline = time.monotonic() + self.timeout(svc.health)
        while not probe():
            if not tracked.alive():
                self._fail(svc, "exited during start-up")
            if time.monotonic() > deadline:
                self._fail(svc, self.not_healthy_in_time(svc.health))
            time.sleep(PROBE_INTERVAL)

    def _fail(self, svc: Service, why: str) -> None:
        log = self.table.log_file(svc.name)
        raise UserError(
            f"{svc.name} {why}. Last lines of {log}:\n{tail(log, 25)}",
            fix=f"read the whole log with `ariel local logs {svc.name}`",
        )

    def _probe(self, svc: Service, state: StackState) -> Callable[[], bool]:
        """A cheap, quiet health check for one service."""
        if svc.health is Health.POSTGRES:
            return lambda: sql_ok(state.postgres_port, "postgres", state)
        if svc.health is Health.PGBOUNCER:
            return lambda: sql_ok(state.pgbouncer_port, DB_NAME, state)
        if svc.health is Health.API:
            return lambda: self.health_report(state) is not None
        if svc.health is Health.HEARTBEAT:
            return lambda: component_status(self.health_report(state), svc.heartbeat_key) == "healthy"
        return lambda: False

    # -- watch, down, status, logs --------------------------------------------------------------
    def watch(self, state: StackState, poll: float = 2.0) -> str:
        """Block while every long-running service lives; return the name of the first one to die."""
        names = [s.name for s in self.services(state) if s.health is not Health.EXITS_ZERO]
        while True:
            for name in names:
                tracked = self.table.get(name)
                if tracked is None or not tracked.alive():
                    return name
            time.sleep(poll)

    def down(self, *, purge: bool, progress: Progress | None = None) -> list[str]:
        """Stop every service, Airflow first, Postgres last; ``purge`` also deletes database and state.

        The supervisor goes first, so that nothing is started again; then each service's whole
        session; then any process left that carries the stack's mark. The pid files suffice: an
        unreadable stack.json does not stop it.
        """
        plan = self.services(self.readable_state() or StackState())
        known = {s.name for s in plan}
        waves = [
            {LAUNCHER: signal.SIGTERM},
            {s.name: s.stop_signal for s in plan if not s.needs_unprivileged_user},
            {s.name: s.stop_signal for s in plan if s.name == "pgbouncer"},
            {s.name: s.stop_signal for s in plan if s.name == "postgres"},
            {p.stem: signal.SIGTERM for p in self.table.run_dir.glob("*.pid") if p.stem not in known},
        ]
        stopped = []
        grace = {s.name: s.stop_grace for s in plan}
        for wave in waves:
            t0 = time.monotonic()
            if names := [n for n in self.table.stop(wave, grace=grace) if n != LAUNCHER]:
                stopped += names
                if progress:
                    progress.done(f"stopped {', '.join(names)}", time.monotonic() - t0)
        t0 = time.monotonic()
        if (strays := self.table.sweep()) and progress:
            progress.done(f"stopped {strays} leftover processes of the stack", time.monotonic() - t0)
        if purge and self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        else:
            self._note_stopped(stopped)
        return stopped

    def database(self) -> str | None:
        pgdata = Path(self.layout().pgdata)
        return str(pgdata) if (pgdata / "PG_VERSION").exists() else None

    def running_status(self, state: StackState) -> dict[str, Any]:
        report = self.health_report(state)
        supervisor = self.table.get(LAUNCHER)
        supervised = supervisor is not None and supervisor.alive()
        rows = []
        for svc in self.services(state):
            if svc.health is Health.EXITS_ZERO:
                continue
            tracked = self.table.get(svc.name)
            running = tracked is not None and tracked.alive()
            if svc.health is Health.HEARTBEAT:  # one health report serves every component
                healthy = running and component_status(report, svc.heartbeat_key) == "healthy"
            elif svc.health is Health.API:
                healthy = running and report is not None
            else:
                healthy = running and self._probe(svc, state)()
            stopped = "restarting" if supervised else "stopped"  # the supervisor starts it again
            rows.append(
                {
                    "service": svc.name,
                    "running": running,
                    "pid": tracked.pid if running and tracked else None,
                    "port": svc.port,
                    "health": "healthy" if healthy else ("unhealthy" if running else stopped),
                    "restarts": tracked.restarts if tracked else 0,
                    "last_exit": tracked.last_exit if tracked else None,
                }
            )
        return {**self._report(rows, state, report), "supervised": supervised}

    def running_services(self) -> list[str]:
        return [t.name for t in self.table.running()]  # the supervisor too: `down` must stop it

    def log_files(self) -> dict[str, Path]:
        return {path.stem: path for path in sorted(self.table.log_dir.glob("*.log"))}

    def logs(self, service: str | None, lines: int, follow: bool, write: Callable[[str], None]) -> None:
        files = self.log_files()
        if service is not None:
            if service not in files:
                raise UserError(
                    f"no log for service {service!r}", fix=f"pick one of: {', '.join(files) or '(none yet)'}"
                )
            files = {service: files[service]}
        log_files.show(files, lines, write)
        if follow:
            log_files.follow(files, write)


def _ensure_database(state: StackState) -> None:
    with connect_db(state.postgres_port, "postgres", state, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
