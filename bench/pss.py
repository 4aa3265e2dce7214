"""Where a stack's memory goes: proportional set size (PSS) per component and per process kind.

PSS divides each shared page among the processes that map it, so the figures add up to what the
stack costs the machine: forks that share pages copy-on-write are not counted twice. Read from
``/proc/<pid>/smaps_rollup`` (one cheap read per process; for containers the host's /proc sees
their processes too). ``Pss_Anon`` is the heap (objects, caches), ``Pss_File`` the mapped files
(shared libraries, bytecode is not mapped: it is read into the heap).
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from dataclasses import dataclass, field

import psutil

MIB = 1024 * 1024
FIELDS = ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem")


def smaps_rollup(pid: int) -> dict[str, int]:
    """The PSS fields of one process, in bytes (all zero when it is gone or unreadable)."""
    found = dict.fromkeys(FIELDS, 0)
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in found:
                found[key] = int(rest.split()[0]) * 1024  # kB
    return found


@dataclass
class Kind:
    """Processes of one kind inside a component (the scheduler's LocalExecutor workers, say)."""

    count: int = 0
    bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIELDS, 0))

    def add(self, figures: dict[str, int]) -> None:
        self.count += 1
        for key, value in figures.items():
            self.bytes[key] += value


def label(proc: psutil.Process, root: psutil.Process | None = None) -> str:
    """A short name for a process: its title (Airflow sets one per role), without paths or ids.

    A fork that kept its parent's command line (the launcher's forks, LocalExecutor workers that
    set no title) is named by its place in the tree instead.
    """
    try:
        words = proc.cmdline() or [proc.name()]
        if root is not None and words == root.cmdline():
            return "main process" if proc.pid == root.pid else f"fork, {len(proc.children())} children"
    except psutil.Error:
        return "?"
    first = words[0].rsplit("/", 1)[-1]
    text = " ".join([first, *(w.rsplit("/", 1)[-1] if w.startswith("/") else w for w in words[1:])])
    text = re.sub(r"\b[0-9a-f]{8}-[0-9a-f-]{27}\b|\b\d{2,}\b", "N", text)  # uuids, pids, ports
    return text[:70]


def breakdown(roots: dict[str, psutil.Process]) -> dict[str, dict[str, Kind]]:
    """Per component (name -> its root process), the PSS of each kind of process in its tree."""
    result: dict[str, dict[str, Kind]] = {}
    root_pids = {root.pid for root in roots.values()}
    for component, root in roots.items():
        kinds: dict[str, Kind] = defaultdict(Kind)
        for proc in _subtree(root, root_pids):
            kinds[label(proc, root)].add(smaps_rollup(proc.pid))
        result[component] = dict(kinds)
    return result


def _subtree(root: psutil.Process, roots: set[int]) -> list[psutil.Process]:
    """``root`` and its descendants, except the trees of the other roots: the launcher is the parent
    of the components it forked, and each is counted under its own name, not the launcher's."""
    tree, todo = [], [root]
    while todo:
        proc = todo.pop()
        tree.append(proc)
        try:
            todo += [child for child in proc.children() if child.pid not in roots]
        except psutil.Error:
            continue
    return tree


def total_mib(components: dict[str, dict[str, Kind]]) -> dict[str, float]:
    return {name: sum(k.bytes["Pss"] for k in kinds.values()) / MIB for name, kinds in components.items()}


def print_breakdown(title: str, components: dict[str, dict[str, Kind]]) -> None:
    grand = sum(total_mib(components).values())
    print(f"\n{title}: PSS {grand:.0f} MiB  (anon = heap, file = mapped libraries)")
    print(f"  {'component / process':60} {'n':>3} {'PSS':>7} {'anon':>7} {'file':>7}")
    for name, kinds in components.items():
        whole = Kind()
        for kind in kinds.values():
            whole.count += kind.count
            whole.add(kind.bytes)
        whole.count -= len(kinds)  # add() counted each kind once more
        _row(name, whole, 2)
        for kind_name, kind in sorted(kinds.items(), key=lambda kv: -kv[1].bytes["Pss"]):
            _row(kind_name, kind, 4)


def _row(name: str, kind: Kind, indent: int) -> None:
    figures = " ".join(f"{kind.bytes[f] / MIB:7.1f}" for f in ("Pss", "Pss_Anon", "Pss_File"))
    print(f"{'':{indent}}{name:{62 - indent}} {kind.count:3} {figures}")
