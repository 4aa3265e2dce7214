"""Start the Airflow components as forks of one process that has imported Airflow once.

Each Airflow process otherwise spends seconds of CPU importing Airflow and keeps its own copy of
those modules. Forked from one warmed-up parent, the components start sooner and share those
pages copy-on-write (the same trick as gunicorn's preload; Airflow forks its own workers this way).

The parent (``Launcher``) talks to the child process (``serve``) in JSON lines over pipes. The
child obeys ``start`` (a long-running service) and ``run`` (a one-shot job, whose exit code ``wait``
reports), each either forked (an Airflow command) or executed (a program such as Postgres);
``checked`` (report the local secret files' entries, or why they are invalid), and ``exit`` or
``supervise``.

Checking the secret files and importing Airflow's core take one core for seconds, so they run in a
thread from the start while the launcher executes Postgres and PgBouncer. The rest is imported in
stages (``PRELOAD``); a fork waits for the stage its command needs (``stage_needed``), and after a
fork the thread imports the next stage: the migration job forks after the core, the api-server
(once the job succeeded) after the Kubernetes models and the API, the other components after the
last stage. No thread but the main one is left when the launcher forks (a fork would copy the
locks of a thread that imports).

``supervise`` (a detached stack) keeps the launcher as the stack's supervisor, as the kubelet is for
the platform's pods: a component that exits has the rest of its session killed (its pod's other
processes) and is started again after a back-off that doubles from ``BACKOFF_FIRST`` up to
``BACKOFF_MAX`` seconds and starts over once it ran ``BACKOFF_RESET`` seconds. Its pid file records
the restarts and the last exit (code or signal) for `ariel local status`. SIGUSR1 skips the wait
(`ariel local up` on a partly running stack); SIGTERM ends the supervisor only (`ariel local down`
stops it first, then the components).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any

import psutil

from ariel_airflow.errors import UserError
from ariel_airflow.localdev import airflow_commands
from ariel_airflow.localdev.processes import ProcessTable, Tracked, as_user, exit_reason, tail

NAME = "launcher"
# The supervisor's back-off, in seconds (the kubelet's is 10 s doubling to 5 min, reset after 10 min
# running; a laptop's stack should come back sooner).
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
BACKOFF_RESET = 120.0
# Modules to import before forking, in stages; each fork waits only for the stage its command needs
# (STAGE_OF_COMMAND). Imported before the fork, a module's pages are shared by the forks.
PRELOAD = (
    # 0. Airflow's core, its CLI, Alembic and the kit's listener plugin: every component loads them
    # when it starts (Alembic's runtime alone is 7 MiB). The migration job forks here.
    (
        "airflow.models",
        "airflow.__main__",
        "airflow.cli.cli_parser",
        "airflow.cli.commands.daemon_utils",
        "airflow.cli.commands.db_command",
        "airflow.cli.commands.pool_command",
        "airflow.migrations.db_types",
        "airflow.migrations.utils",
        "airflow.utils.memray_utils",
        "alembic.autogenerate",
        "alembic.command",
        "alembic.config",
        "alembic.operations",
        "alembic.runtime.environment",
        "alembic.runtime.migration",
        "alembic.script",
        "ariel_airflow.localdev.usage_listener",
    ),
    # 1. The Kubernetes models and the API: team DAGs build pod overrides with profile(), and every
    # component that parses or deserializes them needs the models (imported after its fork, they
    # would cost the api-server 67 MiB of its own); the dag-processor runs the execution API in
    # process. The api-server forks here, and builds its app while the launcher goes on.
    (
        "kubernetes.client",
        *airflow_commands.API,
    ),
    # 2. The job runners, and what the DAG parsers and tasks import: the scheduler, the
    # dag-processor and the triggerer fork here.
    (
        "airflow.jobs.scheduler_job_runner",
        "airflow.jobs.triggerer_job_runner",
        "airflow.dag_processing.manager",
        "ariel_airflow.localdev.executor",
        "airflow.sdk",
        "airflow.providers.standard.operators.python",
        "airflow.providers.standard.sensors.python",
        *airflow_commands.KUBERNETES,
    ),
)
LAST_STAGE = len(PRELOAD) - 1
# The stage an Airflow command needs, by its first word (the last stage when not named here).
STAGE_OF_COMMAND = {"db": 0, "pools": 0, "api-server": 1}


def stage_needed(argv: list[str]) -> int:
    """The preload stage a forked command line needs: the most any of its Airflow commands needs."""
    commands = airflow_commands.commands_of(argv) or []
    return max((STAGE_OF_COMMAND.get(command[0], LAST_STAGE) for command in commands), default=LAST_STAGE)


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

    def checked(self) -> dict[str, int]:
        """Counts of the local secret files' entries; UserError when they are missing or malformed."""
        self._send({"op": "checked"})
        reply = self._receive()
        if reply["event"] == "error":
            raise UserError(reply["message"], where=reply.get("where"), fix=reply.get("fix"))
        return reply["secrets"]

    def run(self, command: dict[str, Any]) -> None:
        """Start a one-shot job (``command("run", ...)``); ``wait`` tells how it ended."""
        self._send(command)
        self._receive()

    def wait(self, name: str) -> int:
        """The exit code of the one-shot job ``name``, once it ended."""
        self._send({"op": "wait", "name": name})
        return self._receive()["code"]

    def command(
        self, op: str, name: str, argv: list[str], env: dict[str, str], *, fork: bool, user: str | None = None
    ) -> dict[str, Any]:
        """``start`` (a long-running service) or ``run`` (a one-shot job): ``fork`` for an Airflow
        command (``argv`` is its command line), else a program, executed as ``user``."""
        return {
            "op": op,
            "fork": fork,
            "name": name,
            "argv": argv,
            "env": {**env, **self.table.mark},
            "log": str(self.table.log_file(name)),
            "user": user,
        }

    def start_service(self, command: dict[str, Any]) -> Tracked:
        """Start a long-running service; tracked by its pid file (its restarts carried over)."""
        self._send(command)
        pid = self._receive()["pid"]
        before = self.table.get(command["name"])
        counts = {"restarts": before.restarts, "last_exit": before.last_exit} if before else {}
        return self.table.adopt(command["name"], pid, **counts)

    def supervise(self, commands: list[dict[str, Any]]) -> None:
        """Leave the launcher running as the supervisor of these services (and return)."""
        self._send({"op": "supervise", "commands": commands, "run_dir": str(self.table.run_dir)})
        self._receive()

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
    preload = Preload(Path(secrets["connections"]), Path(secrets["variables"]))
    children: dict[str, Child] = {}  # the long-running services
    jobs: dict[str, Child] = {}  # the one-shot jobs, until waited for
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "exit":
            return
        if command["op"] == "checked":
            _reply(replies, preload.checked())
            continue
        if command["op"] == "supervise":
            preload.ready_to_fork()  # the supervisor forks the Airflow components it restarts
            _reply(replies, {"event": "supervising"})
            replies.close()
            Supervisor(ProcessTable(Path(command["run_dir"]), Path()), children, command["commands"]).run()
            return
        if command["op"] == "wait":
            _reply(replies, {"event": "exited", "code": jobs.pop(command["name"]).wait()})
            continue
        if command["fork"]:
            preload.ready_to_fork(stage_needed(command["argv"]))
        child = Child.start(command)
        if command["fork"]:
            preload.prefetch()
        (jobs if command["op"] == "run" else children)[command["name"]] = child
        _reply(replies, {"event": "started", "pid": child.pid})


