"""The command line and configuration files of each process of a local cluster.

The flags follow Kubernetes' own ``hack/local-up-cluster.sh`` for one machine, with two traps of
VMs like the kit's CI machines handled: containerd must not ask runc for a negative OOM score
(``restrict_oom_score_adj``: the VM lacks CAP_SYS_RESOURCE), and the kubelet drives cgroups itself
(``cgroupfs``: no systemd). Each component writes its files under the cluster's state directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tomli_w
import yaml

from ariel_airflow.localkube.build import Binaries
from ariel_airflow.localkube.layout import (
    API_PORT,
    CLUSTER_CIDR,
    CLUSTER_DOMAIN,
    DNS_SERVICE_IP,
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    SERVICE_CIDR,
    Layout,
    Node,
)
from ariel_airflow.localkube.parts import CNI_BIN_DIR
from ariel_airflow.localkube.pki import Pki

SERVICE_ACCOUNT_ISSUER = f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}"
LOCAL_REGISTRY = "ariel.local"  # images built here and imported into each node; nothing is pulled


@dataclass(frozen=True)
class Process:
    """One process of the cluster: what it runs, and the files it needs written first."""

    name: str
    argv: list[str]
    files: dict[Path, str]


def pause_image(version: str) -> str:
    return f"{LOCAL_REGISTRY}/pause:{version}"


def etcd(layout: Layout, bins: Binaries) -> Process:
    client = f"http://127.0.0.1:{ETCD_CLIENT_PORT}"
    peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
    argv = [
        str(bins["etcd"]),
        "--name=ariel",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=ariel={peer}",
        "--log-level=warn",
    ]
    return Process("etcd", argv, {})


def apiserver(layout: Layout, bins: Binaries, pki: Pki) -> Process:
    argv = [
        str(bins["kube-apiserver"]),
        f"--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}",
        f"--bind-address={layout.ip}",
        f"--advertise-address={layout.ip}",
        f"--secure-port={API_PORT}",
        f"--tls-cert-file={pki.cert('apiserver')}",
        f"--tls-private-key-file={pki.key('apiserver')}",
        f"--client-ca-file={pki.ca_cert()}",
        f"--kubelet-client-certificate={pki.cert('apiserver-kubelet-client')}",
        f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
        f"--kubelet-certificate-authority={pki.ca_cert()}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        # On top of the defaults (LimitRanger, ResourceQuota, ServiceAccount, ...): kubelets may
        # change only their own node and its pods, as on AKS.
        "--enable-admission-plugins=NodeRestriction",
        # Mutating admission policies (beta in 1.34, off by default): the local cluster injects
        # workload identity with one (ariel_airflow.localkube.standins), as AKS's webhook does.
        "--feature-gates=MutatingAdmissionPolicy=true",
        "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
        "--allow-privileged=true",
        "--profiling=false",
    ]
    return Process("kube-apiserver", argv, {})


def controller_manager(layout: Layout, bins: Binaries, pki: Pki) -> Process:
    argv = [
        str(bins["kube-controller-manager"]),
        *_control_plane_client(layout.kubeconfig("controller-manager")),
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert()}",
        f"--cluster-signing-cert-file={pki.ca_cert()}",
        f"--cluster-signing-key-file={pki.key('ca')}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allocate-node-cidrs=false",  # each node's subnet is fixed in its CNI configuration
    ]
    return Process("kube-controller-manager", argv, {})


def scheduler(layout: Layout, bins: Binaries) -> Process:
    argv = [str(bins["kube-scheduler"]), *_control_plane_client(layout.kubeconfig("scheduler"))]
    return Process("kube-scheduler", argv, {})


def _control_plane_client(kubeconfig: Path) -> list[str]:
    """The API client flags of the controller-manager and the scheduler: one instance each, health
    and metrics served on loopback only."""
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
    ]


def containerd(node: Node, pause: str) -> Process:
    base = node.dir / "containerd"
    cri = {
        "sandbox_image": pause,
        "restrict_oom_score_adj": True,  # the VM may not lower OOM scores (no CAP_SYS_RESOURCE)
        "containerd": {
            "snapshotter": "overlayfs",
            "default_runtime_name": "runc",
            "runtimes": {
                "runc": {"runtime_type": "io.containerd.runc.v2", "options": {"SystemdCgroup": False}}
            },
        },
        "cni": {"bin_dir": str(CNI_BIN_DIR), "conf_dir": str(node.cni_conf_dir)},
    }
    config = {
        "version": 2,
        "root": str(base / "root"),
        "state": str(base / "state"),
        "grpc": {"address": str(node.containerd_socket)},
        "ttrpc": {"address": str(base / "ttrpc.sock")},
        "plugins": {
            "io.containerd.grpc.v1.cri": cri,
            "io.containerd.internal.v1.opt": {"path": str(base / "opt")},
        },
    }
    path = base / "config.toml"
    return Process(
        f"containerd-{node.name}", ["containerd", f"--config={path}"], {path: tomli_w.dumps(config)}
    )


def cni_config(node: Node) -> Process:
    """Not a process: the node's pod network (bridge, host-local addresses, port maps, forwarding)."""
    conflist = {
        "cniVersion": "1.0.0",
        "name": f"ariel-{node.name}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.bridge,
                "isGateway": True,
                "ipMasq": True,  # pods reach the outside through the host's address
                "hairpinMode": True,  # a pod reaches itself through its own Service
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": node.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node.dir / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},  # accepts the pods' traffic even where FORWARD drops (dockerd)
        ],
    }
    path = node.cni_conf_dir / "10-ariel.conflist"
    return Process(f"cni-{node.name}", [], {path: json.dumps(conflist, indent=2)})


