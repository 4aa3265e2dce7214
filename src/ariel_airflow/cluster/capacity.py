"""How much an environment's node pools hold: AKS allocatable per node, tasks per resource profile,
and whether the core components fit the core pool. Pure Python (no Airflow, no cluster).

The kubelet reservations are AKS's published figures (docs "Resource reservations" of AKS node pools);
memory figures there written "MB" and "GB" are the kubelet's Mi and Gi.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from ariel_airflow.errors import UserError
from ariel_airflow.profiles import parse_quantity

if TYPE_CHECKING:
    from ariel_airflow.cluster.environments import Environment, NodePool
    from ariel_airflow.profiles import ResourceProfile

Mi = 1024**2
Gi = 1024**3
RESOURCES = ("cpu", "memory", "pods")

# vCPUs and GiB of memory of the common general-purpose (D) and memory-optimised (E) v5 sizes,
# Intel and AMD, with and without local disk: D has 4 GiB per vCPU, E 8 GiB (E64: 512 GiB).
VM_SIZES: dict[str, tuple[int, int]] = {
    **{
        f"Standard_D{cores}{variant}_v5": (cores, 4 * cores)
        for cores in (2, 4, 8, 16, 32, 48, 64)
        for variant in ("", "s", "d", "ds", "as", "ads")
    },
    **{
        f"Standard_E{cores}{variant}_v5": (cores, 8 * cores)
        for cores in (2, 4, 8, 16, 20, 32, 48, 64)
        for variant in ("", "s", "d", "ds", "as", "ads")
    },
}

# kube-reserved CPU (millicores) by the node's cores, as AKS publishes it.
KUBE_RESERVED_CPU = {1: 60, 2: 100, 4: 140, 8: 180, 16: 260, 32: 420, 64: 740}
# The kubelet's memory reservations changed with AKS 1.29.
NEW_RESERVATIONS_MINOR = 29
EVICTION_THRESHOLD = 100 * Mi  # memory.available<100Mi, AKS 1.29+
OLD_EVICTION_THRESHOLD = 750 * Mi  # memory.available<750Mi, before 1.29
# Before 1.29, kube-reserved memory is a share of each slice of the node's memory (GiB, percent).
OLD_MEMORY_TIERS = ((4, 25), (4, 20), (8, 10), (112, 6), (None, 2))


@dataclass(frozen=True)
class Amount:
    """CPU in millicores, memory in bytes, and pod slots."""

    cpu: int
    memory: int
    pods: int = 0

    def __sub__(self, other: Amount) -> Amount:
        return Amount(self.cpu - other.cpu, self.memory - other.memory, self.pods - other.pods)

    def fits_in(self, room: Amount) -> bool:
        return self.cpu <= room.cpu and self.memory <= room.memory and self.pods <= room.pods

    @classmethod
    def of(cls, cpu: str | int | Decimal, memory: str | int | Decimal, pods: int = 0) -> Amount:
        return cls(int(parse_quantity(cpu) * 1000), int(parse_quantity(memory)), pods)


@dataclass(frozen=True)
class Node:
    """One node of a pool: the VM, the kubelet's reservations, and what is left for our pods."""

    pool: str
    vm_size: str
    count: int
    capacity: Amount  # the VM: vCPUs, memory, max pods
    kube_reserved: Amount
    eviction_threshold: int  # bytes
    daemonsets: Amount

    @property
    def allocatable(self) -> Amount:
        """What Kubernetes reports as the node's allocatable."""
        return self.capacity - self.kube_reserved - Amount(0, self.eviction_threshold)

    @property
    def free(self) -> Amount:
        """What is left for Airflow's pods once the cluster's daemonsets run."""
        return self.allocatable - self.daemonsets


@dataclass(frozen=True)
class Fit:
    """How many pods of one request run at once on the task pool, and which resource binds."""

    name: str
    request: Amount
    per_node: dict[str, int]  # by resource: how many fit one node
    nodes: int

    @property
    def binds(self) -> list[str]:
        least = min(self.per_node.values())
        return [resource for resource, count in self.per_node.items() if count == least]

    @property
    def at_once(self) -> int:
        return min(self.per_node.values()) * self.nodes


