"""Background processes tracked by pid files, stopped by pid (never by name).

A pid file holds the pid and the process start time, so a recycled pid is never mistaken
for one of ours.
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


@dataclass(frozen=True)
class Tracked:
    name: str
    pid: int
    started: float
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
                env=env,
                cwd=cwd,
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else log,
                stderr=log if pipes else subprocess.STDOUT,
                text=pipes,
                start_new_session=True,  # own process group: Ctrl-C goes to us, we stop it by pid
                **as_user(user),
            )
        return self._record(Tracked(name, popen.pid, psutil.Process(popen.pid).create_time(), popen))

    def adopt(self, name: str, pid: int) -> Tracked:
        """Track a process someone else started (a fork of the launcher)."""
        try:
            started = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            started = 0.0  # already gone: never alive(), so the caller's health wait reports it
        return self._record(Tracked(name, pid, started))

    def _record(self, tracked: Tracked) -> Tracked:
        self.pid_file(tracked.name).write_text(json.dumps({"pid": tracked.pid, "started": tracked.started}))
        return tracked

    def get(self, name: str) -> Tracked | None:
        try:
            data = json.loads(self.pid_file(name).read_text())
            return Tracked(name, int(data["pid"]), float(data["started"]))
        except (OSError, ValueError, KeyError):
            return None

    def running(self) -> list[Tracked]:
        if not self.run_dir.exists():
            return []
        found = (self.get(p.stem) for p in sorted(self.run_dir.glob("*.pid")))
        return [t for t in found if t is not None and t.alive()]

    def stop(self, signals: dict[str, int], *, timeout: float = 30.0) -> list[str]:
        """Signal each named service's process group at once, wait, then kill what is left.

        Returns the names that were running.
        """
        stopped, group, leaders = [], [], []
        for name, sig in signals.items():
            tracked = self.get(name)
            if tracked is not None and (proc := tracked.process()) is not None:
                stopped.append(name)
                leaders.append(tracked.pid)
                group += [proc, *proc.children(recursive=True)]
                # Only the leader: Airflow components shut their own children down in order,
                # which is much faster than every child handling the signal at once.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(tracked.pid, sig)
        if leftovers := _wait_gone(group, timeout):
            for pgid in leaders:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
            _wait_gone(leftovers, 5)
        for name in signals:
            self.pid_file(name).unlink(missing_ok=True)
        return stopped


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
