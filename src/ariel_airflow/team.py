"""The team, modelled once: who a team is on the platform and where its repository keeps things.

`ariel check`, `ariel local`, the cluster policies and the platform read a team's names from here:
its namespace, service account, pod labels, dag_id prefix, tag and Key Vault secret prefixes. The
copier template renders the same names from the same answers; `tests/test_team.py` proves that every
name it generates equals this model's.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from ariel_airflow.errors import UserError

if TYPE_CHECKING:
    from ariel_airflow.profiles import ResourceProfile

# A DNS-1123 label of at most 40 characters: it names the namespace, the service account, the DAG
# bundle and Key Vault secrets, each of which has a length limit of its own. No "--": Key Vault
# refuses it in vault names and Airflow's multi-team secret names use it as their separator.
TEAM_NAME = re.compile(r"(?!.*--)[a-z]([-a-z0-9]{0,38}[a-z0-9])?")
NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
TEAM_LABEL = "ariel.io/team"
WORKLOAD_IDENTITY_LABEL = "azure.workload.identity/use"
DAG_ID_SEPARATOR = "__"
TAG_PREFIX = "team:"
POOL_PREFIX = "team-"
ENVIRONMENTS = ("dev", "test", "prod")
SecretsMode = Literal["prefix", "multi_team"]
SecretKind = Literal["connections", "variables"]
KEY_VAULT_BACKEND = "airflow.providers.microsoft.azure.secrets.key_vault.AzureKeyVaultBackend"

# The repository layout.
ANSWERS_FILE = ".copier-answers.yml"
DAGS_DIR = "dags"
POD_TEMPLATES_DIR = "pod_templates"
BASE_POD_TEMPLATE = "base-{environment}.yaml"
PROFILE_POD_TEMPLATE = "profile-{profile}.yaml"
SECRETS_FILE = "secrets.yaml"
PROFILES_FILE = "resource_profiles.yaml"
LOCAL_SECRETS_DIR = ".local"
STATE_DIR = ".ariel"
# On the cluster: each team's task pod template, as render derives it (cluster/task_pods.py), where the
# scheduler and the dag-processors mount it.
TEAM_POD_TEMPLATES_DIR = Path("/opt/airflow/pod_templates/teams")
TEAM_POD_TEMPLATES_SETTING = "ARIEL_TEAM_POD_TEMPLATES"  # another folder (tests, other layouts)
# Set on a team's own dag-processor: the team whose bundle it parses (the cluster policies' team).
BUNDLE_TEAM_SETTING = "ARIEL_BUNDLE_TEAM"


@dataclass(frozen=True)
class Team:
    """A team as the platform sees it. ``namespace`` is None where it is not known: at run time a DAG
    or a pod tells only the team's name."""

    name: str
    namespace: str | None = None
    secrets_mode: SecretsMode = "prefix"
    vault_urls: Mapping[str, str] = field(default_factory=dict)  # environment -> Key Vault URL

    def __post_init__(self) -> None:
        if not is_team_name(self.name):
            raise ValueError(f"{self.name!r} is not a team name (a DNS-1123 label of at most 40 characters)")

    @staticmethod
    def default_namespace(name: str) -> str:
        return f"airflow-{name}"

    @property
    def service_account(self) -> str:
        return f"{self.name}-tasks"

    @property
    def labels(self) -> dict[str, str]:
        """The labels of every task pod: the team, and Azure workload identity for its service account."""
        return {TEAM_LABEL: self.name, WORKLOAD_IDENTITY_LABEL: "true"}

    @property
    def pod_template_file(self) -> Path:
        """The team's task pod template on the cluster (absent elsewhere)."""
        folder = os.environ.get(TEAM_POD_TEMPLATES_SETTING) or TEAM_POD_TEMPLATES_DIR
        return Path(folder) / f"{self.name}.yaml"

    @property
    def bundle_name(self) -> str:
        """The DAG bundle that serves the team's repository (locally its dags/ folder)."""
        return self.name

    @property
    def git_conn_id(self) -> str:
        """The connection the platform's dag-processor clones the team's repository with (a read-only
        token of the team's repository, in the platform's Key Vault)."""
        return f"git_{self.name}"

    @property
    def dag_id_prefix(self) -> str:
        return f"{self.name}{DAG_ID_SEPARATOR}"

    @property
    def tag(self) -> str:
        return f"{TAG_PREFIX}{self.name}"

    @property
    def pool(self) -> str:
        """The Airflow pool every task of the team runs in (``cluster/pools.py`` sizes it)."""
        return f"{POOL_PREFIX}{self.name}"

    def secrets_prefix(self, kind: SecretKind) -> str:
        """The Key Vault prefix task pods look secrets up under.

        Multi-team mode: Airflow names a team's secrets ``{prefix}-{team}--{id}``, but task pods look
        up without a team. The provider strips a trailing "-" off the prefix and then turns every "_"
        into "-", so a prefix ending in "_" makes task pods look up ``{prefix}-{team}--{id}`` too
        (``ariel_airflow.secret_names``; its tests run the provider's own code).
        """
        prefix = f"airflow-{kind}-{self.name}"
        return f"{prefix}_" if self.secrets_mode == "multi_team" else prefix

    def worker_secrets_backend_kwargs(self, environment: str) -> dict[str, str]:
        """``[workers] secrets_backend_kwargs`` of the team's task pods in ``environment``."""
        return {
            "connections_prefix": self.secrets_prefix("connections"),
            "variables_prefix": self.secrets_prefix("variables"),
            "vault_url": self.vault_urls[environment],
        }

    @classmethod
    def from_dag(cls, dag_id: str, tags: Iterable[str] | None) -> Team | None:
        """The team of a DAG at run time: its dag_id prefix or, failing that, its team: tag."""
        name, sep, _ = dag_id.partition(DAG_ID_SEPARATOR)
        if not (sep and is_team_name(name)):
            tag = next((t for t in tags or () if t.startswith(TAG_PREFIX)), "")
            name = tag.removeprefix(TAG_PREFIX)
        return cls(name) if is_team_name(name) else None

    @classmethod
    def from_labels(cls, labels: Mapping[str, str] | None) -> Team | None:
        """The team of a pod at run time, from its team label."""
        name = (labels or {}).get(TEAM_LABEL, "")
        return cls(name) if is_team_name(name) else None


