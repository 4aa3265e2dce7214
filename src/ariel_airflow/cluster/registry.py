"""The team registry: ``platform/teams/<team>.yaml``, one file per team the platform serves.

Each entry is the team model (``team.Team``: name rule, namespace, Key Vault per environment) plus
what only the platform knows: where the team's DAG repository is, its quota and its managed identity.
A team repository prints its own entry (``ariel platform registry-entry``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ariel_airflow.cluster.capacity import Amount
from ariel_airflow.cluster.environments import ClientId, environment_names
from ariel_airflow.errors import UserError
from ariel_airflow.profiles import Resources, parse_quantity
from ariel_airflow.team import ENVIRONMENTS, Namespace, Team, TeamName, TeamRepo, validation_error

TEAMS_DIR = "teams"
KUBERNETES_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
ENVIRONMENTS_CONTEXT = "environments"


class Repository(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1)
    ref: str = "main"


class Quota(BaseModel):
    """The team namespace's ResourceQuota: pods, and requests and limits of CPU and memory."""

    model_config = ConfigDict(extra="forbid")
    pods: int = Field(gt=0)
    requests: Resources
    limits: Resources

    @property
    def amount(self) -> Amount:
        """What the quota lets the team request at once (the scheduler places pods by requests)."""
        return Amount.of(self.requests.cpu, self.requests.memory, self.pods)

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> Quota:
        for resource in ("cpu", "memory"):
            if parse_quantity(getattr(self.limits, resource)) < parse_quantity(
                getattr(self.requests, resource)
            ):
                raise ValueError(f"limits.{resource} must be at least requests.{resource}")
        return self


class RegistryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: TeamName
    namespace: Namespace | None = None  # default: the team model's
    repository: Repository
    key_vaults: dict[str, str] = {}  # environment -> vault URL
    quota: Quota
    # The resource profiles the team's tasks may use (default: the whole catalog): its Airflow pool
    # holds as many tasks of the largest as the quota does (cluster/pools.py).
    profiles: list[str] | None = Field(default=None, min_length=1)
    managed_identity_client_id: ClientId

    @field_validator("key_vaults")
    @classmethod
    def _environments(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        # The platform's environments are its files (load_registry passes them); else the template's.
        known = (info.context or {}).get(ENVIRONMENTS_CONTEXT) or ENVIRONMENTS
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown environment {unknown[0]!r}; the platform has {', '.join(known)}")
        return value

    @property
    def team(self) -> Team:
        return Team(
            name=self.name,
            namespace=self.namespace or Team.default_namespace(self.name),
            vault_urls=self.key_vaults,
        )


def load_registry(platform_dir: Path) -> dict[str, RegistryEntry]:
    """Every registered team, by name; errors name the file, the field and the fix."""
    entries: dict[str, RegistryEntry] = {}
    owners: dict[str, Path] = {}  # namespace -> the entry that claims it
    environments = environment_names(platform_dir)
    for path in sorted((platform_dir / TEAMS_DIR).glob("*.yaml")):
        entry = _load_entry(path, environments)
        if path.stem != entry.name:
            raise UserError(
                f"the file of team {entry.name!r} is named {path.name!r}",
                where=f"{path}: name",
                fix=f"rename it to {entry.name}.yaml, or correct the name",
            )
        namespace = entry.team.namespace or ""
        if not_a_team_namespace(namespace):
            raise UserError(
                f"namespace {namespace!r} is not the team's own: {not_a_team_namespace(namespace)}",
                where=f"{path}: namespace",
                fix=f"give the team a namespace of its own, e.g. {Team.default_namespace(entry.name)}",
            )
        if namespace in owners:
            raise UserError(
                f"namespace {namespace!r} is already the namespace of {owners[namespace].stem!r}",
                where=f"{path}: namespace",
                fix="give each team a namespace of its own",
            )
        owners[namespace] = path
        entries[entry.name] = entry
    return entries


def not_a_team_namespace(namespace: str) -> str | None:
    """Why ``namespace`` cannot be a team's (its quota, policies and RBAC would apply to others)."""
    from ariel_airflow.cluster.render import NAMESPACE
    from ariel_airflow.localkube.standins import NAMESPACE as STANDINS_NAMESPACE

    if namespace == NAMESPACE:
        return "the platform's own components run there"
    if namespace in KUBERNETES_NAMESPACES or namespace.startswith("kube-"):
        return "Kubernetes uses it"
    if namespace == STANDINS_NAMESPACE:
        return "the local cluster's Azure stand-ins run there"
    return None


def _load_entry(path: Path, environments: list[str]) -> RegistryEntry:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML: {exc}", where=str(path)) from None
    if not isinstance(data, dict):
        raise UserError("must be a YAML mapping", where=str(path), fix="see platform/teams/ for an example")
    try:
        return RegistryEntry.model_validate(data, context={ENVIRONMENTS_CONTEXT: environments})
    except ValidationError as exc:
        raise validation_error(exc, path, "see the team registry in the README") from None


def entry_for_repo(repo: TeamRepo, *, repository_url: str | None, ref: str, client_id: str) -> dict[str, Any]:
    """The registry entry of a team repository, as ``platform/teams/<team>.yaml`` holds it."""
    url = repository_url or _origin_url(repo.root)
    if not url:
        raise UserError(
            "the repository has no `origin` remote to register",
            where=str(repo.root),
            fix="pass --repository-url URL (what the platform's git-sync clones)",
        )
    smallest = min(repo.profiles.values(), key=lambda p: parse_quantity(p.requests.cpu))
    entry = RegistryEntry(
        name=repo.team.name,
        namespace=repo.team.namespace,
        repository=Repository(url=url, ref=ref),
        key_vaults=dict(repo.team.vault_urls),
        # A starting quota: ten tasks of the team's smallest profile; the platform team sizes it.
        quota=Quota(
            pods=10,
            requests=_times(smallest.requests, 10),
            limits=_times(smallest.limits, 10),
        ),
        profiles=list(repo.profiles),
        managed_identity_client_id=client_id,
    )
    return entry.model_dump(mode="json")


def _times(resources: Resources, count: int) -> Resources:
    return Resources(
        cpu=_cpu(parse_quantity(resources.cpu) * count),
        memory=_as_mi(parse_quantity(resources.memory) * count),
    )


def _cpu(cores: Any) -> str:
    millis = int(cores * 1000)
    return f"{millis // 1000}" if millis % 1000 == 0 else f"{millis}m"


def _as_mi(value: Any) -> str:
    mebibytes = int(value / (1024 * 1024))
    return f"{mebibytes // 1024}Gi" if mebibytes % 1024 == 0 else f"{mebibytes}Mi"


def _origin_url(root: Path) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(root), "remote", "get-url", "origin"], capture_output=True, text=True, check=False
    )
    return (done.stdout.strip() or None) if done.returncode == 0 else None
