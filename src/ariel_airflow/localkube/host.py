"""What a local cluster changes on the machine, recorded before ``up`` and undone by ``down``.

A cluster adds iptables rules and chains (kube-proxy's ``KUBE-*``, the CNI plugins' ``CNI-*``),
network namespaces and veth pairs for its pods, a bridge per node, mounts (pod volumes, container
root filesystems, network namespaces), cgroups (one tree per node) and turns IP forwarding on.
``down`` removes exactly what is new since the record: rules and chains that were there before (a
Docker daemon's, say) stay, and so does anything the cluster did not make.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

SYSCTLS = ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables")
IPTABLES_TABLES = ("filter", "nat", "mangle")
CLUSTER_CHAIN_PREFIXES = ("KUBE-", "CNI-")
NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class HostRecord:
    """The host as it was before ``up``: what ``down`` must leave."""

    sysctls: dict[str, str] = field(default_factory=dict)
    iptables: dict[str, list[str]] = field(default_factory=dict)  # table -> its rules and chains
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    @classmethod
    def take(cls) -> HostRecord:
        return cls(
            sysctls={name: _read_sysctl(name) for name in SYSCTLS if _sysctl_path(name).exists()},
            iptables={table: iptables_lines(table) for table in IPTABLES_TABLES},
            netns=sorted(_netns_names()),
            links=sorted(link_names()),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> HostRecord | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def prepare_host() -> None:
    """Let the host route between the pods' bridges, and let iptables see bridged traffic."""
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            _sysctl_path(name).write_text("1")


def iptables_lines(table: str) -> list[str]:
    """``iptables-save`` of one table: its chain declarations (``:NAME``) and rules (``-A``)."""
    out = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.startswith((":", "-A "))]


def link_names() -> set[str]:
    return {path.name for path in Path("/sys/class/net").iterdir()}


def cluster_links(bridges: list[str]) -> set[str]:
    """The nodes' bridges and the pods' veths attached to them."""
    found = {name for name in bridges if (Path("/sys/class/net") / name).exists()}
    for link in Path("/sys/class/net").iterdir():
        master = link / "master"
        if master.exists() and master.resolve().name in bridges:
            found.add(link.name)
    return found


def _netns_names() -> set[str]:
    return {entry.name for folder in NETNS_DIRS if folder.is_dir() for entry in folder.iterdir()}


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


def _read_sysctl(name: str) -> str:
    return _sysctl_path(name).read_text().strip()


def kill_cgroup_processes(cgroup_roots: list[str]) -> int:
    """SIGKILL every process in the nodes' cgroup trees (the containers); how many there were."""
    pids: set[int] = set()
    for tree in _cgroup_dirs(cgroup_roots):
        for procs in tree.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in procs.read_text().split())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    psutil.wait_procs([p for pid in pids if (p := _process(pid))], timeout=10)
    return len(pids)


def create_cgroups(cgroup_roots: list[str]) -> None:
    """The nodes' cgroup trees in every hierarchy: the kubelet wants its cgroup root to exist."""
    for base in _hierarchies():
        for root in cgroup_roots:
            (base / root.strip("/")).mkdir(exist_ok=True)


def remove_cgroups(cgroup_roots: list[str]) -> None:
    """Remove the nodes' cgroup trees, deepest first (a cgroup goes only once it is empty)."""
    for tree in _cgroup_dirs(cgroup_roots):
        for folder in sorted((p for p in tree.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            tree.rmdir()


def _hierarchies() -> list[Path]:
    """cgroup v2: the one unified tree; v1: one tree per controller (symlinked aliases skipped)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    if not CGROUP_ROOT.is_dir():
        return []
    return [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink() and os.path.ismount(p)]


def _cgroup_dirs(cgroup_roots: list[str]) -> list[Path]:
    found = (base / root.strip("/") for base in _hierarchies() for root in cgroup_roots)
    return [path for path in found if path.is_dir()]


def unmount_under(paths: list[Path]) -> list[str]:
    """Unmount everything mounted at or below ``paths``, deepest first; the mount points."""
    prefixes = [str(path.absolute()).rstrip("/") + "/" for path in paths]
    points = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if any((line.split()[4] + "/").startswith(prefix) for prefix in prefixes)
    ]
    for point in sorted(set(points), key=lambda p: -p.count("/")):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    return points


def restore(record: HostRecord, bridges: list[str]) -> list[str]:
    """Undo what the cluster made since ``record``: network namespaces, its bridges and the veths on
    them, iptables rules and chains, sysctls. Another program's devices (a Docker network made
    meanwhile) stay."""
    undone = []
    for folder in NETNS_DIRS:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.name not in record.netns and entry.name.startswith("cni-"):
                subprocess.run(["umount", "--lazy", str(entry)], capture_output=True)
                with contextlib.suppress(OSError):
                    entry.unlink()
                undone.append(f"netns {entry.name}")
    for name in sorted(cluster_links(bridges) - set(record.links)):
        result = subprocess.run(["ip", "link", "delete", name], capture_output=True)
        if result.returncode == 0:
            undone.append(f"link {name}")
    for table, before in record.iptables.items():
        undone += _restore_iptables(table, set(before))
    for name, value in record.sysctls.items():
        with contextlib.suppress(OSError):
            if _read_sysctl(name) != value:
                _sysctl_path(name).write_text(value)
                undone.append(f"sysctl {name}={value}")
    return undone


def _restore_iptables(table: str, before: set[str]) -> list[str]:
    """Delete the cluster's rules, then its chains, in one table."""
    undone = []
    now = iptables_lines(table)
    for line in now:
        if line.startswith("-A ") and line not in before and _clusters(line):
            spec = shlex.split(line)[1:]
            subprocess.run(["iptables", "-t", table, "-D", *spec], capture_output=True)
    chains = [line[1:].split()[0] for line in now if line.startswith(":") and line not in before]
    chains = [chain for chain in chains if chain.startswith(CLUSTER_CHAIN_PREFIXES)]
    for chain in chains:  # first empty them all: one may jump to another
        subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
    for chain in chains:
        if subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True).returncode == 0:
            undone.append(f"iptables {table} {chain}")
    return undone


def _clusters(rule: str) -> bool:
    """A rule of the cluster's: in one of its chains, or jumping to one."""
    words = rule.split()
    chain = words[1]
    target = words[words.index("-j") + 1] if "-j" in words else ""
    return chain.startswith(CLUSTER_CHAIN_PREFIXES) or target.startswith(CLUSTER_CHAIN_PREFIXES)


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
