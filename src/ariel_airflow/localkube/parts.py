"""The upstream parts of the local Kubernetes, and where their pins live.

Every Go program is pinned by a small Go module under ``tools/`` (one home per pin: its ``go.mod``
and ``go.sum``); the pause program is Kubernetes' own ``build/pause/linux/pause.c`` from the same
module, compiled statically. containerd, runc, the CNI plugins and iptables are Debian's: the
pinned kubelet runs with them, and ``missing_system_parts`` says how to install what is missing.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ariel_airflow.errors import UserError
from ariel_airflow.template import KIT_ROOT

TOOLS_DIR = KIT_ROOT / "tools"
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap", "firewall")
SYSTEM_PROGRAMS = ("containerd", "runc", "iptables", "ip", "ctr")
SYSTEM_PACKAGES = "containerd runc containernetworking-plugins iptables iproute2"


@dataclass(frozen=True)
class ToolsModule:
    """A Go module under ``tools/`` and the programs built from it."""

    name: str  # its folder under tools/
    programs: dict[str, str]  # program name -> Go package path ("." is the module's own main)
    # Go package -> its version variable: set at link time, as the project's own release build does.
    version_variables: tuple[tuple[str, str], ...] = ()
    versioned_module: str = ""  # whose pin those variables report

    @property
    def dir(self) -> Path:
        return TOOLS_DIR / self.name

    def pinned_files(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir() if p.suffix in (".mod", ".sum", ".go"))

    def ldflags(self) -> str:
        """``-s`` (no debug tables: a third smaller) and the version the programs report."""
        flags = ["-s"]
        if self.versioned_module:
            version = self.pin(self.versioned_module)
            major, minor = version.lstrip("v").split(".")[:2]
            values = {
                "gitVersion": version,
                "gitMajor": major,
                "gitMinor": minor,
                "gitTreeState": "clean",
                "version": version,
            }
            flags += [f"-X {package}.{key}={values[key]}" for package, key in self.version_variables]
        return " ".join(flags)

    def fingerprint(self, go_version: str) -> str:
        """Changes when a pin, the module's code, the link flags or the Go toolchain change: the
        cache key."""
        digest = hashlib.sha256(go_version.encode() + self.ldflags().encode())
        for path in self.pinned_files():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()[:16]

    def pin(self, module: str) -> str:
        """The version ``go.mod`` requires of ``module``."""
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", self.go_mod(), re.MULTILINE)
        if not match:
            raise UserError(f"{module} is not required", where=str(self.dir / "go.mod"))
        return match[1]

    def go_mod(self) -> str:
        return (self.dir / "go.mod").read_text()


KUBERNETES = ToolsModule(
    "kubernetes",
    {
        name: f"k8s.io/kubernetes/cmd/{name}"
        for name in (
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kube-proxy",
            "kubectl",
        )
    },
    # What Kubernetes' hack/lib/version.sh sets: nodes and `kubectl version` report the release.
    version_variables=tuple(
        (package, key)
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for key in ("gitVersion", "gitMajor", "gitMinor", "gitTreeState")
    ),
    versioned_module="k8s.io/kubernetes",
)
ETCD = ToolsModule("etcd", {"etcd": "."})
COREDNS = ToolsModule("coredns", {"coredns": "github.com/coredns/coredns"})
HELM = ToolsModule(
    "helm",
    {"helm": "helm.sh/helm/v4/cmd/helm"},
    version_variables=(("helm.sh/helm/v4/internal/version", "version"),),
    versioned_module="helm.sh/helm/v4",
)
TOOLS_MODULES = (KUBERNETES, ETCD, COREDNS, HELM)
# Built with a C compiler from the pinned Kubernetes module's own source: the pods' sandbox.
PAUSE_SOURCE = "build/pause/linux/pause.c"


def kubernetes_version() -> str:
    """The pinned release, e.g. ``v1.34.4``."""
    return KUBERNETES.pin("k8s.io/kubernetes")


def coredns_version() -> str:
    return COREDNS.pin("github.com/coredns/coredns")


def missing_system_parts() -> list[str]:
    """The Debian programs the cluster runs that this machine lacks."""
    missing = [name for name in SYSTEM_PROGRAMS if shutil.which(name) is None]
    missing += [f"{CNI_BIN_DIR}/{name}" for name in CNI_PLUGINS if not (CNI_BIN_DIR / name).exists()]
    return missing


def require_system_parts() -> None:
    if missing := missing_system_parts():
        raise UserError(
            f"the local Kubernetes needs programs this machine lacks: {', '.join(missing)}",
            fix=f"install them: `apt-get install {SYSTEM_PACKAGES}` (Debian or Ubuntu)",
        )
