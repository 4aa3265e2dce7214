"""CPU seconds a stack spent to start, to tell a start bound by CPU from one bound by waiting.

A start that takes ``cpu / cores`` seconds or more has no idle core left: only less work makes it
faster. Counted per process tree (psutil): what each live process used, plus what the children it
reaped used (a finished job, Postgres's backends). Docker's daemon and containerd are not counted.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable

import psutil


def tree_cpu_seconds(roots: Iterable[psutil.Process]) -> float:
    """User and system CPU of the roots and all their descendants, live or reaped by them."""
    seen: set[int] = set()
    total = 0.0
    for root in roots:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in procs:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
    return total


def reaped_children_seconds() -> float:
    """CPU of this process's children that it has waited for (a subprocess.run, say), so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def floor_seconds(cpu: float) -> float:
    """The shortest start this much CPU allows on this machine's cores."""
    return cpu / (os.cpu_count() or 1)
