"""``ariel platform cluster up|down|status``: a real Kubernetes on this machine, from upstream parts.

``up`` builds the pinned parts (once per machine), writes certificates and configuration under
one state directory, and starts etcd, the API server, controller-manager and scheduler, then one
containerd and kubelet per node pool of the environment, kube-proxy, and CoreDNS. ``down`` stops
every process by pid and removes what ``up`` made on the host (``host.py``); the certificates and
etcd's data stay for the next ``up`` unless ``purge``.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from ariel_airflow.cluster.environments import load_environment
from ariel_airflow.cluster.registry import load_registry
from ariel_airflow.cluster.render import NAMESPACE as RELEASE_NAMESPACE
from ariel_airflow.errors import UserError
from ariel_airflow.localdev.processes import ProcessTable, tail
from ariel_airflow.localdev.progress import Progress
from ariel_airflow.localkube import cluster_images, components, host, standins
from ariel_airflow.localkube.addons import coredns_image, coredns_objects
from ariel_airflow.localkube.build import Binaries, build_all, pause_version
from ariel_airflow.localkube.images import build_program_image, load_images
from ariel_airflow.localkube.layout import (
    API_SERVICE_IP,
    CLUSTER_DOMAIN,
    ETCD_CLIENT_PORT,
    SOCKET_PATH_MAX,
    Layout,
)
from ariel_airflow.localkube.parts import require_system_parts
from ariel_airflow.localkube.pki import Identity, Pki, ensure_pki, write_kubeconfig

LOCAL_ENVIRONMENT = "local"
CLIENT_PROGRAMS = ("kubectl", "helm")  # linked into <state>/bin
# Client identities of the control plane, as Kubernetes' RBAC bootstrap policy names them.
CLIENTS = (
    Identity("admin", "ariel-admin", ("system:masters",)),
    Identity("controller-manager", "system:kube-controller-manager"),
    Identity("scheduler", "system:kube-scheduler"),
    Identity("kube-proxy", "system:kube-proxy"),
)
START_TIMEOUT = 120.0
STOP_GRACE = 20.0  # seconds each component gets to exit after SIGTERM, before SIGKILL
CONTAINERD_GRACE = 3.0
# Health endpoints on loopback (the components' default secure ports, kube-proxy's healthz port).
CONTROLLER_MANAGER_HEALTHZ = "https://127.0.0.1:10257/healthz"
SCHEDULER_HEALTHZ = "https://127.0.0.1:10259/healthz"
KUBE_PROXY_LIVEZ = "http://127.0.0.1:10256/livez"
# Stop order: the nodes' agents first (nothing restarts containers behind our back), the store last.
STOP_ORDER = (
    "kube-proxy",
    "kubelet-",
    "kube-scheduler",
    "kube-controller-manager",
    "containerd-",
    "kube-apiserver",
    "etcd",
)


@dataclass
class ClusterStatus:
    state: Path
    kubeconfig: Path
    processes: dict[str, bool] = field(default_factory=dict)  # name -> running
    nodes: dict[str, bool] = field(default_factory=dict)  # name -> Ready
    server: str = ""

    @property
    def up(self) -> bool:
        return bool(self.processes) and all(self.processes.values()) and all(self.nodes.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": str(self.state),
            "kubeconfig": str(self.kubeconfig),
            "bin": str(self.state / "bin"),
            "server": self.server,
            "up": self.up,
            "processes": self.processes,
            "nodes": self.nodes,
        }


class LocalCluster:
    def __init__(self, state: Path, platform_dir: Path, env_name: str = LOCAL_ENVIRONMENT) -> None:
        self.env = load_environment(env_name, platform_dir)
        self.registry = load_registry(platform_dir)
        for pool in self.env.node_pools:  # each pool is one node here: more would be more kubelets
            if pool.count != 1:
                raise UserError(
                    f"node pool {pool.name!r} has count {pool.count}: here each pool is one node",
                    where=f"{platform_dir}/environments/{env_name}.yaml: node_pools",
                    fix="set count: 1 on each pool of the local environment",
                )
        self.layout = Layout.of(state, self.env)
        self.table = ProcessTable(self.layout.run, self.layout.logs)
        for node in self.layout.nodes:
            if len(str(node.containerd_socket)) > SOCKET_PATH_MAX:
                raise UserError(
                    f"the state directory's path is too long for containerd's socket "
                    f"({node.containerd_socket})",
                    where=str(state),
                    fix="choose a shorter --state-dir (a unix socket path has at most 107 bytes)",
                )

    # -- up ------------------------------------------------------------------------------------

    def up(self, progress: Progress | None = None) -> ClusterStatus:
        progress = progress or Progress()
        require_system_parts()
        bins = build_all(progress)
        layout = self.layout
        if self.table.running():
            status = self.status()
            if status.up:
                progress.info(f"the cluster is already up (state in {layout.state})")
                return status
            raise UserError(
                "part of the cluster is running: " + ", ".join(n for n, ok in status.processes.items() if ok),
                where=str(layout.state),
                fix="stop it with `ariel platform cluster down`, then start it again",
            )
        t0 = time.monotonic()
        if host.HostRecord.load(layout.host_record) is None:  # else an earlier up's record still holds
            host.HostRecord.take().save(layout.host_record)
        pki = self._pki()
        with progress.step("writing configuration", "configuration written"):
            self._write_kubeconfigs(pki)
            self._link_clients(bins)
            host.prepare_host()
            host.create_cgroups([node.cgroup_root for node in layout.nodes])
        started = [
            (components.etcd(layout, bins), self._etcd_healthy),
            (components.apiserver(layout, bins, pki), self._api_ready),
        ]
        for process, ready in started:
            self._start(process, ready, progress)
        self._start(
            components.controller_manager(layout, bins, pki), _healthz(CONTROLLER_MANAGER_HEALTHZ), progress
        )
        self._start(components.scheduler(layout, bins), _healthz(SCHEDULER_HEALTHZ), progress)
        pause = components.pause_image(pause_version())
        for node in layout.nodes:
            _write_files(components.cni_config(node).files)
            self._start(components.containerd(node, pause), node.containerd_socket.exists, progress)
        with progress.step("loading the pause and CoreDNS images into the nodes", "images loaded"):
            build_program_image(pause, bins["pause"], entrypoint="/pause")
            build_program_image(coredns_image(), bins["coredns"], entrypoint="/coredns")
            load_images([pause, coredns_image()], layout.nodes, layout.state / "images")
        for node in layout.nodes:
            healthz = f"http://127.0.0.1:{node.healthz_port}/healthz"
            self._start(components.kubelet(layout, node, bins, pki), _healthz(healthz), progress)
        self._start(components.kube_proxy(layout, bins), _healthz(KUBE_PROXY_LIVEZ), progress)
        with progress.step(f"waiting for {len(layout.nodes)} nodes to be Ready", "nodes Ready"):
            self._wait("nodes Ready", lambda: all(self._nodes_ready().values()), START_TIMEOUT)
        with progress.step("deploying CoreDNS", "cluster DNS ready"):
            objects = coredns_objects(standins.dns_rewrites(self.env, self.registry))
            self.kubectl(bins, "apply", "-f", "-", input=yaml.safe_dump_all(objects))
            self.kubectl(
                bins,
                "-n",
                "kube-system",
                "rollout",
                "status",
                "deployment/coredns",
                f"--timeout={int(START_TIMEOUT)}s",
            )
        progress.done(f"cluster up: kubeconfig {layout.admin_kubeconfig}", time.monotonic() - t0)
        return self.status()

    # -- the platform's images and the Azure stand-ins --------------------------------------------

    def load_platform_images(self, rendered: Path, progress: Progress | None = None) -> list[str]:
        """Build the images ``render``'s output runs and load them into every node; their tags."""
        progress = progress or Progress()
        tags = cluster_images.build(rendered, progress)
        pki = self._pki()
        cluster_images.load(tags, pki.ca_cert(), self.layout.nodes, self.layout.state / "images", progress)
        return tags

    def deploy_standins(self, progress: Progress | None = None) -> None:
        """Deploy the local environment's Azure (``standins``) and wait for it to be Ready."""
        progress = progress or Progress()
        bins = build_all(progress)
        objects = standins.objects(
            self.env,
            self.registry,
            self._pki(),
            self.layout.state,
            f"{self.env.image.repository}:{self.env.image.tag}",
            cluster_images.DB_IMAGE,
            cluster_images.AZURITE_IMAGE,
            RELEASE_NAMESPACE,
        )
        # The DNS answers the hosts of teams registered since `up` too (CoreDNS reloads its Corefile).
        dns = [
            o
            for o in coredns_objects(standins.dns_rewrites(self.env, self.registry))
            if o["kind"] == "ConfigMap"
        ]
        with progress.step("deploying the Azure stand-ins", "Azure stand-ins Ready"):
            self.kubectl(bins, "apply", "-f", "-", input=yaml.safe_dump_all([*dns, *objects]))
            for obj in objects:
                if obj["kind"] == "Deployment":
                    meta = obj["metadata"]
                    self.kubectl(
                        bins,
                        "-n",
                        meta["namespace"],
                        "rollout",
                        "status",
                        f"deployment/{meta['name']}",
                        f"--timeout={int(START_TIMEOUT * 3)}s",
                    )

    def _pki(self) -> Pki:
        layout = self.layout
        return ensure_pki(
            layout.pki,
            apiserver_ips=[layout.ip, API_SERVICE_IP, "127.0.0.1"],
            apiserver_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
            ],
            kubelets={node.name: layout.ip for node in layout.nodes},
            clients=list(CLIENTS),
            servers=standins.server_certificates(self.env, self.registry),
        )

    def _write_kubeconfigs(self, pki: Pki) -> None:
        layout = self.layout
        write_kubeconfig(
            layout.admin_kubeconfig, server=layout.server, pki=pki, user="admin", cert_name="admin"
        )
        for client in CLIENTS[1:]:
            write_kubeconfig(
                layout.kubeconfig(client.name),
                server=layout.server,
                pki=pki,
                user=client.name,
                cert_name=client.name,
            )
        for node in layout.nodes:
            name = f"kubelet-{node.name}"
            write_kubeconfig(
                layout.kubeconfig(name), server=layout.server, pki=pki, user=name, cert_name=f"{name}-client"
            )

    def _link_clients(self, bins: Binaries) -> None:
        """``<state>/bin`` holds the pinned kubectl and helm: one PATH entry for the user."""
        folder = self.layout.bin
        folder.mkdir(parents=True, exist_ok=True)
        for program in CLIENT_PROGRAMS:
            link = folder / program
            link.unlink(missing_ok=True)
            link.symlink_to(bins[program])

    def _start(self, process: components.Process, ready: Callable[[], bool], progress: Progress) -> None:
        _write_files(process.files)
        with progress.step(f"starting {process.name}", f"{process.name} started"):
            tracked = self.table.start(
                process.name, process.argv, env=dict(os.environ), cwd=self.layout.state
            )

            def check() -> bool:
                if not tracked.alive():
                    log = self.table.log_file(process.name)
                    raise UserError(
                        f"{process.name} exited at start:\n{tail(log, 15)}",
                        where=str(log),
                        fix="read the log; `ariel platform cluster down` cleans up what started",
                    )
                return ready()

            self._wait(f"{process.name} ready", check, START_TIMEOUT)

    def _wait(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        """Until ``check`` holds; an error ``check`` raises ends the wait at once."""
        retrying = Retrying(
            stop=stop_after_delay(timeout), wait=wait_fixed(0.2), retry=retry_if_result(lambda ok: not ok)
        )
        try:
            retrying(check)
        except RetryError:
            raise UserError(
                f"{what}: not after {timeout:.0f}s",
                where=str(self.layout.logs),
                fix="read the components' logs there; `ariel platform cluster down` cleans up",
            ) from None

    # -- health --------------------------------------------------------------------------------

    def _etcd_healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{ETCD_CLIENT_PORT}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _api_client(self) -> httpx.Client:
        pki = Pki(self.layout.pki)
        context = ssl.create_default_context(cafile=str(pki.ca_cert()))
        context.load_cert_chain(str(pki.cert("admin")), str(pki.key("admin")))
        return httpx.Client(base_url=self.layout.server, verify=context, timeout=5)

    def _api_ready(self) -> bool:
        try:
            with self._api_client() as client:
                return client.get("/readyz").status_code == 200
        except (httpx.HTTPError, OSError):
            return False

    def _nodes_ready(self) -> dict[str, bool]:
        """Each node's Ready condition, as the API server has it."""
        ready = {node.name: False for node in self.layout.nodes}
        try:
            with self._api_client() as client:
                response = client.get("/api/v1/nodes")
        except (httpx.HTTPError, OSError):
            return ready
        if response.status_code != 200:
            return ready
        for item in response.json()["items"]:
            conditions = {c["type"]: c["status"] for c in item["status"].get("conditions", [])}
            if item["metadata"]["name"] in ready:
                ready[item["metadata"]["name"]] = conditions.get("Ready") == "True"
        return ready

    def kubectl(self, bins: Binaries, *args: str, input: str | None = None) -> str:
        argv = [str(bins["kubectl"]), f"--kubeconfig={self.layout.admin_kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True)
        if result.returncode != 0:
            raise UserError(
                f"`kubectl {' '.join(args[:3])}` failed: {result.stderr.strip()}",
                where=str(self.layout.logs),
                fix="read the components' logs there",
            )
        return result.stdout

    def status(self) -> ClusterStatus:
        names = sorted(p.stem for p in self.layout.run.glob("*.pid")) if self.layout.run.is_dir() else []
        processes = {name: (t := self.table.get(name)) is not None and t.alive() for name in names}
        nodes = self._nodes_ready() if processes.get("kube-apiserver") else {}
        return ClusterStatus(
            self.layout.state, self.layout.admin_kubeconfig, processes, nodes, self.layout.server
        )

    # -- down ----------------------------------------------------------------------------------

    def down(self, *, purge: bool = False, progress: Progress | None = None) -> list[str]:
        """Stop everything and undo what ``up`` made on the host; what was stopped and removed."""
        progress = progress or Progress()
        layout = self.layout
        names = sorted(p.stem for p in layout.run.glob("*.pid")) if layout.run.is_dir() else []
        cgroups = [node.cgroup_root for node in layout.nodes]
        undone: list[str] = []
        with progress.step("stopping the cluster", "cluster stopped"):
            for prefix in STOP_ORDER:
                group = [name for name in names if _in_group(name, prefix)]
                # The containers before their containerd: the kubelets, which would restart them, are gone.
                if prefix == "containerd-" and (count := host.kill_cgroup_processes(cgroups)):
                    undone.append(f"{count} container processes")
                # containerd's shims share its session and wait for it to delete their containers,
                # which are gone already: they get a short grace, then SIGKILL.
                grace = CONTAINERD_GRACE if prefix == "containerd-" else STOP_GRACE
                undone += self.table.stop(dict.fromkeys(group, signal.SIGTERM), timeout=grace)
            if strays := self.table.sweep():  # containerd's shims run in sessions of their own
                undone.append(f"{strays} stray processes")
        with progress.step("removing mounts, network devices and iptables rules", "host restored"):
            undone += [f"mount {point}" for point in host.unmount_under([layout.state])]
            record = host.HostRecord.load(layout.host_record)
            if record is not None:
                undone += host.restore(record, [node.bridge for node in layout.nodes])
                layout.host_record.unlink()
            host.remove_cgroups(cgroups)
        if purge:
            shutil.rmtree(layout.state, ignore_errors=True)
            undone.append(f"state {layout.state}")
        return undone


def _healthz(url: str) -> Callable[[], bool]:
    """A component's health endpoint answers 200 (its serving certificate is its own: not verified)."""

    def healthy() -> bool:
        try:
            return httpx.get(url, verify=False, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return healthy


def _write_files(files: dict[Path, str]) -> None:
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _in_group(name: str, prefix: str) -> bool:
    """``kubelet-`` names every node's kubelet; ``etcd`` names only etcd."""
    return name.startswith(prefix) if prefix.endswith("-") else name == prefix