class Preload:
    """Checks the local secret files, then imports ``PRELOAD`` stage by stage, in a thread.

    The thread runs while the launcher starts Postgres and PgBouncer, and imports the first stage
    only: the migration job forks there, and a later stage would delay it by seconds. ``checked``
    waits for the check; ``ready_to_fork(stage)`` returns once ``stage`` is imported and the thread
    has ended, so the caller may fork; ``prefetch``, after a fork, imports the next stage in the
    thread (while the launcher waits for the job, say), and only that: the next fork may need no more.
    """

    def __init__(self, connections: Path, variables: Path) -> None:
        # Python's advice for fork without exec: no collections in the parent while loading, and the
        # loaded objects frozen so the children's collections do not write to (and so copy) their pages.
        gc.disable()
        self._check_done = threading.Event()
        self._check: dict[str, Any] = {}
        self._error: BaseException | None = None
        self._loaded = -1  # the last stage imported
        self._thread: threading.Thread | None = None
        self._start(self._check_then_load, connections, variables)

    def checked(self) -> dict[str, Any]:
        """The reply to ``checked``: the counts of the secret files' entries, or the error."""
        self._check_done.wait()
        return self._check

    def ready_to_fork(self, stage: int = LAST_STAGE) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is None and self._check.get("event") == "ready" and self._loaded < stage:
            self._load(stage)  # nothing else to do meanwhile: in this thread
        if self._error is not None:
            raise self._error
        if self._check.get("event") != "ready":
            raise SystemExit(f"the local secret files are not valid: {self._check.get('message')}")
        gc.freeze()

    def prefetch(self) -> None:
        if self._thread is None and self._error is None and self._loaded < LAST_STAGE:
            self._start(self._load, self._loaded + 1)

    def _start(self, target: Any, *args: Any) -> None:
        # A daemon: `exit` while it imports must not wait for it.
        self._thread = threading.Thread(target=target, args=args, name="preload", daemon=True)
        self._thread.start()

    def _check_then_load(self, connections: Path, variables: Path) -> None:
        from ariel_airflow.localdev.local_secrets import check_local_secrets

        try:
            self._check = {"event": "ready", "secrets": check_local_secrets(connections, variables)}
        except UserError as exc:
            self._check = {"event": "error", "message": exc.message, "where": exc.where, "fix": exc.fix}
            return
        except BaseException as exc:
            self._error = exc
            return
        finally:
            self._check_done.set()
        self._load(0)

    def _load(self, last: int) -> None:
        import importlib

        try:
            while self._loaded < last:
                stage, t0 = self._loaded + 1, time.monotonic()
                for module in PRELOAD[stage]:
                    importlib.import_module(module)
                self._loaded = stage
                took = f"{time.monotonic() - t0:.1f}s"
                print(f"--- {_stamp()} preload stage {stage} imported in {took}", file=sys.stderr, flush=True)
        except BaseException as exc:  # raised by ready_to_fork()
            self._error = exc