@dataclass(frozen=True)
class CoreFit:
    """Whether the core components' requests fit the core pool (first fit, largest first)."""

    placed: dict[str, int]  # component -> node index
    unplaced: list[str]
    requested: Amount
    free: Amount  # of the whole pool

    @property
    def fits(self) -> bool:
        return not self.unplaced


@dataclass(frozen=True)
class QuotaUse:
    """The teams' ResourceQuotas (requests, pods) against what the task pool holds. Over-committed
    quotas are allowed, but then a team can be within its quota and still wait for room."""

    teams: dict[str, Amount]
    total: Amount
    pool: Amount  # free for Airflow on the whole task pool

    @property
    def over_committed(self) -> list[str]:
        return [
            resource for resource in RESOURCES if getattr(self.total, resource) > getattr(self.pool, resource)
        ]


def quota_use(quotas: Mapping[str, Amount], node: Node) -> QuotaUse:
    total = Amount(*(sum(getattr(q, resource) for q in quotas.values()) for resource in RESOURCES))
    pool = Amount(node.free.cpu * node.count, node.free.memory * node.count, node.free.pods * node.count)
    return QuotaUse(teams=dict(quotas), total=total, pool=pool)


def vm_capacity(pool: NodePool) -> tuple[int, int]:
    """The pool's VM: vCPUs and memory in bytes (the pool's own cpu/memory win over the table)."""
    if pool.cpu is not None and pool.memory is not None:
        return pool.cpu, int(parse_quantity(pool.memory))
    if pool.vm_size not in VM_SIZES:
        raise UserError(
            f"VM size {pool.vm_size!r} of node pool {pool.name!r} is not in the kit's table",
            where=f"node pool {pool.name}",
            fix="set cpu and memory on the pool (its vCPUs and memory, e.g. cpu: 8, memory: 32Gi)",
        )
    cores, gib = VM_SIZES[pool.vm_size]
    return cores, gib * Gi


def kube_reserved_cpu(cores: int, pool: str = "") -> int:
    """Millicores; a size between two published ones takes the larger reservation (the safe side)."""
    for published, millicores in KUBE_RESERVED_CPU.items():
        if cores <= published:
            return millicores
    raise UserError(
        f"node pool {pool!r} has {cores} cores; AKS publishes CPU reservations up to "
        f"{max(KUBE_RESERVED_CPU)}",
        where=f"node pool {pool}",
        fix=f"use a VM size of at most {max(KUBE_RESERVED_CPU)} vCPUs",
    )


