"""An environment of the platform (dev, test, prod): ``platform/environments/<env>.yaml``, typed.

It describes the AKS cluster the chart is installed into (Kubernetes version, node pools), the
metadata database, the Key Vault, the Airflow image and the chart's pinned version. Errors name the
file, the field path and the fix, like every other user file of the kit.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ariel_airflow.errors import UserError
from ariel_airflow.profiles import parse_quantity

ENVIRONMENTS_DIR = "environments"
# The label and taints that keep Airflow's own pods and the task pods on their pools. The team pod
# templates select and tolerate the task pool with the same label (template_macros/pod.jinja).
POOL_LABEL = "ariel.io/pool"
CORE_POOL = "airflow-core"
TASK_POOL = "airflow-tasks"
CORE_TAINT = "dedicated=airflow:NoSchedule"
TASK_TAINT = f"{POOL_LABEL}={TASK_POOL}:NoSchedule"
# AKS's default max pods per node when a pool does not set --max-pods: it follows the cluster's
# network plugin (`az aks create --network-plugin azure --network-plugin-mode overlay`, kubenet, or
# Azure CNI with pod IPs from the node subnet).
MAX_PODS_BY_NETWORK_PLUGIN = {"azure-cni-overlay": 250, "kubenet": 110, "azure-cni-node-subnet": 30}
NetworkPlugin = Literal["azure-cni-overlay", "kubenet", "azure-cni-node-subnet"]
# Connections of the metadata database that PgBouncer's pools must leave free: Azure Postgres
# flexible server keeps 15 for its own replication and monitoring (its "maximum user connections"
# are max_connections - 15), and 5 for sessions that bypass PgBouncer: an admin's psql, a backup.
CONNECTION_RESERVE = 15 + 5

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# A Kubernetes label key (optional DNS prefix, then a name) and label value.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = rf"([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}"
TAINT = re.compile(rf"(?P<key>{_LABEL_KEY})=(?P<value>{_LABEL_NAME})?:(?P<effect>{'|'.join(TAINT_EFFECTS)})")
KUBERNETES_VERSION = re.compile(r"1\.(?P<minor>[0-9]{1,2})")
# A chart version is pinned: an exact semantic version, never a range.
EXACT_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?")
KEY_VAULT_URL = re.compile(r"https://[a-zA-Z][-a-zA-Z0-9]{1,22}[a-zA-Z0-9]\.vault\.azure\.net/?")

GENERIC_FIX = "correct the value; the kit's platform/environments/*.yaml show every field"


def _refuse(message: str, fix: str) -> PydanticCustomError:
    """A validation error that carries its own fix (read back by ``_user_error``)."""
    return PydanticCustomError("environment", message, {"fix": fix})


def _quantity(value: Any) -> str:
    try:
        parse_quantity(value)
    except (ValueError, TypeError):
        raise _refuse(
            f"{value!r} is not a Kubernetes quantity", "write it like 500m, 2, 300Mi or 4Gi"
        ) from None
    return str(value)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodePool(Strict):
    name: str
    vm_size: str
    count: Annotated[int, Field(ge=1)]
    labels: dict[str, str] = {}
    taints: list[str] = []
    # AKS's own bounds; unset: the network plugin's default (Environment.max_pods)
    max_pods: Annotated[int, Field(ge=10, le=250)] | None = None
    # For a VM size the kit's table does not know: its vCPUs and memory (e.g. 8 and 32Gi).
    cpu: Annotated[int, Field(ge=1)] | None = None
    memory: str | None = None

    @field_validator("taints")
    @classmethod
    def _taints(cls, taints: list[str]) -> list[str]:
        for taint in taints:
            if not TAINT.fullmatch(taint):
                raise _refuse(
                    f"{taint!r} is not a taint",
                    f"write it as key=value:Effect with Effect one of {', '.join(TAINT_EFFECTS)}, "
                    f"e.g. {CORE_TAINT}",
                )
        return taints

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        return None if value is None else _quantity(value)

    @model_validator(mode="after")
    def _size_known(self) -> NodePool:
        from ariel_airflow.cluster.capacity import VM_SIZES

        if self.vm_size not in VM_SIZES and (self.cpu is None or self.memory is None):
            raise _refuse(
                f"vm_size {self.vm_size!r} is not in the kit's table of VM sizes",
                f"set cpu (vCPUs) and memory (e.g. 32Gi) on the pool {self.name!r}",
            )
        return self

    @property
    def role(self) -> str | None:
        return self.labels.get(POOL_LABEL)


class Database(Strict):
    """The metadata database: an Azure Database for PostgreSQL flexible server."""

    host: str
    database: str
    max_connections: Annotated[int, Field(ge=1)]

    @property
    def usable_connections(self) -> int:
        """What PgBouncer's server pools may open: max_connections minus the reserve."""
        return self.max_connections - CONNECTION_RESERVE


