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
from ariel_airflow.localdev import binaries
from ariel_airflow.localdev import logs as log_files
from ariel_airflow.localdev.launcher import Launcher
from ariel_airflow.localdev.options import Engine
from ariel_airflow.localdev.processes import ProcessTable, Tracked, as_user, tail
from ariel_airflow.localdev.progress import Progress
from ariel_airflow.localdev.stack import TIMEOUTS, StackEngine, component_status, connect_db, sql_ok
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

    def services(self, state: StackState) -> list[Service]:
        return services(self.repo.team.bundle_name, state, self.layout(), pool=self.repo.team.pool)

    # -- up -------------------------------------------------------------------------------------
    def up(self, *, ui_port: int, parallelism: int, progress: Progress) -> StackState:
        if running := self.table.running():
            raise UserError(
                "the local stack of this repository is already running "
                f"({', '.join(t.name for t in running)})",
                where=str(self.repo.root),
                fix="see `ariel local status`, or stop it with `ariel local down`",
            )
        state = self._prepare_state(ui_port, parallelism)
        programs = {
            "postgres": binaries.postgres_bin_dir() / "postgres",
            "pgbouncer": binaries.pgbouncer_path(),
            "airflow": binaries.airflow_path(),
        }
        user = binaries.unprivileged_user()
        if user:
            binaries.check_reachable(self.layout().pgdata, user)
        plan = {s.name: s for s in self.services(state)}
        try:
            self._write_files(list(plan.values()), user)
            launcher = Launcher.start(
                self.table,
                env={
                    **os.environ,
                    **airflow_env(self.repo.team.bundle_name, state, self.layout(), "launcher"),
                },
                cwd=self.state_dir,
                secrets={
                    "connections": str(self.repo.connections_file),
                    "variables": str(self.repo.variables_file),
                },
            )
            try:
                # The database starts while the launcher imports Airflow (seconds of CPU).
                self._init_database(programs["postgres"].parent, state, user, progress)
                self._start_database(plan, programs, user, state, progress)
                with progress.step(
                    "loading Airflow, checking the local secret files", "local secret files parse"
                ):
                    counts = launcher.wait_ready()
                progress.info(f"{counts['connections']} connections, {counts['variables']} variables")
                started = self._start_airflow(launcher, plan, progress)
            finally:
                launcher.close()
            for name, tracked in started.items():
                t0 = time.monotonic()
                self._wait(plan[name], tracked, state)
                progress.done(f"{name} healthy", time.monotonic() - t0)
        except BaseException:
            progress.failed("start-up failed; stopping what was started")
            self.down(purge=False)
            raise
        return state

    def _start_database(
        self,
        plan: dict[str, Service],
        programs: dict[str, Path],
        user: str | None,
        state: StackState,
        progress: Progress,
    ) -> None:
        for name in ("postgres", "pgbouncer"):
            with progress.step(f"starting {name}", f"{name} healthy"):
                self._wait(plan[name], self._start(plan[name], programs, user), state)
                if name == "postgres":
                    _ensure_database(state)

    def _start_airflow(
        self, launcher: Launcher, plan: dict[str, Service], progress: Progress
    ) -> dict[str, Tracked]:
        """Run the one-shot jobs (migrate, pools) in order, forking each long-running component as
        soon as what it requires is done (the api-server starts while the pool is created, as Compose
        does); they are waited on by the caller."""
        done = {name for name, s in plan.items() if s.health in (Health.POSTGRES, Health.PGBOUNCER)}
        waiting = [s for s in plan.values() if s.health in (Health.API, Health.HEARTBEAT)]
        started: dict[str, Tracked] = {}

        def start_ready() -> None:
            if ready := [s for s in waiting if set(s.requires) <= done and s.name not in started]:
                progress.info("starting " + ", ".join(s.name for s in ready))
                started.update({s.name: launcher.start_service(s.name, s.argv, s.env) for s in ready})

        for job in (s for s in plan.values() if s.health is Health.EXITS_ZERO):
            start_ready()
            doing, did = job.step or (f"running {job.name}", f"{job.name} done")
            with progress.step(doing, did):
                if code := launcher.run(job.name, job.argv, job.env):
                    self._fail(job, f"exited with code {code}")
            done.add(job.name)
        start_ready()
        return started

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

    def _start(self, svc: Service, programs: dict[str, Path], user: str | None) -> Tracked:
        argv = [str(programs[svc.argv[0]]), *svc.argv[1:]]
        env = {**os.environ, **svc.env}
        return self.table.start(
            svc.name,
            argv,
            env=env,
            cwd=self.state_dir,
            user=user if svc.needs_unprivileged_user else None,
        )

    def _wait(self, svc: Service, tracked: Tracked, state: StackState) -> None:
        probe = self._probe(svc, state)
        deadline = time.monotonic() + TIMEOUTS[svc.health]
        while not probe():
            if not tracked.alive():
                self._fail(svc, "exited during start-up")
            if time.monotonic() > deadline:
                self._fail(svc, f"not healthy after {TIMEOUTS[svc.health]}s")
            time.sleep(0.5)

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
        """Stop every service, Airflow first, Postgres last; ``purge`` also deletes database and state."""
        state = self.state()
        plan = self.services(state) if state else []
        known = {s.name for s in plan}
        waves = [
            {s.name: s.stop_signal for s in plan if not s.needs_unprivileged_user},
            {s.name: s.stop_signal for s in plan if s.name == "pgbouncer"},
            {s.name: s.stop_signal for s in plan if s.name == "postgres"},
            {t.name: signal.SIGTERM for t in self.table.running() if t.name not in known},
        ]
        stopped = []
        for wave in waves:
            t0 = time.monotonic()
            if names := self.table.stop(wave):
                stopped += names
                if progress:
                    progress.done(f"stopped {', '.join(names)}", time.monotonic() - t0)
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
            rows.append(
                {
                    "service": svc.name,
                    "running": running,
                    "pid": tracked.pid if running and tracked else None,
                    "port": svc.port,
                    "health": "healthy" if healthy else ("unhealthy" if running else "stopped"),
                }
            )
        return self._report(rows, state, report)

    def running_services(self) -> list[str]:
        return [t.name for t in self.table.running()]

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