def kube_reserved_memory(memory: int, max_pods: int, kubernetes_minor: int) -> int:
    """Bytes the kubelet reserves for itself (without the eviction threshold)."""
    if kubernetes_minor >= NEW_RESERVATIONS_MINOR:
        return min((20 * max_pods + 50) * Mi, memory // 4)
    reserved, rest = 0, memory
    for size_gib, percent in OLD_MEMORY_TIERS:
        slice_ = rest if size_gib is None else min(rest, size_gib * Gi)
        reserved += slice_ * percent // 100
        rest -= slice_
    return reserved


def node_of(pool: NodePool, environment: Environment) -> Node:
    cores, memory = vm_capacity(pool)
    minor = environment.kubernetes_minor
    overhead = environment.daemonset_overhead
    max_pods = environment.max_pods(pool)
    return Node(
        pool=pool.name,
        vm_size=pool.vm_size,
        count=pool.count,
        capacity=Amount(cores * 1000, memory, max_pods),
        kube_reserved=Amount(
            kube_reserved_cpu(cores, pool.name), kube_reserved_memory(memory, max_pods, minor)
        ),
        eviction_threshold=EVICTION_THRESHOLD if minor >= NEW_RESERVATIONS_MINOR else OLD_EVICTION_THRESHOLD,
        daemonsets=Amount.of(overhead.cpu, overhead.memory, overhead.pods),
    )


def fit(name: str, request: Amount, node: Node) -> Fit:
    """How many pods requesting ``request`` (one pod each) run at once on ``node``'s pool."""
    free = node.free
    per_node = {
        "cpu": free.cpu // request.cpu if request.cpu else free.pods,
        "memory": free.memory // request.memory if request.memory else free.pods,
        "pods": free.pods,
    }
    return Fit(
        name=name, request=request, per_node={k: max(v, 0) for k, v in per_node.items()}, nodes=node.count
    )


def core_fit(requests: Iterable[tuple[str, str, str]], node: Node) -> CoreFit:
    """Place each (name, cpu, memory) request on the pool's nodes, largest first, on the first node
    with room; what finds no room does not fit."""
    amounts = {name: Amount.of(cpu, memory, 1) for name, cpu, memory in requests}
    rooms = [node.free] * node.count
    placed: dict[str, int] = {}
    unplaced = []
    for name, amount in sorted(amounts.items(), key=lambda item: (item[1].cpu, item[1].memory), reverse=True):
        index = next((i for i, room in enumerate(rooms) if amount.fits_in(room)), None)
        if index is None:
            unplaced.append(name)
            continue
        rooms[index] -= amount
        placed[name] = index
    requested = Amount(*(sum(getattr(a, f) for a in amounts.values()) for f in ("cpu", "memory", "pods")))
    pool_free = Amount(node.free.cpu * node.count, node.free.memory * node.count, node.free.pods * node.count)
    return CoreFit(placed=placed, unplaced=unplaced, requested=requested, free=pool_free)


def parse_request(text: str, where: str = "--request") -> Amount:
    """``cpu=500m,memory=1Gi`` as an Amount of one pod."""
    parts = dict(part.partition("=")[::2] for part in text.split(",") if part)
    if set(parts) != {"cpu", "memory"}:
        raise UserError(
            f"{text!r} is not a request",
            where=where,
            fix="write cpu=<quantity>,memory=<quantity>, e.g. cpu=500m,memory=1Gi",
        )
    try:
        return Amount.of(parts["cpu"].strip(), parts["memory"].strip(), 1)
    except (ValueError, TypeError):
        raise UserError(
            f"{text!r} holds a value that is not a Kubernetes quantity",
            where=where,
            fix="write quantities like 500m, 2, 512Mi or 1Gi",
        ) from None


@dataclass(frozen=True)
class Capacity:
    """The capacity report of one environment."""

    environment: str
    kubernetes_version: str
    nodes: list[Node]
    fits: list[Fit]
    core: CoreFit | None
    quotas: QuotaUse | None = None

    def as_dict(self) -> dict:
        return {
            "environment": self.environment,
            "kubernetes_version": self.kubernetes_version,
            "units": {"cpu": "millicores", "memory": "bytes"},
            "node_pools": [
                {
                    **asdict(node),
                    "allocatable": asdict(node.allocatable),
                    "free": asdict(node.free),
                }
                for node in self.nodes
            ],
            "tasks": [
                {
                    "name": f.name,
                    "request": asdict(f.request),
                    "per_node": f.per_node,
                    "nodes": f.nodes,
                    "at_once": f.at_once,
                    "binds": f.binds,
                }
                for f in self.fits
            ],
            "core": None if self.core is None else {**asdict(self.core), "fits": self.core.fits},
            "quotas": None
            if self.quotas is None
            else {**asdict(self.quotas), "over_committed": self.quotas.over_committed},
        }


def capacity(
    environment: Environment,
    profiles: Mapping[str, ResourceProfile],
    *,
    requests: Mapping[str, Amount] | None = None,
    core_requests: Iterable[tuple[str, str, str]] | None = None,
    quotas: Mapping[str, Amount] | None = None,
) -> Capacity:
    """The environment's pools, and how many tasks of each profile (and of each extra request) run
    at once on its task pool; with ``core_requests``, whether they fit the core pool; with the teams'
    ``quotas``, whether they over-commit the task pool."""
    nodes = [node_of(pool, environment) for pool in environment.node_pools]
    task_node = nodes[environment.node_pools.index(environment.task_pool)]
    core_node = nodes[environment.node_pools.index(environment.core_pool)]
    wanted = {name: Amount.of(p.requests.cpu, p.requests.memory, 1) for name, p in profiles.items()}
    wanted.update(requests or {})
    return Capacity(
        environment=environment.name,
        kubernetes_version=environment.kubernetes_version,
        nodes=nodes,
        fits=[fit(name, amount, task_node) for name, amount in wanted.items()],
        core=None if core_requests is None else core_fit(core_requests, core_node),
        quotas=None if quotas is None else quota_use(quotas, task_node),
    )