class KeyVault(Strict):
    url: str

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not KEY_VAULT_URL.fullmatch(value):
            raise _refuse(f"{value!r} is not a Key Vault URL", "write https://<vault-name>.vault.azure.net/")
        return value


# A managed identity's client id, as workload identity's service account annotation takes it.
UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
ClientId = Annotated[str, Field(pattern=UUID)]


class PlatformIdentity(Strict):
    """The platform's user-assigned managed identity: the core pods' workload identity (Key Vault,
    remote logs, Entra tokens of the metadata database)."""

    client_id: ClientId


class SignIn(Strict):
    """How people sign in: an Entra ID app registration (platform/config/webserver_config.py)."""

    tenant_id: ClientId
    client_id: ClientId
    # The Secret (in the release's namespace) holding the app registration's client secret.
    client_secret_secret: str = "airflow-entra-sign-in"


class TaskLogs(Strict):
    """Where task logs go: a container of an Azure Storage account (Blob). Each team's identity may
    write only under its own prefix (``cluster/task_logs.py``); the platform's reads them all."""

    storage_account: Annotated[str, Field(pattern=r"^[a-z0-9]{3,24}$")]
    container: Annotated[str, Field(pattern=r"^[a-z0-9][-a-z0-9]{1,61}[a-z0-9]$")] = "airflow-task-logs"

    @property
    def account_url(self) -> str:
        return f"https://{self.storage_account}.blob.core.windows.net"


class Image(Strict):
    repository: str
    tag: str


class Chart(Strict):
    name: str
    repository: str
    version: str

    @field_validator("version")
    @classmethod
    def _pinned(cls, value: Any) -> str:
        if not EXACT_VERSION.fullmatch(str(value)):
            raise _refuse(f"chart version {value!r} is not pinned", "write one exact version, e.g. 1.19.0")
        return str(value)


class Overhead(Strict):
    """What the cluster's own daemonsets (kube-proxy, CNI, CSI drivers, cloud-node-manager, the
    monitoring agent) request on every node, on top of the kubelet's reservations."""

    cpu: str = "100m"
    memory: str = "300Mi"
    pods: Annotated[int, Field(ge=0)] = 8  # they take pod slots of max_pods too

    @field_validator("cpu", "memory")
    @classmethod
    def _quantities(cls, value: str) -> str:
        return _quantity(value)


