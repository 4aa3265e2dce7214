"""Start the Airflow components as forks of one process that has imported Airflow once.

Each Airflow process otherwise spends seconds of CPU importing Airflow and keeps its own copy of
those modules. Forked from one warmed-up parent, the components start sooner and share those
pages copy-on-write (the same trick as gunicorn's preload; Airflow forks its own workers this way).

The parent (``Launcher``) talks to the child process (``serve``) in JSON lines over pipes:
the child reports ``ready`` (after checking the local secret files), then obeys ``run`` (fork,
wait, report the exit code), ``start`` (fork, report the pid) and ``exit``.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import traceback
from pathlib import Path
from typing import IO, Any

from ariel_airflow.errors import UserError
from ariel_airflow.localdev.processes import ProcessTable, Tracked, tail

NAME = "launcher"
# Modules every component needs; importing them before forking is what makes the forks cheap.
PRELOAD = (
    "airflow.models",
    "airflow.cli.cli_parser",
    "airflow.jobs.scheduler_job_runner",
    "airflow.jobs.triggerer_job_runner",
    "airflow.dag_processing.manager",
    "ariel_airflow.localdev.executor",
    "airflow.api_fastapi.app",
    "airflow.api_fastapi.core_api.routes.public",
    "airflow.api_fastapi.core_api.routes.ui",
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager",
    "uvicorn",
    "airflow.sdk",
    "airflow.providers.standard.operators.python",
    "airflow.providers.standard.sensors.python",
    # Team DAGs build pod overrides with profile(): the Kubernetes models are big and used everywhere.
    "airflow.providers.cncf.kubernetes.pod_generator",
    "ariel_airflow.profiles",
)


class Launcher:
    """The parent's handle on a running launcher process."""

    def __init__(self, table: ProcessTable, tracked: Tracked) -> None:
        self.table = table
        self.tracked = tracked
        assert tracked.popen is not None
        self._popen = tracked.popen

    @classmethod
    def start(cls, table: ProcessTable, env: dict[str, str], cwd: Path, secrets: dict[str, str]) -> Launcher:
        argv = [sys.executable, "-m", "ariel_airflow.localdev.launcher", json.dumps(secrets)]
        return cls(table, table.start(NAME, argv, env=env, cwd=cwd, pipes=True))

    def wait_ready(self) -> dict[str, int]:
        """Counts of the local secret files' entries; UserError when they are missing or malformed."""
        reply = self._receive()
        if reply["event"] == "error":
            raise UserError(reply["message"], where=reply.get("where"), fix=reply.get("fix"))
        return reply["secrets"]

    def run(self, name: str, argv: list[str], env: dict[str, str]) -> int:
        """Run a one-shot command (``airflow db migrate``) in a fork; its exit code."""
        self._send(
            {"op": "run", "name": name, "argv": argv, "env": env, "log": str(self.table.log_file(name))}
        )
        return self._receive()["code"]

    def start_service(self, name: str, argv: list[str], env: dict[str, str]) -> Tracked:
        self._send(
            {"op": "start", "name": name, "argv": argv, "env": env, "log": str(self.table.log_file(name))}
        )
        return self.table.adopt(name, self._receive()["pid"])

    def close(self) -> None:
        """Let the launcher exit; the components it started live on (tracked by their pid files)."""
        if self._popen.poll() is None:
            self._send({"op": "exit"})
            self._popen.wait(30)
        self.table.pid_file(NAME).unlink(missing_ok=True)

    def _send(self, message: dict[str, Any]) -> None:
        assert self._popen.stdin is not None
        try:
            self._popen.stdin.write(json.dumps(message) + "\n")
            self._popen.stdin.flush()
        except BrokenPipeError:
            self._died()

    def _receive(self) -> dict[str, Any]:
        assert self._popen.stdout is not None
        line = self._popen.stdout.readline()
        if not line:
            self._died()
        return json.loads(line)

    def _died(self) -> None:
        self._popen.wait(10)
        log = self.table.log_file(NAME)
        raise UserError(
            f"the Airflow launcher exited ({self._popen.returncode}). Last lines of {log}:\n{tail(log, 25)}",
            fix=f"read the whole log: `ariel local logs {NAME}`",
        )


# -- the launcher process ------------------------------------------------------------------------
def serve(secrets: dict[str, str]) -> None:
    # Keep the real stdout for our replies; anything Airflow prints goes to the log (stderr).
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    from ariel_airflow.localdev.local_secrets import check_local_secrets

    try:
        counts = check_local_secrets(Path(secrets["connections"]), Path(secrets["variables"]))
    except UserError as exc:
        _reply(replies, {"event": "error", "message": exc.message, "where": exc.where, "fix": exc.fix})
        return
    import importlib

    # Python's advice for fork without exec: no collections in the parent while loading, and the
    # loaded objects frozen so the children's collections do not write to (and so copy) their pages.
    gc.disable()
    for module in PRELOAD:
        importlib.import_module(module)
    gc.freeze()
    _reply(replies, {"event": "ready", "secrets": counts})
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "exit":
            return
        pid = _fork(command)
        if command["op"] == "run":
            _, status = os.waitpid(pid, 0)
            _reply(replies, {"event": "exited", "code": os.waitstatus_to_exitcode(status)})
        else:
            _reply(replies, {"event": "started", "pid": pid})


def _reply(stream: IO[str], message: dict[str, Any]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def _fork(command: dict[str, Any]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        gc.enable()
        os.setsid()  # its own process group, like a process started on its own
        log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.write(log, f"\n--- starting {command['name']} (forked by the launcher)\n".encode())
        code = _run_airflow(command["argv"], command["env"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run_airflow(argv: list[str], env: dict[str, str]) -> int:
    from airflow import settings
    from airflow.__main__ import main

    previous_url = settings.SQL_ALCHEMY_CONN
    os.environ.clear()
    os.environ.update(env)  # Airflow's config reads environment variables on every lookup
    settings.configure_vars()
    if previous_url != settings.SQL_ALCHEMY_CONN:  # the connection pool was built at import
        settings.reconfigure_orm()
    sys.argv = ["airflow", *argv[1:]]  # argv[0] is the program name of the topology: "airflow"
    main()
    return 0


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
