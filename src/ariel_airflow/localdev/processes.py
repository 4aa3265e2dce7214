"""Background processes tracked by pid files, stopped by pid (never by name).

A pid file holds the pid and the process start time, so a recycled pid is never mistaken
for one of ours, and (written by the supervisor) how often the service was restarted and why it
last exited.

Every service starts in its own session, and every process of a stack carries ``STACK_ENV`` in
its environment: `down` stops each session as a whole and then sweeps up any process that still
carries the mark (a worker whose parent was killed), so nothing of the stack outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

# In the environment of every process of a native stack: the stack's run directory.
STACK_ENV = "ARIEL_LOCAL_STACK"
# Seconds a process that lost its session leader gets to exit after SIGTERM (nobody shuts it down
# in order any more; LocalExecutor workers ignore SIGTERM), before SIGKILL.
ORPHAN_GRACE = 5.0


@dataclass(frozen=True)
class Tracked:
    name: str
    pid: int
    started: float
    restarts: int = 0  # by the supervisor, since `up`
    last_exit: str | None = None  # why it last exited ("signal SIGKILL", "exit code 1")
    popen: subprocess.Popen | None = field(default=None, compare=False)  # only in the starter

    def process(self) -> psutil.Process | None:
        """The live process, or None when it has exited (or the pid was reused)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.started) > 1.0 or not _running(proc):
                return None
            return proc
        except psutil.NoSuchProcess:
            return None

    def alive(self) -> bool:
        return self.process() is not None


class ProcessTable:
    """The pid files of one stack, in ``run_dir``."""

    def __init__(self, run_dir: Path, log_dir: Path) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.mark = {STACK_ENV: str(run_dir)}  # goes into the environment of every process started

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        user: str | None = None,
        pipes: bool = False,
    ) -> Tracked:
        """Start ``argv`` in its own session, output appended to the service's log file.

        With ``pipes``, stdin and stdout are text pipes to the caller (stderr still goes to the log).
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(name), "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                argv,
                env={**env, **self.mark},
                cwd=cwd,
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else log,
                stderr=log if pipes else subprocess.STDOUT,
                text=pipes,
                start_new_session=True,  # own process group: Ctrl-C goes to us, we stop it by pid
                **as_user(user),
            )
        started = psutil.Process(popen.pid).create_time()
        return self.record(Tracked(name, popen.pid, started, popen=popen))

    def adopt(self, name: str, pid: int, *, restarts: int = 0, last_exit: str | None = None) -> Tracked:
        """Track a process someone else started (the launcher's fork or child)."""
        try:
            started = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            started = 0.0  # already gone: never alive(), so the caller's health wait reports it
        return self.record(Tracked(name, pid, started, restarts, last_exit))

    def record(self, tracked: Tracked) -> Tracked:
        data = {"pid": tracked.pid, "started": tracked.started, "restarts": tracked.restarts}
        tmp = self.pid_file(tracked.name).with_suffix(".tmp")  # readers never see half a file
        tmp.write_text(json.dumps({**data, "last_exit": tracked.last_exit}))
        tmp.replace(self.pid_file(tracked.name))
        return tracked

    def get(self, name: str) -> Tracked | None:
        try:
            data = json.loads(self.pid_file(name).read_text())
            return Tracked(
                name,
                int(data["pid"]),
                float(data["started"]),
                int(data.get("restarts", 0)),
                data.get("last_exit"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def forget(self) -> None:
        """Remove the pid files (of processes that are gone: a new `up` starts counting afresh)."""
        for pid_file in self.run_dir.glob("*.pid"):
            pid_file.unlink(missing_ok=True)

    def running(self) -> list[Tracked]:
        if not self.run_dir.exists():
            return []
        found = (self.get(p.stem) for p in sorted(self.run_dir.glob("*.pid")))
        return [t for t in found if t is not None and t.alive()]

    def stop(
        self, signals: dict[str, int], *, timeout: float = 30.0, grace: dict[str, float] | None = None
    ) -> list[str]:
        """Stop each named service's whole session, escalating to SIGKILL; the names that were running.

        A live leader gets its stop signal (Airflow components shut their own children down in
        order, much faster than every child handling the signal at once) and its ``grace`` seconds
        (``timeout`` when it has none). A session whose leader is gone (killed, its workers left
        behind) gets SIGTERM and ``ORPHAN_GRACE`` seconds. Then whatever is left is killed.
        """
        grace = grace or {}
        stopped, orphans = [], []
        led: dict[float, list[psutil.Process]] = {}  # by seconds until SIGKILL
        for name, sig in signals.items():
            tracked = self.get(name)
            if tracked is None:
                continue
            members = self.session(tracked)
            if members:
                stopped.append(name)
            if tracked.process() is not None:
                led.setdefault(grace.get(name, timeout), []).extend(members)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(tracked.pid, sig)
            else:
                orphans += members
                _signal(members, signal.SIGTERM)
        t0 = time.monotonic()
        for limit, procs in sorted([(ORPHAN_GRACE, orphans), *led.items()], key=lambda group: group[0]):
            if leftovers := _wait_gone(procs, max(0.0, limit - (time.monotonic() - t0))):
                _signal(leftovers, signal.SIGKILL)
                _wait_gone(leftovers, 5)
        for name in signals:
            self.pid_file(name).unlink(missing_ok=True)
        return stopped

    def session(self, tracked: Tracked) -> list[psutil.Process]:
        """Every live process of the service's session (its leader included, while it lives).

        Each service is started as a session leader, so its session id is its pid; once the leader
        is gone the id could be a stranger's, so only processes that carry the stack's mark count.
        """
        leader = tracked.process()
        found = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getsid(proc.pid) != tracked.pid or not _running(proc):
                    continue
                if leader is not None or self.marked(proc):
                    found.append(proc)
        return found

    def marked(self, proc: psutil.Process) -> bool:
        try:
            return proc.environ().get(STACK_ENV) == self.mark[STACK_ENV]
        except (psutil.Error, OSError):
            return False

    def strays(self) -> list[psutil.Process]:
        """Live processes of this stack, by its mark (whatever their session or parent)."""
        me = os.getpid()
        return [p for p in psutil.process_iter() if p.pid != me and _running(p) and self.marked(p)]

    def sweep(self) -> int:
        """Stop every process that still carries the stack's mark; how many there were."""
        strays = self.strays()
        _signal(strays, signal.SIGTERM)
        if leftovers := _wait_gone(strays, ORPHAN_GRACE):
            _signal(leftovers, signal.SIGKILL)
            _wait_gone(leftovers, 5)
        return len(strays)


def _signal(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


def exit_reason(code: int) -> str:
    """An exit code as ``subprocess`` reports it (negative: the signal) in words."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited; a zombie counts as gone (its parent may be slow to reap)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def as_user(user: str | None) -> dict[str, Any]:
    """subprocess arguments that run the child as ``user`` (only root can), with no extra groups."""
    if not user:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def pss_bytes(procs: list[psutil.Process]) -> int:
    """Total proportional set size of the processes and all their children."""
    seen: dict[int, psutil.Process] = {}
    for proc in procs:
        for p in [proc, *proc.children(recursive=True)]:
            seen[p.pid] = p
    total = 0
    for p in seen.values():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_full_info().pss
    return total