class Child:
    """A process the launcher started: an Airflow fork or a program's process."""

    def __init__(self, pid: int, popen: subprocess.Popen | None = None) -> None:
        self.pid = pid
        self.popen = popen
        self.since = time.monotonic()
        self.code: int | None = None

    @classmethod
    def start(cls, command: dict[str, Any]) -> Child:
        if command["fork"]:
            return cls(_fork(command))
        with open(command["log"], "ab") as log:
            log.write(f"\n--- {_stamp()} starting {command['name']}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                command["argv"],
                env=command["env"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **as_user(command["user"]),
            )
        return cls(popen.pid, popen)

    def poll(self) -> int | None:
        """The exit code once it exited (negative: the signal that ended it), else None."""
        if self.code is None:
            if self.popen is not None:
                self.code = self.popen.poll()
            elif (reaped := os.waitpid(self.pid, os.WNOHANG))[0]:
                self.code = os.waitstatus_to_exitcode(reaped[1])
        return self.code

    def wait(self) -> int:
        while (code := self.poll()) is None:
            time.sleep(0.05)
        return code


class Supervisor:
    """Restarts the stack's services when they exit, with back-off (see the module's docstring)."""

    def __init__(self, table: ProcessTable, children: dict[str, Child], commands: list[dict]) -> None:
        self.table = table
        self.children = children
        self.commands = {c["name"]: c for c in commands}
        self.backoff = dict.fromkeys(self.commands, BACKOFF_FIRST)
        self.due: dict[str, float] = {}  # services waiting to be started again: when
        self.hurry = False

    def run(self) -> None:
        signal.signal(signal.SIGUSR1, lambda *_: setattr(self, "hurry", True))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            for name in self.commands:
                if name in self.due:
                    if self.hurry or time.monotonic() >= self.due[name]:
                        self._restart(name)
                elif (reason := self._exited(name)) is not None:
                    self._died(name, reason)
            self.hurry = False
            time.sleep(0.5)

    def _exited(self, name: str) -> str | None:
        """Why the service exited, or None while it runs."""
        child = self.children.get(name)
        if child is not None:
            code = child.poll()
            return None if code is None else exit_reason(code)
        tracked = self.table.get(name)  # started before this supervisor: not our child
        if tracked is not None and tracked.alive():
            return None
        return "exited (code unknown: started before the supervisor)"

    def _died(self, name: str, reason: str) -> None:
        child = self.children.pop(name, None)
        tracked = self.table.get(name)
        if tracked is not None:  # the rest of its session goes with it, as a pod's processes would
            _kill_session(tracked.pid, self.table)
        if child is not None and time.monotonic() - child.since >= BACKOFF_RESET:
            self.backoff[name] = BACKOFF_FIRST
        delay = self.backoff[name]
        self.backoff[name] = min(delay * 2, BACKOFF_MAX)
        self.due[name] = time.monotonic() + delay
        restarts = tracked.restarts if tracked else 0
        self.table.record(Tracked(name, tracked.pid if tracked else 0, 0.0, restarts, reason))
        print(f"supervisor: {name} {reason}; starting it again in {delay:.0f}s", file=sys.stderr, flush=True)

    def _restart(self, name: str) -> None:
        del self.due[name]
        before = self.table.get(name)
        child = self.children[name] = Child.start(self.commands[name])
        restarts = (before.restarts if before else 0) + 1
        self.table.adopt(name, child.pid, restarts=restarts, last_exit=before.last_exit if before else None)


def _kill_session(sid: int, table: ProcessTable) -> None:
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and table.marked(proc):
                proc.kill()
        except (psutil.Error, OSError):
            continue


def _stamp() -> str:
    """The time, to the millisecond, for the lines the launcher adds to the logs."""
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


def _reply(stream: IO[str], message: dict[str, Any]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


def _fork(command: dict[str, Any]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # the supervisor's handlers are not the component's
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        gc.enable()
        os.setsid()  # its own process group, like a process started on its own
        log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.write(log, f"\n--- {_stamp()} starting {command['name']} (forked by the launcher)\n".encode())
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

    previous_url = settings.SQL_ALCHEMY_CONN
    os.environ.clear()
    os.environ.update(env)  # Airflow's config reads environment variables on every lookup
    settings.configure_vars()
    if previous_url != settings.SQL_ALCHEMY_CONN:  # the connection pool was built at import
        settings.reconfigure_orm()
    return airflow_commands.run(airflow_commands.commands_of(argv) or [])


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