class Environment(Strict):
    name: str
    kubernetes_version: str
    node_pools: Annotated[list[NodePool], Field(min_length=2)]
    database: Database
    key_vault: KeyVault
    image: Image
    chart: Chart
    platform_identity: PlatformIdentity
    # The cluster's OIDC issuer (`az aks show --query oidcIssuerProfile.issuerUrl`): managed
    # identities trust its service-account tokens through federated credentials.
    workload_identity_issuer: Annotated[str, Field(pattern=r"^https://\S+$")]
    sign_in: SignIn
    task_logs: TaskLogs
    network_plugin: NetworkPlugin = "azure-cni-overlay"  # AKS's default for new clusters
    # Every replicated component keeps a replica through the loss or drain of one node (validate).
    high_availability: bool = False
    daemonset_overhead: Overhead = Overhead()
    # One dag-processor per team bundle, so one team's slow DAG files never delay another team's.
    dag_processor_per_team: bool = True
    # May `ariel` push a team's local secrets into this environment's Key Vault? Never prod.
    allow_secret_push: bool = False

    @field_validator("kubernetes_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> str:
        if not KUBERNETES_VERSION.fullmatch(str(value)):
            raise _refuse(
                f"{value!r} is not a Kubernetes minor version",
                'write it in quotes as major.minor, e.g. "1.31"',
            )
        return str(value)

    @model_validator(mode="after")
    def _pools(self) -> Environment:
        names = [pool.name for pool in self.node_pools]
        if len(set(names)) != len(names):
            raise _refuse(f"node pool names repeat: {names}", "give each pool its own name")
        for role, taint in ((CORE_POOL, CORE_TAINT), (TASK_POOL, TASK_TAINT)):
            pools = [pool for pool in self.node_pools if pool.role == role]
            if len(pools) != 1 or taint not in pools[0].taints:
                raise _refuse(
                    f"there must be one node pool labelled {POOL_LABEL}: {role} and tainted {taint}",
                    f"add `labels: {{{POOL_LABEL}: {role}}}` and `taints: [{taint}]` to one pool",
                )
        return self

    @property
    def kubernetes_minor(self) -> int:
        match = KUBERNETES_VERSION.fullmatch(self.kubernetes_version)
        assert match  # checked when loaded
        return int(match["minor"])

    def max_pods(self, pool: NodePool) -> int:
        """Pods per node of ``pool``: its own setting, else the network plugin's default."""
        return pool.max_pods or MAX_PODS_BY_NETWORK_PLUGIN[self.network_plugin]

    @property
    def core_pool(self) -> NodePool:
        return next(pool for pool in self.node_pools if pool.role == CORE_POOL)

    @property
    def task_pool(self) -> NodePool:
        return next(pool for pool in self.node_pools if pool.role == TASK_POOL)


def environment_names(platform_dir: Path) -> list[str]:
    """The environments of the platform folder: one file each in ``environments/``."""
    return sorted(path.stem for path in (Path(platform_dir) / ENVIRONMENTS_DIR).glob("*.yaml"))


def environment_file(name: str, platform_dir: Path) -> Path:
    return Path(platform_dir) / ENVIRONMENTS_DIR / f"{name}.yaml"


def load_environment(name: str, platform_dir: Path) -> Environment:
    """The environment ``name`` of the platform folder ``platform_dir``: its file there."""
    path = environment_file(name, platform_dir)
    known = environment_names(platform_dir)
    if name not in known and known:
        raise UserError(
            f"unknown environment {name!r}",
            where="ENV",
            fix=f"name one of the platform's environments: {', '.join(known)} "
            f"(or add {ENVIRONMENTS_DIR}/{name}.yaml)",
        )
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(
            "environment file is missing",
            where=str(path),
            fix=f"pass --platform-dir with the platform folder, or write {ENVIRONMENTS_DIR}/{name}.yaml",
        ) from None
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML: {exc}", where=str(path)) from None
    if not isinstance(data, dict):
        raise UserError("must be a YAML mapping", where=str(path), fix=GENERIC_FIX)
    try:
        return Environment.model_validate({"name": name, **data})
    except ValidationError as exc:
        raise _user_error(exc, path) from None


def _user_error(exc: ValidationError, path: Path) -> UserError:
    first = exc.errors()[0]
    loc = first["loc"]
    field_path = ".".join(str(part) for part in loc)
    where = f"{path}: {field_path}" if field_path else str(path)
    if first["type"] == "extra_forbidden":
        known = _fields_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        return UserError(
            f"unknown field {loc[-1]!r}",
            where=where,
            fix=f"{hint}remove or rename it; the fields here are: {', '.join(known)}",
        )
    fix = (first.get("ctx") or {}).get("fix", GENERIC_FIX)
    return UserError(first["msg"], where=where, fix=fix)


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The fields of the model found at ``loc`` inside an Environment (list indexes skipped)."""
    model: type[BaseModel] = Environment
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        candidates = [annotation, *get_args(annotation)]
        for candidate in list(candidates):
            candidates += get_args(candidate)
        model = next(c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel))
    return [name for name in model.model_fields if name != "name" or model is not Environment]
