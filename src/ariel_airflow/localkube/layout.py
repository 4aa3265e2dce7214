"""Where a local cluster keeps everything (one state directory), its network, and its nodes.

Each node pool of the environment becomes one node: its own kubelet and containerd, with the
pool's labels and taints, and its own pod subnet on its own bridge. All nodes share this machine's
network namespace, so one kube-proxy serves them all and pods on different bridges reach each other
through the host's routes.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ariel_airflow.cluster.environments import Environment, NodePool

STATE_ENV_VAR = "ARIEL_CLUSTER_STATE"
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")
API_SERVICE_IP = str(SERVICE_CIDR[1])  # the `kubernetes` Service: always the range's first address
DNS_SERVICE_IP = str(SERVICE_CIDR[10])
CLUSTER_CIDR = ipaddress.ip_network("10.244.0.0/16")  # node i gets 10.244.i.0/24
CLUSTER_DOMAIN = "cluster.local"
API_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
# Each node's kubelet ports: the first node has Kubernetes' defaults, the next ones step by 10.
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
# Unix socket paths are limited to 107 bytes: each containerd's socket must fit.
SOCKET_PATH_MAX = 107


def default_state_dir() -> Path:
    """``$ARIEL_CLUSTER_STATE``, else ``$XDG_STATE_HOME/ariel/cluster`` (``~/.local/state/...``)."""
    if os.environ.get(STATE_ENV_VAR):
        return Path(os.environ[STATE_ENV_VAR])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "ariel" / "cluster"


def node_ip() -> str:
    """The address of the default route: pods reach the API server there (never loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("198.51.100.1", 9))  # TEST-NET-2, via the default route; no packet is sent
        return probe.getsockname()[0]


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    @classmethod
    def parse(cls, text: str) -> Taint:  # "key=value:Effect", checked by the environment's model
        key_value, effect = text.rsplit(":", 1)
        key, _, value = key_value.partition("=")
        return cls(key, value, effect)

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": self.effect}


@dataclass(frozen=True)
class Node:
    """One node of the cluster: a node pool of the environment."""

    name: str
    index: int
    dir: Path
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    max_pods: int = 110

    @property
    def pod_cidr(self) -> str:
        return str(list(CLUSTER_CIDR.subnets(new_prefix=24))[self.index])

    @property
    def bridge(self) -> str:
        return f"ariel{self.index}"

    @property
    def kubelet_port(self) -> int:
        return KUBELET_PORT + 10 * self.index

    @property
    def healthz_port(self) -> int:
        return KUBELET_HEALTHZ_PORT + 10 * self.index

    @property
    def cgroup_root(self) -> str:
        return f"/ariel-{self.name}"  # its own cgroup tree: two kubelets never touch each other's pods

    @property
    def containerd_socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.dir / "cni"

    @property
    def kubelet_dir(self) -> Path:
        return self.dir / "kubelet"


@dataclass(frozen=True)
class Layout:
    """The files of one local cluster, all under ``state``."""

    state: Path
    ip: str
    nodes: tuple[Node, ...]

    @classmethod
    def of(cls, state: Path, env: Environment, ip: str | None = None) -> Layout:
        state = state.absolute()
        nodes = tuple(
            _node(state, index, pool, env.max_pods(pool)) for index, pool in enumerate(env.node_pools)
        )
        return cls(state, ip or node_ip(), nodes)

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def bin(self) -> Path:
        return self.state / "bin"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    def kubeconfig(self, user: str) -> Path:
        return self.config / f"{user}.kubeconfig"

    @property
    def host_record(self) -> Path:
        """What the host had before ``up`` (iptables rules, sysctls, network namespaces)."""
        return self.state / "host-before-up.json"

    @property
    def server(self) -> str:
        return f"https://{self.ip}:{API_PORT}"

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)


def _node(state: Path, index: int, pool: NodePool, max_pods: int) -> Node:
    name = f"local-{pool.name}"
    return Node(
        name=name,
        index=index,
        dir=state / "nodes" / pool.name,
        labels=dict(pool.labels),
        taints=tuple(Taint.parse(taint) for taint in pool.taints),
        max_pods=max_pods,
    )