def kubelet(layout: Layout, node: Node, bins: Binaries, pki: Pki) -> Process:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca_cert())},
        },
        "authorization": {"mode": "Webhook"},
        "address": layout.ip,
        "port": node.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": node.healthz_port,
        "tlsCertFile": str(pki.cert(f"kubelet-{node.name}")),
        "tlsPrivateKeyFile": str(pki.key(f"kubelet-{node.name}")),
        "cgroupDriver": "cgroupfs",  # no systemd on these machines
        "cgroupRoot": node.cgroup_root,
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "/etc/resolv.conf",
        "podLogsDir": str(node.dir / "pod-logs"),  # not /var/log/pods: all in one state directory
        "maxPods": node.max_pods,
        "registerWithTaints": [taint.as_dict() for taint in node.taints],
        "failSwapOn": False,
        # The images were built here and cannot be pulled again: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
        "serializeImagePulls": False,
    }
    config_path = node.dir / "kubelet-config.yaml"
    labels = ",".join(f"{key}={value}" for key, value in sorted(node.labels.items()))
    argv = [
        str(bins["kubelet"]),
        f"--config={config_path}",
        f"--kubeconfig={layout.kubeconfig(f'kubelet-{node.name}')}",
        f"--hostname-override={node.name}",
        f"--node-ip={layout.ip}",
        f"--root-dir={node.kubelet_dir}",
        f"--cert-dir={node.dir / 'kubelet-pki'}",
        *([f"--node-labels={labels}"] if labels else []),
    ]
    return Process(f"kubelet-{node.name}", argv, {config_path: yaml.safe_dump(config, sort_keys=False)})


def kube_proxy(layout: Layout, bins: Binaries) -> Process:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig("kube-proxy"))},
        "mode": "iptables",
        "clusterCIDR": str(CLUSTER_CIDR),
        "hostnameOverride": layout.nodes[0].name,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # Leave the host's conntrack and route_localnet sysctls as they are: nothing to undo at down.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"localhostNodePorts": False},
    }
    path = layout.config / "kube-proxy.yaml"
    argv = [str(bins["kube-proxy"]), f"--config={path}"]
    return Process("kube-proxy", argv, {path: yaml.safe_dump(config, sort_keys=False)})