def known_environment(name: str) -> str:
    """``name`` if it is one of the platform's environments; a user error naming them otherwise."""
    if name not in ENVIRONMENTS:
        raise UserError(
            f"unknown environment {name!r}",
            where="ENV",
            fix=f"name one of the platform's environments: {', '.join(ENVIRONMENTS)}",
        )
    return name


def profile_pod_templates(folder: Path) -> dict[str, Path]:
    """The resource profiles' pod templates in a pod_templates/ folder, by profile name."""
    prefix, suffix = PROFILE_POD_TEMPLATE.split("{profile}")
    return {p.name[len(prefix) : -len(suffix)]: p for p in sorted(folder.glob(f"{prefix}*{suffix}"))}


def is_team_name(name: str) -> bool:
    return bool(TEAM_NAME.fullmatch(name))


def _team_name(value: str) -> str:
    if not is_team_name(value):
        raise ValueError(
            f"{value!r} is not a team name: lower-case letters, digits and single dashes, starting "
            "with a letter, not ending with a dash, at most 40 characters"
        )
    return value


def _namespace(value: str) -> str:
    if not NAMESPACE.fullmatch(value):
        raise ValueError(f"{value!r} is not a DNS-1123 label of at most 63 characters")
    return value


# Field types for the models of user files that name a team (copier answers, the team registry).
TeamName = Annotated[str, AfterValidator(_team_name)]
Namespace = Annotated[str, AfterValidator(_namespace)]


class Answers(BaseModel):
    """The copier answers the kit reads (the template's questions, validated as copier does)."""

    model_config = ConfigDict(extra="ignore")
    team_name: TeamName
    namespace: Namespace | None = None
    secrets_mode: SecretsMode = "prefix"
    keyvault_url_dev: str = ""
    keyvault_url_test: str = ""
    keyvault_url_prod: str = ""

    def team(self) -> Team:
        urls = {env: getattr(self, f"keyvault_url_{env}") for env in ENVIRONMENTS}
        return Team(
            name=self.team_name,
            namespace=self.namespace or Team.default_namespace(self.team_name),
            secrets_mode=self.secrets_mode,
            vault_urls={env: url for env, url in urls.items() if url},
        )


class Declared(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str | None = None
    description: str = ""


class SecretsDeclaration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connections: dict[str, Declared] = {}
    variables: dict[str, Declared] = {}


@dataclass(frozen=True)
class TeamRepo:
    """A team's DAG repository: the team it belongs to and where it keeps things."""

    root: Path
    team: Team

    @property
    def dags(self) -> Path:
        return self.root / DAGS_DIR

    @property
    def pod_templates(self) -> Path:
        return self.root / POD_TEMPLATES_DIR

    def base_pod_template(self, environment: str) -> Path:
        return self.pod_templates / BASE_POD_TEMPLATE.format(environment=environment)

    @property
    def secrets_file(self) -> Path:
        return self.root / SECRETS_FILE

    @property
    def connections_file(self) -> Path:
        return self.root / LOCAL_SECRETS_DIR / "connections.yaml"

    @property
    def variables_file(self) -> Path:
        return self.root / LOCAL_SECRETS_DIR / "variables.yaml"

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @functools.cached_property
    def profiles(self) -> dict[str, ResourceProfile]:
        from ariel_airflow.profiles import load_profiles

        return load_profiles(self.root / PROFILES_FILE)

    @functools.cached_property
    def secrets(self) -> SecretsDeclaration:
        declared = _yaml(self.secrets_file, f"declare connections and variables in {SECRETS_FILE}")
        try:
            return SecretsDeclaration.model_validate({k: v or {} for k, v in declared.items()})
        except ValidationError as exc:
            raise validation_error(
                exc,
                self.secrets_file,
                "each entry is `<id>: {type: ..., description: ...}` under connections or variables",
            ) from None

    @classmethod
    def load(cls, root: Path) -> TeamRepo:
        """The repository at ``root``; a clear error if it is not a team repository."""
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise UserError("team repository not found", where=str(root), fix="pass --team-repo PATH")
        if not (root / DAGS_DIR).is_dir():
            raise UserError(
                f"no {DAGS_DIR}/ folder: this does not look like a team DAG repository",
                where=str(root),
                fix="pass the root of a repository generated with `copier copy` (--team-repo PATH)",
            )
        path = root / ANSWERS_FILE
        data = _yaml(path, "create the repository with `copier copy`, or run `copier update` to rewrite it")
        try:
            answers = Answers.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc, path, "answer again with `copier update --trust`") from None
        return cls(root=root, team=answers.team())


def validation_error(exc: ValidationError, path: Path, fix: str) -> UserError:
    first = exc.errors()[0]
    field_path = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return UserError(message, where=f"{path}: {field_path}" if field_path else str(path), fix=fix)


def _yaml(path: Path, fix: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UserError("file is missing", where=str(path), fix=fix) from None
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML: {exc}", where=str(path)) from None
    if not isinstance(data, dict):
        raise UserError("must be a YAML mapping", where=str(path), fix=fix)
    return data
